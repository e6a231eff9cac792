"""Unit tests of the correctness pieces: TimeRange, query normalization,
lossless casts, live documents holding Python/numpy types."""

import datetime
import pickle
import zoneinfo

import event_model
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from intake_bluesky.core import BlueskyInMemoryCatalog, TimeRange, normalize_query, to_epoch
from intake_bluesky.core._model.casting import fits, lossless_cast

UTC = datetime.UTC


# --- time -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026", datetime.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-03", datetime.datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01", datetime.datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01 14", datetime.datetime(2026, 3, 1, 14, tzinfo=UTC)),
        ("2026-03-01 14:00", datetime.datetime(2026, 3, 1, 14, tzinfo=UTC)),
        ("2026-03-01T14:00:05", datetime.datetime(2026, 3, 1, 14, 0, 5, tzinfo=UTC)),
        ("2026-03-01 14:00:05.250", datetime.datetime(2026, 3, 1, 14, 0, 5, 250000, tzinfo=UTC)),
    ],
)
def test_to_epoch_strings(text, expected):
    assert to_epoch(text, timezone="UTC") == expected.timestamp()


def test_to_epoch_timezones_and_types():
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # Winter (UTC+1) and summer (UTC+2) offsets of the named zone.
    assert (
        to_epoch("2026-01-15 12:00", timezone="Europe/Berlin")
        == datetime.datetime(2026, 1, 15, 11, tzinfo=UTC).timestamp()
    )
    assert (
        to_epoch("2026-07-15 12:00", timezone=berlin)
        == datetime.datetime(2026, 7, 15, 10, tzinfo=UTC).timestamp()
    )
    # An explicit offset wins over the timezone argument.
    assert (
        to_epoch("2026-07-15T12:00:00+00:00", timezone="Europe/Berlin")
        == datetime.datetime(2026, 7, 15, 12, tzinfo=UTC).timestamp()
    )
    # Naive values without a timezone are local time, as Python reads them.
    naive = datetime.datetime(2026, 7, 15, 12)
    assert to_epoch(naive) == naive.timestamp()
    assert to_epoch(datetime.date(1970, 1, 2), timezone="UTC") == 86400.0
    assert to_epoch(np.datetime64("1970-01-02T00:00:00")) == 86400.0
    assert to_epoch(12.5) == 12.5
    with pytest.raises(ValueError, match="Cannot read 'yesterday'"):
        to_epoch("yesterday")
    with pytest.raises(ValueError, match="Unknown timezone"):
        to_epoch("2026-01-01", timezone="Mars/Olympus")
    with pytest.raises(TypeError):
        to_epoch(True)


def test_time_range_is_the_query():
    q = TimeRange(since="2026-03-01", until="2026-03-02", timezone="UTC")
    start = datetime.datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert q == {"time": {"$gte": start, "$lt": start + 86400}}
    assert repr(q) == "TimeRange(since='2026-03-01', until='2026-03-02', timezone='UTC')"
    assert pickle.loads(pickle.dumps(q)) == q
    assert TimeRange(until=5) == {"time": {"$lt": 5.0}}
    with pytest.raises(ValueError, match="needs since"):
        TimeRange()
    with pytest.raises(ValueError, match="not before"):
        TimeRange(since="2026-03-02", until="2026-03-01")


def test_normalize_query():
    q = {
        "motors": ("a", np.str_("b")),
        "num": np.int64(3),
        "arr": {"$in": np.array([1.5, 2.5])},
        "$or": [{"time": "1970-01-02T00:00:00+00:00"}, {"time": {"$in": [np.float64(1.0)]}}],
        "time": {"$not": {"$lt": datetime.datetime(1970, 1, 1, 0, 1, tzinfo=UTC)}},
    }
    out = normalize_query(q)
    assert out == {
        "motors": ["a", "b"],
        "num": 3,
        "arr": {"$in": [1.5, 2.5]},
        "$or": [{"time": 86400.0}, {"time": {"$in": [1.0]}}],
        "time": {"$not": {"$lt": 60.0}},
    }
    assert type(out["num"]) is int and type(out["motors"][1]) is str
    with pytest.raises(ValueError, match="only be compared with 'time'"):
        normalize_query({"when": datetime.date(2026, 1, 1)})


