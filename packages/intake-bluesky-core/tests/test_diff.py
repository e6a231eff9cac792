"""run.diff(other) -> RunDiff: each section, tolerances, text/HTML/JSON forms,
over in-memory runs composed with event-model."""

from __future__ import annotations

import json
import shutil
import uuid

import event_model
import numpy as np
import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog, RunDiff
from intake_bluesky.core._model.diff import MISSING, SECTIONS, Change
from intake_bluesky.core.testing import UIDS, example_registry, example_runs

T0 = 1_750_000_000.0


def compose(
    *,
    sample="Cu",
    exposure=0.1,
    gain="high",
    motor=(1.0, 1.5),
    temp=(290, 291),
    versions=None,
    rows=3,
    extra_start=None,
    det_shape=(),
    stop=True,
    baseline_stream=True,
    t0=T0,
):
    """A run with a primary stream (det, motor) whose detector has
    configuration, a baseline stream (bl_motor, temp) and versions in start."""
    counter = iter(range(10**6))

    def uid():
        return str(uuid.uuid4()) + f"-{next(counter)}"

    metadata = {
        "scan_id": 7,
        "plan_name": "scan",
        "sample": {"name": sample, "thickness": 0.5},
        "motors": ("motor",),
        "versions": versions if versions is not None else {"bluesky": "1.15.1", "ophyd": "1.11"},
        **(extra_start or {}),
    }
    run = event_model.compose_run(uid=str(uuid.uuid4()), time=t0, metadata=metadata)
    docs = [("start", run.start_doc)]
    config = {
        "det": {
            "data": {"det_exposure": exposure, "det_gain": gain},
            "timestamps": {"det_exposure": t0, "det_gain": t0},
            "data_keys": {
                "det_exposure": {"source": "SIM:e", "dtype": "number", "shape": []},
                "det_gain": {"source": "SIM:g", "dtype": "string", "shape": []},
            },
        }
    }
    baseline = run.compose_descriptor(
        name="baseline",
        uid=uid(),
        time=t0 + 0.1,
        data_keys={
            "bl_motor": {"source": "SIM:bl", "dtype": "number", "shape": [], "units": "mm"},
            "temp": {"source": "SIM:t", "dtype": "integer", "shape": []},
        },
        object_keys={"bl_motor": ["bl_motor"], "temp": ["temp"]},
    )
    if baseline_stream:
        docs.append(("descriptor", baseline.descriptor_doc))
        docs.append(
            (
                "event",
                baseline.compose_event(
                    data={"bl_motor": motor[0], "temp": temp[0]},
                    timestamps={"bl_motor": t0, "temp": t0},
                    seq_num=1,
                    uid=uid(),
                    time=t0 + 0.2,
                ),
            )
        )
    det_key = {"source": "SIM:det", "dtype": "number", "shape": list(det_shape)}
    if det_shape:
        det_key["dtype"] = "array"
    primary = run.compose_descriptor(
        name="primary",
        uid=uid(),
        time=t0 + 0.3,
        data_keys={
            "det": det_key,
            "motor": {"source": "SIM:m", "dtype": "number", "shape": [], "units": "mm"},
        },
        configuration=config,
        object_keys={"det": ["det"], "motor": ["motor"]},
    )
    docs.append(("descriptor", primary.descriptor_doc))
    for i in range(rows):
        value = np.full(det_shape, float(i)).tolist() if det_shape else float(i)
        docs.append(
            (
                "event",
                primary.compose_event(
                    data={"det": value, "motor": 0.1 * i},
                    timestamps={"det": t0 + 1 + i, "motor": t0 + 1 + i},
                    seq_num=i + 1,
                    uid=uid(),
                    time=t0 + 1 + i,
                ),
            )
        )
    if baseline_stream:
        docs.append(
            (
                "event",
                baseline.compose_event(
                    data={"bl_motor": motor[1], "temp": temp[1]},
                    timestamps={"bl_motor": t0 + 9, "temp": t0 + 9},
                    seq_num=2,
                    uid=uid(),
                    time=t0 + 9,
                ),
            )
        )
    if stop:
        docs.append(("stop", run.compose_stop(uid=uid(), time=t0 + 10)))
    return docs


def runs(*doc_lists, **catalog_kwargs):
    cat = BlueskyInMemoryCatalog(**catalog_kwargs)
    for docs in doc_lists:
        cat.ingest(docs)
    return [cat[docs[0][1]["uid"]] for docs in doc_lists]


def keyed(diff, section):
    return {c.key: (c.a, c.b) for c in diff.section(section)}


