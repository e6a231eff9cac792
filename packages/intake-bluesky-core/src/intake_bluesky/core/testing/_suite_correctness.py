"""Conformance tests for answers that once were wrong without a word:
lossless casts, tuples in start documents, time queries, zero-row streams,
errors that let the user fix the problem. A mixin of :class:`ConformanceTests`."""

from __future__ import annotations

import datetime
import warnings

import numpy as np
import pytest

from .._model.casting import DtypeMismatchWarning
from .._model.documents import BadDocumentError
from .._model.filling import FillError
from .._query.time import TimeRange
from ..errors import DtypeMismatchError
from ._compare import RESOURCES, _skip_without
from ._examples import EXTERNAL_ROOT, T0, UIDS
from ._examples_correctness import (
    CORRECTNESS_UIDS,
    DAMAGED_UIDS,
    correctness_runs,
    damaged_run,
    exact_runs,
)

__all__ = ["CorrectnessTests"]

_UTC = datetime.UTC


class CorrectnessTests:
    """Values, searches and errors that match what was written."""

    @pytest.fixture
    def v2_cat(self, store):
        for docs in correctness_runs():
            store.write_run(docs)
        return store.catalog()

    # --- lossless casts -------------------------------------------------------
    def test_declared_integer_keeps_fractions(self, v2_cat):
        run = v2_cat[CORRECTNESS_UIDS["casts"]]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = run.baseline.read()
        assert ds["motor1_setpoint"].values.tolist() == [0.0, 2.5]
        assert ds["motor1_setpoint"].dtype == np.float64
        assert ds["counts"].values.tolist() == [1.0, 2.5]
        assert ds["ok"].values.tolist() == [7, 8] and ds["ok"].dtype == np.int64
        messages = [str(w.message) for w in caught if w.category is DtypeMismatchWarning]
        assert any("motor1_setpoint" in m and CORRECTNESS_UIDS["casts"] in m for m in messages)
        assert any("counts" in m for m in messages)
        assert not any("'ok'" in m for m in messages)

    def test_to_dask_refuses_to_truncate(self, v2_cat):
        stream = v2_cat[CORRECTNESS_UIDS["casts"]].baseline
        lazy = stream.to_dask()
        assert lazy["ok"].values.tolist() == [7, 8]
        with pytest.raises(DtypeMismatchError, match="motor1_setpoint"):
            lazy["motor1_setpoint"].compute()
        wider = stream.to_dask(dtypes={"motor1_setpoint": "float64", "counts": "float64"})
        assert wider["motor1_setpoint"].values.tolist() == [0.0, 2.5]
        assert wider["counts"].values.tolist() == [1.0, 2.5]

    def test_canonical_keeps_fractions(self, v2_cat):
        docs = list(v2_cat[CORRECTNESS_UIDS["casts"]].canonical(fill="yes"))
        values = []
        for name, doc in docs:
            if name == "event":
                values.append(doc["data"]["motor1_setpoint"])
            elif name == "event_page":
                values.extend(list(doc["data"]["motor1_setpoint"]))
        assert [float(v) for v in values] == [0.0, 2.5]
        assert values[1] == 2.5

    def test_ints_among_floats_are_kept(self, v2_cat):
        run = v2_cat[CORRECTNESS_UIDS["mixed"]]
        sp, n = [], []
        for name, doc in run.canonical(fill="no"):
            if name == "event":
                sp.append(doc["data"]["sp"])
                n.append(doc["data"]["n"])
            elif name == "event_page":
                sp.extend(list(doc["data"]["sp"]))
                n.extend(list(doc["data"]["n"]))
        assert sp == [0, 2.5] and n == [2**53 + 1, 0.5]
        assert isinstance(n[0], int)  # (bson.Int64 from a server is an int)
        ds = run.primary.read()
        assert ds["sp"].values.tolist() == [0.0, 2.5]
        assert ds["n"].values.tolist() == [2**53 + 1, 0.5]  # not rounded to 2**53

    # --- no value changes ---------------------------------------------------
    @pytest.fixture
    def exact_cat(self, store):
        # A store may say which integers its format holds (BSON: int64 only).
        for docs in exact_runs(uint64=_holds_uint64(store)):
            try:
                store.write_run(docs)
            except OverflowError:
                # The format holds no integers beyond int64 (BSON: pymongo
                # refuses to write them), and the store did not say so.
                if docs[0][1]["uid"] != CORRECTNESS_UIDS["uint64"]:
                    raise
                store.delete_run(docs[0][1]["uid"])
        return store.catalog()

    @staticmethod
    def _stored(run, key: str) -> list:
        """The values of one field, in row order, as canonical(fill='no') gives them."""
        values = []
        for name, doc in run.canonical(fill="no"):
            if name == "event":
                values.append(doc["data"][key])
            elif name == "event_page":
                values.extend(list(doc["data"][key]))
        return values

    @staticmethod
    def _faces(stream):
        """read(), to_dask() and to_dask().compute(): every way to a Dataset."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DtypeMismatchWarning)
            lazy = stream.to_dask()
            return {"read": stream.read(), "to_dask": lazy, "computed": lazy.compute()}

    def test_big_integers_among_floats_stay_exact_across_events_and_pages(self, exact_cat):
        run = exact_cat[CORRECTNESS_UIDS["exact"]]
        expected = [2**60 + 1, 0.5, 0.25]
        for face, ds in self._faces(run.primary).items():
            assert ds["n"].values.tolist() == expected, face  # not 1.152921504606847e+18
            assert ds["n"].dtype == object, face
        stored = self._stored(run, "n")
        assert stored == expected
        # (bson.Int64 from a server is an int)
        assert [isinstance(v, int) for v in stored] == [True, False, False]

    def test_integer_arrays_stay_exact_beside_a_descriptor_without_events(self, exact_cat):
        run = exact_cat[CORRECTNESS_UIDS["exact"]]
        expected = [[2**60 + 1, 1], [2, 2**53 + 1], [-(2**62) - 1, 0]]
        for face, ds in self._faces(run.primary).items():
            assert ds["a"].dtype == np.int64, face  # not float64
            assert ds["a"].values.tolist() == expected, face
            assert ds["a"].shape == (3, 2), face
        assert [list(v) for v in self._stored(run, "a")] == expected

    def test_strings_keep_trailing_nul_characters(self, exact_cat):
        run = exact_cat[CORRECTNESS_UIDS["exact"]]
        expected = ["a\x00", "b", "\x00\x00"]
        for face, ds in self._faces(run.primary).items():
            assert ds["s"].values.tolist() == expected, face  # not ['a', 'b', '']
        assert self._stored(run, "s") == expected

    def test_integers_beyond_int64_stay_exact_and_the_warning_says_why(self, store, exact_cat):
        holds_uint64 = _holds_uint64(store)
        if not holds_uint64 or CORRECTNESS_UIDS["uint64"] not in exact_cat:
            limits = getattr(store, "limits", {})
            reason = "this store's format holds no integers beyond int64"
            pytest.skip(f"integer_range: {limits.get('integer_range', reason)}")
        run = exact_cat[CORRECTNESS_UIDS["uint64"]]
        expected = [0, 2**63 + 1, 7]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = run.primary.read()
        assert ds["i"].dtype == np.uint64 and ds["i"].values.tolist() == expected
        messages = [str(w.message) for w in caught if w.category is DtypeMismatchWarning]
        assert len(messages) == 1, messages
        message = messages[0]
        assert CORRECTNESS_UIDS["uint64"] in message and "'i'" in message
        assert "dtype 'integer'" in message
        assert "row 1 holds 9223372036854775809, outside int64's range" in message
        assert "(uint64)" in message
        assert "fraction" not in message and "NaN" not in message
        assert self._stored(run, "i") == expected
        # to_dask() fixes the declared int64 before reading: it refuses, and
        # says which value and how to read it.
        with pytest.raises(DtypeMismatchError) as info:
            run.primary.to_dask()["i"].compute()
        text = str(info.value)
        assert "row 1 holds 9223372036854775809, outside int64's range" in text
        assert "dtypes={'i': 'uint64'}" in text
        wide = run.primary.to_dask(dtypes={"i": "uint64"})["i"]
        assert wide.dtype == np.uint64 and wide.values.tolist() == expected

    # --- search answers -------------------------------------------------------
    @pytest.mark.parametrize(
        "query",
        [
            {"motors": "motor"},
            {"motors": {"$in": ["motor", "other"]}},
            {"motors": {"$all": ["motor"]}},
            {"motors": {"$size": 1}},
            {"motors": ("motor",)},
            {"hints.dimensions.0.1": "primary"},
            {"scan_id": np.int64(22)},
            {"scan_id": {"$in": np.array([22, 99])}},
        ],
    )
    def test_tuples_are_arrays(self, v2_cat, query):
        assert list(v2_cat.search(query)) == [CORRECTNESS_UIDS["tuples"]]

    def test_time_range(self, cat, runs):
        def at(seconds):
            return datetime.datetime.fromtimestamp(T0 + seconds, tz=_UTC)

        fmt = "%Y-%m-%d %H:%M:%S"
        # The examples start at T0, T0+100, T0+200, T0+300, T0+400.
        since, until = at(50).strftime(fmt), at(250).strftime(fmt)
        found = list(cat.search(TimeRange(since=since, until=until, timezone="UTC")))
        assert found == [UIDS["count"], UIDS["failed"]]
        assert list(cat.search(TimeRange(since=at(300), timezone="UTC"))) == [
            UIDS["live"],
            UIDS["stream"],
        ]
        # until is exclusive
        assert list(cat.search(TimeRange(until=T0 + 100))) == [UIDS["scan"]]

    def test_dates_compared_with_time_are_epoch_seconds(self, cat, runs):
        after = datetime.datetime.fromtimestamp(T0 + 250, tz=_UTC)
        assert list(cat.search({"time": {"$gte": after}})) == [UIDS["live"], UIDS["stream"]]
        text = after.isoformat()
        assert list(cat.search({"time": {"$gte": text}})) == [UIDS["live"], UIDS["stream"]]
        with pytest.raises(ValueError, match="epoch seconds"):
            cat.search({"time": {"$gte": "not a date"}})
        # Equal to a date string: within the day it names (local time).
        day = datetime.datetime.fromtimestamp(T0 + 150).strftime("%Y-%m-%d")
        same_day = [
            docs[0][1]["uid"]
            for docs in runs
            if datetime.datetime.fromtimestamp(docs[0][1]["time"]).strftime("%Y-%m-%d") == day
        ]
        assert UIDS["count"] in same_day
        assert list(cat.search({"time": day})) == same_day
        assert list(cat.search({"time": {"$eq": day}})) == same_day
        with pytest.raises(ValueError, match="names a period"):
            cat.search({"time": {"$in": [day]}})
        with pytest.raises(ValueError, match="only be compared with 'time'"):
            cat.search({"sample.name": after})

    # --- zero rows --------------------------------------------------------------
    def test_zero_row_stream(self, v2_cat):
        stream = v2_cat[CORRECTNESS_UIDS["empty"]].primary
        for ds in (stream.read(), stream.to_dask(), stream.to_dask().compute()):
            assert ds["image"].shape == (0, 1, 240, 320)
            assert ds["image"].dtype == np.uint8
            assert ds["x"].shape == (0,)
            assert ds["time"].shape == (0,)

    # --- errors -------------------------------------------------------------------
    def test_missing_external_file_names_path_tried_and_stored_root(self, store, runs, tmp_path):
        _skip_without(store, "keeps_resources", RESOURCES)
        for docs in runs:
            store.write_run(docs)
        moved = tmp_path / "not-here"
        cat = store.catalog(
            handler_registry={"NPY_SEQ": "intake_bluesky.core.testing.NumpySeqHandler"},
            root_map={EXTERNAL_ROOT: str(moved)},
        )
        with pytest.raises(FillError) as info:
            cat[UIDS["scan"]].primary.read()
        message = str(info.value)
        assert str(moved) in message  # the path tried, after root_map
        assert repr(EXTERNAL_ROOT) in message  # the stored root
        assert "root_map" in message

    # --- damaged documents: errors that name run, document and field ----------
    @pytest.mark.parametrize(
        "damage, names",
        [
            ("time", ["-e2' (seq_num 2)", "-desc'", "time 'yesterday'", "not a number"]),
            ("list", ["-e2' (seq_num 2)", "-desc'", "list [1, 2]", "field 'x'", "shape []"]),
            ("shape", ["descriptor '", "-desc'", "field 'x'", "shape 'abc'", "exclude=['x']"]),
            ("dtype_numpy", ["-desc'", "field 'x'", "dtype_numpy 'garbage'", "exclude=['x']"]),
        ],
    )
    def test_damaged_documents_are_named(self, store, damage, names):
        uid = DAMAGED_UIDS[damage]
        store.write_run(damaged_run(damage))
        stream = store.catalog()[uid].primary
        for face in (stream.read, stream.to_dask):
            with pytest.raises(BadDocumentError) as info:
                face()
            message = str(info.value)
            assert f"Run {uid!r}" in message
            for name in names:
                assert name in message, (face.__name__, message)
        if damage == "time":
            # The document stream orders events by time: it names it too.
            with pytest.raises(BadDocumentError) as info:
                list(store.catalog()[uid].canonical(fill="no"))
            for name in names:
                assert name in str(info.value), str(info.value)
        if damage in ("list", "shape", "dtype_numpy"):
            # The error says what to do, and doing it works.
            ds = store.catalog()[uid].primary(exclude=["x"]).read()
            assert ds["y"].values.tolist() == [1, 2, 3]


def _holds_uint64(store) -> bool:
    # A store may say which integers its format holds (BSON: int64 only).
    low, high = getattr(store, "integer_range", (-(2**63), 2**64 - 1))
    return high >= 2**64 - 1