# --- casts --------------------------------------------------------------------------
def test_fits():
    assert fits(np.array([1.0, 2.0]), np.dtype("int64"))
    assert not fits(np.array([1.0, 2.5]), np.dtype("int64"))
    assert not fits(np.array([1.0, np.nan]), np.dtype("int64"))
    assert fits(np.array([1.0, np.nan]), np.dtype("float32"))
    assert not fits(np.array([1.1]), np.dtype("float32"))  # 1.1 is not a float32
    assert fits(np.array([300]), np.dtype("int16"))
    assert not fits(np.array([300]), np.dtype("uint8"))
    assert not fits(np.array([-1]), np.dtype("uint64"))
    # int64 -> float64 is "safe" to numpy, yet rounds above 2**53.
    assert fits(np.array([2**53]), np.dtype("float64"))
    assert not fits(np.array([2**53 + 1]), np.dtype("float64"))
    assert fits(np.array([True, False]), np.dtype("int64"))


_INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(_INT_DTYPES),
    target=st.sampled_from(_INT_DTYPES),
    data=st.data(),
)
def test_integers_fit_an_integer_dtype_exactly_when_in_its_range(source, target, data):
    info = np.iinfo(source)
    values = np.array(
        data.draw(st.lists(st.integers(int(info.min), int(info.max)), max_size=8)), dtype=source
    )
    fit = fits(values, np.dtype(target))
    lo, hi = np.iinfo(target).min, np.iinfo(target).max
    assert fit == all(lo <= int(v) <= hi for v in values.tolist())
    out = lossless_cast(values, np.dtype(target), run="r", field="f") if fit else values
    # A cast that fits keeps every value: the same Python ints come back.
    assert out.tolist() == values.tolist()
    assert out.dtype == (np.dtype(target) if fit else values.dtype)


def test_lossless_cast_warns_with_run_and_field():
    with pytest.warns(UserWarning, match=r"Run 'r1': field 'sp' is declared with dtype 'integer'"):
        out = lossless_cast(
            np.array([0.0, 2.5]), np.dtype("int64"), run="r1", field="sp", what="dtype 'integer'"
        )
    assert out.tolist() == [0.0, 2.5] and out.dtype == np.float64
    same = lossless_cast(np.array([1, 2], dtype="int32"), np.dtype("int64"), run="r", field="f")
    assert same.dtype == np.int64


# --- live documents ------------------------------------------------------------------
def test_live_start_documents_with_numpy_values_are_searchable():
    # What a RunEngine hands a callback: tuples, numpy scalars and arrays.
    cat = BlueskyInMemoryCatalog()
    run = event_model.compose_run(
        metadata={
            "scan_id": 7,
            "count": np.int64(7),
            "motors": ("m1", "m2"),
            "num_points": np.int32(5),
            "positions": np.array([0.5, 1.5]),
            "plan_name": "grid_scan",
        }
    )
    cat("start", run.start_doc)
    uid = run.start_doc["uid"]
    assert list(cat.search({"count": 7})) == [uid]
    assert list(cat.search({"num_points": {"$gte": 5}})) == [uid]
    assert list(cat.search({"positions": 1.5})) == [uid]
    assert list(cat.search({"positions": {"$size": 2}})) == [uid]
    assert list(cat.search({"motors.1": "m2"})) == [uid]
    assert list(cat.search({"motors": {"$all": ["m2", "m1"]}})) == [uid]
    assert cat[7].uid == uid


def test_numpy_integers_look_runs_up():
    cat = BlueskyInMemoryCatalog()
    run = event_model.compose_run(metadata={"scan_id": 9})
    cat("start", run.start_doc)
    uid = run.start_doc["uid"]
    assert cat[np.int64(9)].uid == uid
    assert cat[np.int32(-1)].uid == uid
    with pytest.raises(TypeError):
        cat[np.bool_(True)]