def test_a_run_diffed_with_itself_is_empty():
    (run,) = runs(compose())
    diff = run.diff(run)
    assert isinstance(diff, RunDiff)
    assert not diff and len(diff) == 0 and list(diff) == []
    assert str(diff).splitlines()[-1] == "no differences (rtol=0, atol=0)"
    out = diff.to_dict()
    assert out["equal"] is True
    assert out["sections"] == {name: [] for name in SECTIONS}
    assert out["a"]["uid"] == out["b"]["uid"] == run.uid
    json.dumps(out, allow_nan=False)


def test_the_example_runs_each_equal_themselves(tmp_path):
    # Every kind of run the kit has: external data, stream data, in progress.
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    for uid in UIDS.values():
        assert not cat[uid].diff(cat[uid]), uid


def test_two_runs_with_the_same_content_are_equal():
    # Different uids and times (the header), nothing else.
    a, b = runs(compose(), compose(t0=T0 + 3600))
    diff = a.diff(b)
    assert not diff
    assert diff.a["uid"] == a.uid and diff.b["uid"] == b.uid
    assert diff.b["time"] - diff.a["time"] == 3600


def test_start_metadata_keys_only_in_one_and_values_that_differ():
    a, b = runs(
        compose(sample="Cu", extra_start={"operator": "alice"}),
        compose(sample="Fe", extra_start={"proposal": 42}),
    )
    diff = a.diff(b)
    assert diff.section("start") == [
        Change("start", "sample.name", "Cu", "Fe"),
        Change("start", "operator", "alice", MISSING),
        Change("start", "proposal", MISSING, 42),
    ]
    assert [c.only_in for c in diff.section("start")] == [None, "a", "b"]
    # uid and time are the runs' identity, not differences.
    assert not {"uid", "time", "scan_id"} & set(keyed(diff, "start"))


def test_tuples_equal_lists_and_numpy_scalars_equal_python_ones():
    # A live start document holds tuples, a stored one lists.
    a, b = runs(
        compose(extra_start={"m": ("x", "y"), "n": np.int64(3)}),
        compose(extra_start={"m": ["x", "y"], "n": 3}),
    )
    assert not a.diff(b).section("start")


def test_configuration_per_stream_device_and_field():
    a, b = runs(compose(exposure=0.1, gain="high"), compose(exposure=0.25, gain="high"))
    diff = a.diff(b)
    assert diff.section("configuration") == [
        Change("configuration", "primary.det.det_exposure", 0.1, 0.25)
    ]


def test_baseline_first_and_last_with_float_tolerance():
    a, b = runs(compose(motor=(1.0, 1.5)), compose(motor=(1.0, 1.5 + 1e-9)))
    assert keyed(a.diff(b), "baseline") == {"bl_motor.last": (1.5, 1.5 + 1e-9)}
    assert not a.diff(b, atol=1e-6)
    assert not a.diff(b, rtol=1e-8)
    assert a.diff(b, rtol=1e-12)
    assert a.diff(b, atol=1e-6).to_dict()["atol"] == 1e-6


def test_baseline_integers_and_first_readings():
    a, b = runs(compose(temp=(290, 291)), compose(temp=(295, 291)))
    # The tolerance is for floats: integer readings are compared exactly.
    diff = a.diff(b, atol=10)
    assert keyed(diff, "baseline") == {"temp.first": (290, 295)}
    assert all(type(v) is int for v in keyed(diff, "baseline")["temp.first"])


def test_tolerance_must_be_a_finite_non_negative_number():
    (run,) = runs(compose())
    for bad in (-1.0, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="finite number >= 0"):
            run.diff(run, rtol=bad)
    with pytest.raises(TypeError, match="another run"):
        run.diff(run.primary)


def test_streams_rows_fields_shapes_dtypes():
    a, b = runs(compose(rows=3), compose(rows=5, det_shape=(2, 3)))
    diff = a.diff(b)
    assert keyed(diff, "streams") == {
        "primary.rows": (3, 5),
        "primary.det.shape": ([], [2, 3]),
        "primary.det.dtype": ("number", "array"),
    }
    assert keyed(diff, "stop") == {"num_events.primary": (3, 5)}


def test_stream_only_in_one_run():
    a, b = runs(compose(), compose(baseline_stream=False))
    diff = a.diff(b)
    streams = keyed(diff, "streams")
    assert streams["baseline"] == ({"rows": 2, "fields": ["bl_motor", "temp"]}, MISSING)
    assert keyed(diff, "baseline") == {
        "bl_motor.first": (1.0, MISSING),
        "bl_motor.last": (1.5, MISSING),
        "temp.first": (290, MISSING),
        "temp.last": (291, MISSING),
    }


