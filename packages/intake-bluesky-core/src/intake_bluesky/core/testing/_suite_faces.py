"""Conformance tests of the faces people use: databroker/tiled habits, the
table of runs, rich reprs."""

from __future__ import annotations

import copy
import datetime

import event_model
import numpy as np
import pytest

from .._faces.table import BASE_COLUMNS, run_rows
from ._examples import T0, UIDS, NumpySeqHandler

__all__ = ["FacesTests", "GuardedSource"]

_ORDER = [UIDS[k] for k in ("scan", "count", "failed", "live", "stream")]


class GuardedSource:
    """A run source that serves start, stop and descriptors and fails the
    test on any read of event data, datums or external data."""

    def __init__(self, inner, allow_descriptors: bool = True):
        self._inner = inner
        self.uid = inner.uid
        self._allow_descriptors = allow_descriptors

    def start(self):
        return self._inner.start()

    def stop(self):
        return self._inner.stop()

    def descriptors(self):
        if not self._allow_descriptors:
            raise AssertionError(f"descriptors of run {self.uid} were read")
        return self._inner.descriptors()

    def _refuse(self, *args, **kwargs):
        raise AssertionError(f"run {self.uid}: event data or external data was read")

    event_pages = event_count = resources = datum_pages = datums = _refuse
    stream_resources = stream_datums = documents = _refuse


def _guard(monkeypatch, cat, allow_descriptors=True):
    """Make every run the catalog opens a :class:`GuardedSource`."""
    original = cat.driver.run

    def run(uid):
        return GuardedSource(original(uid), allow_descriptors)

    monkeypatch.setattr(cat.driver, "run", run)


def _nasty_run():
    """A run whose metadata, field names and units hold HTML."""
    run = event_model.compose_run(
        uid="3c417000-0000-4000-8000-0000000000ff",
        time=T0 + 1000,
        metadata={
            "scan_id": 77,
            "plan_name": "<script>alert('plan')</script>",
            "sample": "<img src=x onerror=alert(1)>",
            "operator": "a & b",
        },
    )
    docs = [("start", run.start_doc)]
    desc = run.compose_descriptor(
        name="<b>odd</b>",
        data_keys={
            "x<y": {
                "source": "<i>src</i>",
                "dtype": "number",
                "shape": [],
                "units": "<u>mm</u>",
            }
        },
    )
    docs.append(("descriptor", desc.descriptor_doc))
    docs.append(("event", desc.compose_event(data={"x<y": 1.0}, timestamps={"x<y": T0 + 1001})))
    docs.append(("stop", run.compose_stop(reason="<script>stop</script>", exit_status="abort")))
    return docs