def test_rows_without_events_never_change_values():
    from intake_bluesky.core._model.eager import _spread

    where = np.array([0, 2])
    big = _spread(np.array([2**53 + 1, 7]), where, 3)
    assert big.dtype == object and big.tolist() == [2**53 + 1, None, 7]
    small = _spread(np.array([1, 7]), where, 3)
    assert small.dtype == np.float64 and np.isnan(small[1]) and small[[0, 2]].tolist() == [1, 7]
    flags = _spread(np.array([True, False]), where, 3)
    assert flags.dtype == np.float64 and flags[[0, 2]].tolist() == [1.0, 0.0]
    text = _spread(np.array(["a", "bb"]), where, 3)
    assert text.dtype == object and text.tolist() == ["a", None, "bb"]


def test_yaml_of_a_catalog_made_with_a_time_range_loads_back(tmp_path):
    import intake

    from intake_bluesky.core.testing import UIDS, example_runs

    cat = BlueskyInMemoryCatalog(query=TimeRange(since=0, until=1_700_000_150, timezone="UTC"))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    assert list(cat) == [UIDS["scan"], UIDS["count"]]
    text = cat.yaml()
    assert "TimeRange" not in text and "python/object" not in text
    path = tmp_path / "cat.yaml"
    path.write_text(text)
    loaded = intake.open_catalog(str(path))
    entry = loaded[list(loaded)[0]]
    assert entry._query == {"time": {"$gte": 0.0, "$lt": 1_700_000_150.0}}


def test_equal_to_a_date_string_is_its_period():
    from intake_bluesky.core._query.time import epoch_span

    day = datetime.datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert epoch_span("2026-03-01", timezone="UTC") == (day, day + 86400)
    assert epoch_span("2026-03", timezone="UTC") == (day, day + 31 * 86400)
    assert (
        epoch_span("2026-12", timezone="UTC")[1]
        == datetime.datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )
    assert (
        epoch_span("2026", timezone="UTC")[1]
        == datetime.datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )
    assert epoch_span("2026-03-01 14", timezone="UTC") == (day + 14 * 3600, day + 15 * 3600)
    assert epoch_span("2026-03-01 14:05", timezone="UTC")[1] - day == 14 * 3600 + 6 * 60
    assert epoch_span("2026-03-01T14:05:07", timezone="UTC")[1] - day == 14 * 3600 + 5 * 60 + 8
    assert epoch_span("2026-03-01T14:05:07.5") is None
    assert epoch_span("2026-03-01T14:05:07+00:00") is None


# --- columns of pages ------------------------------------------------------------
def test_columns_keep_numbers_among_strings():
    from intake_bluesky.core._model.pages import as_column

    assert as_column([1.5, "a"]) == [1.5, "a"]  # not ['1.5', 'a']
    assert as_column(["a", "bb"]).dtype == np.dtype("<U2")
    floats = as_column([0.5, float("nan"), -2.0])
    assert floats.dtype == np.float64 and floats[0] == 0.5 and np.isnan(floats[1])


def test_merging_pages_of_other_kinds_keeps_values():
    # Pages of one field packed separately (floats, then ints above 2**53,
    # appended to a live run) must not be joined through float64.
    from intake_bluesky.core import DocumentRunSource
    from intake_bluesky.core._model.pages import _concat

    head = [
        ("start", {"uid": "s", "time": 0.0}),
        ("descriptor", {"uid": "d", "run_start": "s", "time": 0.0, "data_keys": {}, "name": "p"}),
    ]
    events = [
        (
            "event",
            {
                "descriptor": "d",
                "uid": f"e{i}",
                "time": 1.0,
                "seq_num": i,
                "data": {"a": 0.5},
                "timestamps": {"a": 0.0},
            },
        )  # fmt: skip
        for i in (1, 2)
    ]
    page = ("event_page", {"descriptor": "d", "uid": ["p1", "p2"], "time": [1.0, 1.0],
                           "seq_num": [3, 4], "data": {"a": [2**60 + 1, 7]},
                           "timestamps": {"a": [0.0, 0.0]}, "filled": {}})  # fmt: skip
    source = DocumentRunSource(head + events, keep_documents=False)
    source.extend([page])
    values = [v for p in source.event_pages("d") for v in p["data"]["a"]]
    assert values == [0.5, 0.5, 2**60 + 1, 7]
    assert type(values[2]) is int
    ints = np.array([1, 2], dtype=np.int32), np.array([2**40], dtype=np.int64)
    joined = _concat(list(ints))
    assert joined.dtype == np.int64 and joined.tolist() == [1, 2, 2**40]