def test_versions_section():
    a, b = runs(
        compose(versions={"bluesky": "1.15.1", "ophyd": "1.11"}),
        compose(versions={"bluesky": "1.16.0", "ophyd-async": "0.21"}),
    )
    assert a.diff(b).section("versions") == [
        Change("versions", "bluesky", "1.15.1", "1.16.0"),
        Change("versions", "ophyd", "1.11", MISSING),
        Change("versions", "ophyd-async", MISSING, "0.21"),
    ]
    # versions are not also reported as start metadata
    assert not a.diff(b).section("start")


def test_a_run_in_progress_against_a_finished_one():
    a, b = runs(compose(), compose(stop=False))
    assert a.diff(b).section("stop") == [Change("stop", "exit_status", "success", "in progress")]


def test_external_files_found_missing_and_sizes(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    docs = example_runs(here)[0]
    shutil.copytree(here, there)
    # One frame file of B lost, another truncated to nothing.
    (there / "scan_ext_5.npy").unlink()
    (there / "scan_ext_0.npy").write_bytes(b"")
    (run_a,) = runs(docs, **example_registry(here))
    (run_b,) = runs(docs, **example_registry(there))
    size = (here / "scan_ext_0.npy").stat().st_size
    diff = run_a.diff(run_b)
    assert keyed(diff, "external") == {"ext.files": (6, 5), "ext.bytes": (6 * size, 4 * size)}
    # Only external files differ: the documents are the same.
    assert {c.section for c in diff} == {"external"}

    # All of B's files gone: its location is missing, and named.
    shutil.rmtree(there)
    diff = run_a.diff(run_b)
    assert keyed(diff, "external") == {
        "ext.files": (6, 0),
        "ext.missing": (0, 1),
        "ext.bytes": (6 * size, 0),
    }
    assert diff.b["missing_files"] == [str(there / "scan_ext")]
    assert diff.a["missing_files"] == []
    assert "1 external file(s) missing" in str(diff).splitlines()[1]


def test_stream_resource_files(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    docs = example_runs(here)[4]
    there.mkdir()
    (run_a,) = runs(docs, **example_registry(here))
    (run_b,) = runs(docs, **example_registry(there))
    size = (here / "stream_frames.npy").stat().st_size
    assert keyed(run_a.diff(run_b), "external") == {
        "frames.files": (1, 0),
        "frames.missing": (0, 1),
        "frames.bytes": (size, 0),
    }


def test_text_report_is_aligned():
    a, b = runs(
        compose(sample="Cu", exposure=0.1, extra_start={"operator": "alice"}),
        compose(sample="Fe-long-name", exposure=0.25),
    )
    text = str(a.diff(b))
    lines = text.splitlines()
    assert lines[0] == f"run A  {a.uid}  scan_id 7  scan  {_local(T0)}"
    assert lines[1].startswith(f"run B  {b.uid}  scan_id 7")
    assert lines[2] == "3 difference(s) (rtol=0, atol=0)"
    start = lines[lines.index("start metadata") + 1 : lines.index("start metadata") + 4]
    assert start == [
        "               A        B",
        "  sample.name  'Cu'     'Fe-long-name'",
        "  operator     'alice'  (absent)",
    ]
    conf = lines[lines.index("configuration") + 1 :]
    assert conf == [
        "                            A    B",
        "  primary.det.det_exposure  0.1  0.25",
    ]


def _local(t):
    import datetime

    return (
        datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
        .astimezone()
        .isoformat(sep=" ", timespec="seconds")
    )


def test_long_values_are_cut_in_text_whole_in_to_dict():
    long = "x" * 200
    a, b = runs(compose(extra_start={"note": long}), compose(extra_start={"note": "y"}))
    diff = a.diff(b)
    row = next(line for line in str(diff).splitlines() if line.startswith("  note"))
    assert "…" in row and len(row) < 140
    assert diff.to_dict()["sections"]["start"] == [{"key": "note", "a": long, "b": "y"}]


def test_html_table_escapes_everything():
    a, b = runs(
        compose(extra_start={"<b>key&": "<script>alert(1)</script>"}),
        compose(extra_start={"<b>key&": "a & b"}),
    )
    page = a.diff(b)._repr_html_()
    assert "<script>" not in page and "<b>" not in page and "key&<" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;key&amp;" in page
    assert "a &amp; b" in page
    assert page.count("<table>") == 1 and page.count("</table>") == 1
    assert ">start metadata</th>" in page
    assert "no differences" in a.diff(a)._repr_html_()


def test_to_dict_is_plain_json():
    a, b = runs(
        compose(extra_start={"dark": float("nan"), "big": 2**60 + 1, "arr": np.arange(3)}),
        compose(extra_start={"dark": float("inf"), "big": 2**60, "arr": [0, 1, 2]}),
    )
    out = a.diff(b).to_dict()
    text = json.dumps(out, allow_nan=False)  # strict JSON: no bare NaN
    assert json.loads(text) == out
    assert out["equal"] is False
    assert list(out["sections"]) == list(SECTIONS)
    assert out["sections"]["start"] == [
        {"key": "dark", "a": "NaN", "b": "Infinity"},
        # integers beyond 2**53 stay exact, and differ by one
        {"key": "big", "a": 2**60 + 1, "b": 2**60},
    ]


def test_nan_equals_nan():
    a, b = runs(
        compose(extra_start={"dark": float("nan")}, motor=(float("nan"), 1.5)),
        compose(extra_start={"dark": float("nan")}, motor=(float("nan"), 1.5)),
    )
    assert not a.diff(b)


def test_arrays_in_baseline_compared_with_tolerance():
    from intake_bluesky.core._model.diff import _Tolerance

    tol = _Tolerance(0.0, 1e-3)
    assert tol.same(np.array([1.0, np.nan]), np.array([1.0005, np.nan]))
    assert not tol.same(np.array([1.0, 2.0]), np.array([1.0, 2.1]))
    assert not tol.same(np.zeros((2, 3)), np.zeros((3, 2)))
    assert tol.same(np.array(["a", "b"]), np.array(["a", "b"]))
    assert not tol.same(True, 1)  # a bool is not the number 1
    assert not tol.same("1", 1)
    assert tol.same({"a": [1, (2, 3)]}, {"a": [1, [2, 3]]})
    assert not _Tolerance(0, 0).same(2**60 + 1, float(2**60 + 1))


def test_repr_counts_sections():
    a, b = runs(compose(sample="Cu"), compose(sample="Fe"))
    assert repr(a.diff(b)) == (
        f"<RunDiff A={a.uid[:8]!r} B={b.uid[:8]!r}: 1 changes (start 1, stop 0, "
        "configuration 0, baseline 0, streams 0, external 0, versions 0)>"
    )
    with pytest.raises(KeyError, match="sections are"):
        a.diff(b).section("nope")


def test_runs_of_several_descriptors_per_stream_count_all_rows():
    docs = compose(rows=2)
    # A second primary descriptor (configuration changed mid-run) with 2 events.
    desc = dict(next(d for n, d in docs if n == "descriptor" and d["name"] == "primary"))
    desc2 = {**desc, "uid": str(uuid.uuid4()), "time": T0 + 5}
    events = [
        (
            "event",
            {
                "descriptor": desc2["uid"],
                "uid": str(uuid.uuid4()),
                "time": T0 + 6 + i,
                "seq_num": 3 + i,
                "data": {"det": 9.0, "motor": 9.0},
                "timestamps": {"det": T0 + 6 + i, "motor": T0 + 6 + i},
                "filled": {},
            },
        )
        for i in range(2)
    ]
    longer = [*docs[:-1], ("descriptor", desc2), *events, docs[-1]]
    a, b = runs(compose(rows=2), longer)
    assert keyed(a.diff(b), "streams") == {"primary.rows": (2, 4)}


def test_a_resource_no_event_refers_to_is_listed_by_its_spec(tmp_path):
    docs = example_runs(tmp_path)[0]
    stray = {
        "uid": "stray-resource",
        "spec": "AD_HDF5",
        "root": str(tmp_path),
        "resource_path": "never-written.h5",
        "resource_kwargs": {},
        "path_semantics": "posix",
        "run_start": docs[0][1]["uid"],
    }
    with_stray = [*docs[:-1], ("resource", stray), docs[-1]]
    cat_a = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    cat_a.ingest(docs)
    cat_b = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    cat_b.ingest(with_stray)
    diff = cat_a[-1].diff(cat_b[-1])
    assert keyed(diff, "external") == {
        "(AD_HDF5).files": (MISSING, 0),
        "(AD_HDF5).missing": (MISSING, 1),
        "(AD_HDF5).bytes": (MISSING, 0),
    }
    assert diff.b["missing_files"] == [str(tmp_path / "never-written.h5")]