class FacesTests:
    """Mixed into :class:`~intake_bluesky.core.testing.ConformanceTests`."""

    # --- run habits ---------------------------------------------------------
    def test_run_start_stop_descriptors(self, cat, runs):
        run = cat[UIDS["scan"]]
        assert run.start == run.metadata["start"]
        assert run.start["uid"] == UIDS["scan"] and run.start["plan_name"] == "scan"
        assert run.stop["exit_status"] == "success" and run.stop["run_start"] == UIDS["scan"]
        assert cat[UIDS["live"]].stop is None
        expected = [doc["uid"] for name, doc in runs[0] if name == "descriptor"]
        assert [d["uid"] for d in run.descriptors] == expected
        assert [d["name"] for d in run.descriptors] == ["baseline", "primary"]
        assert [d["uid"] for d in run.primary.descriptors] == expected[1:]
        assert set(run.primary.descriptors[0]["data_keys"]) == {"det", "motor", "img", "ext"}

    # --- catalog habits -----------------------------------------------------
    def test_slices_are_lists_of_runs_oldest_first(self, cat):
        def uids(found):
            assert isinstance(found, list)
            return [run.start["uid"] for run in found]

        assert uids(cat[-3:]) == _ORDER[-3:]
        assert uids(cat[:2]) == _ORDER[:2]
        assert uids(cat[1:4]) == _ORDER[1:4]
        assert uids(cat[::-1]) == _ORDER[::-1]
        assert uids(cat[::2]) == _ORDER[::2]
        assert uids(cat[-2:-1]) == [_ORDER[-2]]
        assert uids(cat[10:]) == [] and uids(cat[-100:]) == _ORDER
        assert uids(cat.search({"plan_name": "count"})[-1:]) == [UIDS["failed"]]

    def test_values_items_keys_are_lazy_views(self, cat, monkeypatch):
        values = cat.values()
        assert len(values) == 5
        assert values.last().start["uid"] == UIDS["stream"]
        assert values.first().start["uid"] == UIDS["scan"]
        assert values[1].start["uid"] == UIDS["count"]
        assert values[-2].start["uid"] == UIDS["live"]
        assert [r.start["uid"] for r in values.head(2)] == _ORDER[:2]
        assert [r.start["uid"] for r in values.tail(2)] == _ORDER[-2:]
        assert list(cat.keys()) == _ORDER
        assert cat.keys()[-1] == UIDS["stream"]
        pairs = list(cat.items())
        assert [uid for uid, _ in pairs] == _ORDER
        assert all(run.start["uid"] == uid for uid, run in pairs)
        with pytest.raises(IndexError):
            values[5]
        with pytest.raises(IndexError):
            values[-6]
        with pytest.raises(TypeError, match="cat\\[key\\]"):
            values["a1b2"]
        # Iterating opens runs without reading their data (not even descriptors).
        _guard(monkeypatch, cat, allow_descriptors=False)
        assert [run.start["scan_id"] for run in cat.values()] == [1, 2, 2, 3, 4]

    def test_search_keyword_sugar(self, cat):
        assert list(cat.search(plan_name="count")) == [UIDS["count"], UIDS["failed"]]
        assert list(cat.search(plan_name="count", scan_id=2)) == [UIDS["count"], UIDS["failed"]]
        assert list(cat.search({"operator": "bob"}, scan_id=2, plan_name="count")) == [
            UIDS["count"],
            UIDS["failed"],
        ]
        assert list(cat.search({"scan_id": {"$gt": 2}}, plan_name="scan")) == [UIDS["live"]]
        assert list(cat.search(**{"sample.name": "Au"})) == [UIDS["stream"]]
        assert list(cat.search()) == _ORDER

    def test_calling_or_get_says_what_to_do(self, cat):
        # databroker habits reaching intake's base Catalog.
        with pytest.raises(TypeError, match=r"cat\.search\(\{'plan_name': 'scan'\}\)"):
            cat(plan_name="scan")
        with pytest.raises(TypeError, match=r"cat\['a1b2c3d4"):
            cat.get(UIDS["scan"])
        with pytest.raises(TypeError, match=r"cat\[-1\]"):
            cat.get(-1)
        with pytest.raises(AttributeError, match=r"cat\[-1\]"):
            cat.last

    # --- reprs of configuration and streams -----------------------------------
    def test_config_repr_lists_configuration_fields(self, cat):
        config = cat[UIDS["scan"]].primary.config["det"]
        text = repr(config)
        assert "det_exposure" in text
        for data_field in ("'det'", "motor", "img", "ext"):
            assert data_field not in text.split("fields", 1)[1]
        assert list(config.read().data_vars) == ["det_exposure"]
        base = repr(cat[UIDS["scan"]].baseline.config["motor_x"])
        assert "motor_x_velocity" in base and "motor_x_mode" in base and "temp" not in base

    def test_getitem_has_a_real_docstring(self, cat):
        doc = type(cat).__getitem__.__doc__ or ""
        for part in ("Parameters", "Returns", "Raises", "partial", "scan_id", "-N", "slice"):
            assert part in doc, part
        assert "Return a catalog entry by name" not in doc

    # --- the table of runs --------------------------------------------------
    def test_run_rows(self, cat):
        rows = run_rows(cat, fields=["sample.name", "stop.reason", "start.operator", "nope.x"])
        assert [r["uid"] for r in rows] == _ORDER
        assert list(rows[0]) == [
            *BASE_COLUMNS,
            "sample.name",
            "stop.reason",
            "start.operator",
            "nope.x",
        ]
        assert [r["scan_id"] for r in rows] == [1, 2, 2, 3, 4]
        assert [r["plan_name"] for r in rows] == ["scan", "count", "count", "scan", "fly"]
        for row, t in zip(rows, (T0, T0 + 100, T0 + 200, T0 + 300, T0 + 400), strict=True):
            assert isinstance(row["time"], datetime.datetime)
            assert row["time"].tzinfo is not None and row["time"].timestamp() == t
        assert [r["duration"] for r in rows] == [8.0, 6.0, 3.0, None, 5.0]
        assert [r["exit_status"] for r in rows] == ["success", "success", "fail", None, "success"]
        assert [r["num_events"] for r in rows] == [
            {"baseline": 2, "primary": 6},
            {"primary": 5},
            {"primary": 2},
            {},
            {"primary": 4},
        ]
        assert [r["sample.name"] for r in rows] == ["Cu", "Fe", "Fe", "Ni", "Au"]
        assert [r["stop.reason"] for r in rows] == ["", "", "detector timeout", None, ""]
        assert [r["start.operator"] for r in rows] == ["alice", "bob", "bob", "carol", "alice"]
        assert [r["nope.x"] for r in rows] == [None] * 5

    def test_run_rows_limit_and_search(self, cat):
        assert [r["uid"] for r in run_rows(cat, limit=2)] == _ORDER[-2:]
        assert [r["uid"] for r in run_rows(cat, limit=1)] == [UIDS["stream"]]
        assert [r["uid"] for r in run_rows(cat, limit=50)] == _ORDER
        assert run_rows(cat, limit=0) == []
        counts = cat.search({"plan_name": "count"})
        assert [r["uid"] for r in run_rows(counts)] == [UIDS["count"], UIDS["failed"]]
        assert [r["uid"] for r in run_rows(counts, limit=1)] == [UIDS["failed"]]
        for bad in (-1, 1.5, "3", True):
            with pytest.raises(ValueError, match="limit"):
                run_rows(cat, limit=bad)
        for bad in ([1], [""], ["a..b"], ["uid"], ["x", "x"]):
            with pytest.raises(ValueError):
                run_rows(cat, fields=bad)
        with pytest.raises(TypeError):
            run_rows(cat, fields=3)

    def test_run_rows_read_no_event_data(self, cat, monkeypatch):
        _guard(monkeypatch, cat, allow_descriptors=False)
        NumpySeqHandler.instances = 0
        rows = run_rows(cat, fields=["sample.name"], limit=3)
        assert [r["uid"] for r in rows] == _ORDER[-3:]
        df = cat.to_dataframe()
        assert len(df) == 5
        assert NumpySeqHandler.instances == 0

    def test_run_rows_see_transforms(self, store, runs, common):
        for docs in runs:
            store.write_run(docs)

        def fix_start(doc):
            doc = copy.deepcopy(doc)
            doc["sample"] = {"name": doc["sample"]["name"].upper()}
            return doc

        def fix_stop(doc):
            return {**doc, "exit_status": doc["exit_status"].upper()}

        cat = store.catalog(transforms={"start": fix_start, "stop": fix_stop}, **common)
        rows = run_rows(cat, fields=["sample.name"])
        assert [r["sample.name"] for r in rows] == ["CU", "FE", "FE", "NI", "AU"]
        assert [r["exit_status"] for r in rows] == ["SUCCESS", "SUCCESS", "FAIL", None, "SUCCESS"]

    def test_to_dataframe(self, cat):
        pd = pytest.importorskip("pandas")
        df = cat.to_dataframe(fields=["sample.name", "stop.reason"])
        assert list(df.columns) == [
            "uid",
            "scan_id",
            "plan_name",
            "time",
            "duration",
            "exit_status",
            "events.primary",
            "events.baseline",
            "sample.name",
            "stop.reason",
        ]
        assert isinstance(df.index, pd.RangeIndex) and list(df.index) == [0, 1, 2, 3, 4]
        assert list(df["uid"]) == _ORDER
        assert df["scan_id"].tolist() == [1, 2, 2, 3, 4]
        assert df["scan_id"].dtype.kind == "i"
        assert isinstance(df["time"].dtype, pd.DatetimeTZDtype)
        assert [t.timestamp() for t in df["time"]] == [T0 + 100 * i for i in range(5)]
        np.testing.assert_array_equal(df["duration"].to_numpy(), [8.0, 6.0, 3.0, np.nan, 5.0])
        assert df["exit_status"].isna().tolist() == [False, False, False, True, False]
        assert df["exit_status"].iloc[2] == "fail"
        assert str(df["events.primary"].dtype) == "Int64"
        assert df["events.primary"].tolist()[:3] == [6, 5, 2]
        assert df["events.primary"].isna().tolist() == [False, False, False, True, False]
        assert df["events.baseline"].iloc[0] == 2 and df["events.baseline"].isna().sum() == 4
        assert df["sample.name"].tolist() == ["Cu", "Fe", "Fe", "Ni", "Au"]
        newest = cat.to_dataframe(limit=2)
        assert list(newest["uid"]) == _ORDER[-2:] and list(newest.index) == [0, 1]
        assert "events.baseline" not in newest.columns
        empty = cat.search({"plan_name": "nothing"}).to_dataframe()
        assert len(empty) == 0 and list(empty.columns)[:6] == list(BASE_COLUMNS[:6])

    # --- rich reprs ---------------------------------------------------------
    def test_catalog_html(self, cat, monkeypatch):
        from .._faces import html as _html

        html = cat._repr_html_()
        assert "5 runs" in html and "<table" in html
        # Newest last: scan ids in table order.
        positions = [html.index(f'title="{uid}"') for uid in _ORDER]
        assert positions == sorted(positions)
        assert "detector timeout" not in html  # reasons are for the run view
        assert "running" in html  # the run in progress
        monkeypatch.setattr(_html, "CATALOG_ROWS", 2)
        html = _html.catalog_html(cat, rows=2)
        assert "the newest 2 shown" in html
        assert f'title="{UIDS["stream"]}"' in html and f'title="{UIDS["scan"]}"' not in html
        assert "to_dataframe" in html
        counts = cat.search({"plan_name": "count"})._repr_html_()
        assert "2 runs" in counts and "plan_name" in counts

    def test_run_and_stream_html_read_no_data(self, cat, monkeypatch):
        _guard(monkeypatch, cat)
        NumpySeqHandler.instances = 0
        run = cat[UIDS["scan"]]
        html = run._repr_html_()
        for part in ("scan_id", "Cu", "alice", "baseline", "primary", "det", "counts", "mm"):
            assert part in html, part
        assert "6 events" in html and "2 events" in html
        assert "y: 4, x: 5" in html and "uint16" in html  # img: dims and dtype
        stream = run.primary
        html = stream._repr_html_()
        assert "<b>time</b>: 6" in html and "<b>y</b>: 4" in html and "<b>x</b>: 5" in html
        assert "<b>ext_dim_0</b>: 3" in html
        for part in ("det", "motor", "img", "ext", "float64", "uint16", "counts"):
            assert part in html, part
        config = run.primary.config["det"]._repr_html_()
        assert "det_exposure" in config and "<b>img</b>" not in config
        timestamps = run.primary.timestamps._repr_html_()
        assert "uint16" not in timestamps and "<b>img</b>" in timestamps
        live = cat[UIDS["live"]]
        assert "in progress" in live._repr_html_() and "running" in live._repr_html_()
        assert "<b>time</b>: ?" in live.primary._repr_html_()
        assert NumpySeqHandler.instances == 0

    def test_html_escapes_document_strings(self, store, runs, common):
        store.write_run(_nasty_run())
        cat = store.catalog(**common)
        uid = "3c417000-0000-4000-8000-0000000000ff"
        for html in (
            cat._repr_html_(),
            cat[uid]._repr_html_(),
            cat[uid]["<b>odd</b>"]._repr_html_(),
        ):
            for raw in ("<script", "<img", "<b>odd", "<i>src", "<u>mm", "x<y"):
                assert raw not in html, raw
        run_html = cat[uid]._repr_html_()
        assert "&lt;script&gt;alert(&#x27;plan&#x27;)&lt;/script&gt;" in run_html
        assert "&lt;img src=x onerror=alert(1)&gt;" in run_html and "a &amp; b" in run_html
        assert "&lt;script&gt;stop&lt;/script&gt;" in run_html  # the stop reason
        assert "x&lt;y" in cat[uid]["<b>odd</b>"]._repr_html_()
        # How to reach a stream whose name is not an identifier, as Python.
        assert "run[&#x27;&lt;b&gt;odd&lt;/b&gt;&#x27;].read()" in run_html

    def test_reprs_never_raise(self, cat, monkeypatch):
        run = cat[UIDS["scan"]]
        stream = run.primary

        def broken(*args, **kwargs):
            raise OSError("storage gone")

        monkeypatch.setattr(run._run, "start", broken)
        monkeypatch.setattr(run._run, "descriptors", broken)
        assert UIDS["scan"] in repr(run) and "OSError" in repr(run)
        assert "storage gone" in run._repr_html_()
        assert "OSError" in repr(stream) and "storage gone" in stream._repr_html_()
        monkeypatch.setattr(cat.driver, "count", broken)
        assert "OSError" in repr(cat) and "storage gone" in cat._repr_html_()
        for obj in (cat, run, stream):
            # IPython must use the HTML, not intake's YAML display.
            assert getattr(obj, "_ipython_display_", None) is None