def test_exact_arrays_hold_every_value():
    from intake_bluesky.core._model.pages import as_column, exact_array

    beyond = exact_array([0, 2**63 + 1])
    assert beyond.dtype == np.uint64 and beyond.tolist() == [0, 2**63 + 1]
    huge = exact_array([-1, 2**64 + 1])
    assert huge.dtype == object and huge.tolist() == [-1, 2**64 + 1]
    mixed = exact_array([[2**60 + 1, 0.5], [1, 2]])
    assert mixed.dtype == object and mixed.shape == (2, 2)
    assert mixed.tolist() == [[2**60 + 1, 0.5], [1, 2]]
    small = exact_array([1, 0.5, float("nan")])
    assert small.dtype == np.float64 and small[:2].tolist() == [1.0, 0.5]
    nul = exact_array([["x\x00", "y"], ["z", ""]])
    assert nul.dtype == object and nul.tolist() == [["x\x00", "y"], ["z", ""]]
    assert exact_array([b"a\x00", b"b"]).tolist() == [b"a\x00", b"b"]
    assert exact_array(["a", "b\x00c"]).dtype == object  # any NUL: checked exactly
    assert exact_array(["a", "bc"]).dtype == np.dtype("<U2")
    # Page columns: kept as stored where no numpy dtype but object holds them.
    assert as_column(["a\x00", "b"]) == ["a\x00", "b"]
    assert as_column([0, 2**63 + 1]).dtype == np.uint64


def test_mismatch_messages_say_what_does_not_fit():
    from intake_bluesky.core._model.casting import why_not

    assert why_not(np.array([0.0, 2.5, np.nan, 3.5]), np.dtype("int64")) == (
        "row 1 holds 2.5, a fraction (3 rows do not fit)"
    )
    assert why_not(np.array([1.0, np.nan]), np.dtype("int64")) == (
        "row 1 holds nan, NaN, which an integer dtype cannot hold"
    )
    assert why_not(np.array([7, 300]), np.dtype("uint8"), first_row=10) == (
        "row 11 holds 300, outside uint8's range"
    )
    assert why_not(np.array([1, 2**53 + 1]), np.dtype("float64")) == (
        "row 1 holds 9007199254740993, an integer beyond float64's precision"
    )
    assert why_not(np.array([1, 2**64], dtype=object), np.dtype("int64")) == (
        "row 1 holds 18446744073709551616, outside int64's range"
    )
    with pytest.warns(UserWarning) as caught:
        lossless_cast(np.array([0, 2**63 + 1], dtype=np.uint64), np.dtype("int64"),
                      run="r", field="i", what="dtype 'integer'")  # fmt: skip
    message = str(caught[0].message)
    assert message == (
        "Run 'r': field 'i' is declared with dtype 'integer', but row 1 holds "
        "9223372036854775809, outside int64's range; the values keep their own dtype "
        "(uint64) so that none of them changes."
    )


def test_descriptors_concatenate_without_changing_values():
    from intake_bluesky.core._model.assembly import _common_dtypes

    def ds(t, **fields):
        return xr.Dataset(
            {k: ("time", np.asarray(v)) for k, v in fields.items()},
            coords={"time": ("time", np.asarray(t, dtype=float))},
        )

    empty = xr.Dataset(
        {"n": ("time", np.empty((0,))), "m": ("time", np.empty((0,)))},
        coords={"time": ("time", np.empty((0,)))},
    )
    big = ds([1.0], n=[2**60 + 1], m=[1])
    floats = ds([2.0], n=[0.5], m=[2])
    parts = _common_dtypes([big, empty, floats])
    joined = xr.concat(parts, dim="time", data_vars="all", join="outer")
    assert joined["n"].dtype == object and joined["n"].values.tolist() == [2**60 + 1, 0.5]
    assert joined["m"].dtype == np.int64 and joined["m"].values.tolist() == [1, 2]
    # A descriptor without the field: its rows are missing (NaN), and the
    # big integer is not rounded to make room for them.
    parts = _common_dtypes([big, ds([3.0], m=[3])])
    joined = xr.concat(parts, dim="time", data_vars="all", join="outer")
    values = joined["n"].values.tolist()
    assert values[0] == 2**60 + 1 and values[1] != values[1]
