"""Exports never leave their destination and never keep foreign files.

Uids and resource locations are data written by whoever made the documents:
a run file, a copied external file or ``catalog.yml`` never lands outside
DEST, only files inside the roots the documents name are copied, a copy
already in DEST is kept only when its bytes are equal, and an export moved
elsewhere opens with its copies. Needs intake-bluesky-jsonl (the writer):
runs in the ``all_together`` nox session.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import numpy as np
import pytest

jsonl = pytest.importorskip("intake_bluesky.jsonl")
event_model = pytest.importorskip("event_model")

from intake_bluesky.core import BlueskyInMemoryCatalog  # noqa: E402
from intake_bluesky.core.export import ExportError, export_runs, exported_root_map  # noqa: E402
from intake_bluesky.core.testing import (  # noqa: E402
    EXTERNAL_ROOT,
    UIDS,
    NpyStackReader,
    NumpySeqHandler,
    example_runs,
)

pytestmark = pytest.mark.usefixtures("private_index")

HANDLERS = {"NPY_SEQ": NumpySeqHandler, "application/x-npy": NpyStackReader}


def _files_under(path) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), path) for d, _, names in os.walk(path) for n in names
    }


def _run(uid, scan_id, *, resource=None, stream_resource=None):
    """A run with one scalar field, and an external ``img`` field when a
    resource (NPY_SEQ, two frames) or a stream resource (npy stack) is given."""
    data_keys = {"x": {"source": "s", "dtype": "number", "shape": [], "dtype_numpy": "<f8"}}
    external = resource or stream_resource
    if external is not None:
        data_keys["img"] = {
            "source": "s",
            "dtype": "array",
            "shape": [2, 2],
            "dtype_numpy": "<f8",
            "external": "STREAM:" if stream_resource else "FILESTORE:",
        }
    docs = [("start", {"uid": uid, "time": 1.0 + scan_id, "scan_id": scan_id})]
    desc = {
        "uid": f"desc-{scan_id}",
        "run_start": uid,
        "time": 1.0 + scan_id,
        "name": "primary",
        "data_keys": data_keys,
        "object_keys": {},
        "configuration": {},
        "hints": {},
    }
    if resource is not None:
        docs.append(("resource", {**resource, "run_start": uid}))
    if stream_resource is not None:
        docs.append(("stream_resource", {**stream_resource, "run_start": uid}))
    docs.append(("descriptor", desc))
    for i in range(2):
        data, timestamps = {"x": float(i)}, {"x": 1.0}
        if resource is not None:
            datum_id = f"{resource['uid']}/{i}"
            docs.append(
                (
                    "datum",
                    {
                        "resource": resource["uid"],
                        "datum_id": datum_id,
                        "datum_kwargs": {"index": i},
                    },
                )
            )
            data["img"], timestamps["img"] = datum_id, 1.0
        if stream_resource is None:
            docs.append(
                (
                    "event",
                    {
                        "uid": f"ev-{scan_id}-{i}",
                        "descriptor": desc["uid"],
                        "time": 2.0 + i,
                        "seq_num": i + 1,
                        "data": data,
                        "timestamps": timestamps,
                        "filled": {"img": False} if resource is not None else {},
                    },
                )
            )
    if stream_resource is not None:
        docs.append(
            (
                "stream_datum",
                {
                    "uid": f"{stream_resource['uid']}/0",
                    "stream_resource": stream_resource["uid"],
                    "descriptor": desc["uid"],
                    "indices": {"start": 0, "stop": 2},
                    "seq_nums": {"start": 1, "stop": 3},
                },
            )
        )
        docs.append(
            (
                "event_page",
                {
                    "uid": [f"ev-{scan_id}-0", f"ev-{scan_id}-1"],
                    "descriptor": desc["uid"],
                    "time": [2.0, 3.0],
                    "seq_num": [1, 2],
                    "data": {"x": [0.0, 1.0]},
                    "timestamps": {"x": [1.0, 1.0]},
                    "filled": {},
                },
            )
        )
    docs.append(
        (
            "stop",
            {"uid": f"stop-{scan_id}", "run_start": uid, "time": 9.0, "exit_status": "success"},
        )
    )
    return docs


def _npy_seq(folder, prefix="frames", value=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        np.save(folder / f"{prefix}_{i}.npy", np.full((2, 2), value + i))


def _resource(uid, root, path):
    return {
        "uid": uid,
        "spec": "NPY_SEQ",
        "root": str(root),
        "resource_path": path,
        "resource_kwargs": {},
        "path_semantics": "posix",
    }


def _catalog(*runs):
    cat = BlueskyInMemoryCatalog(handler_registry=HANDLERS)
    for docs in runs:
        cat.ingest(docs)
    return cat


# --- run files: uids are data, not paths ----------------------------------------
HOSTILE_UIDS = ["../../escaped", "a/b", "..", ".hidden", "%2E.%2F..%2Fescaped", "ok-1_2.3"]


def test_run_files_stay_in_dest_whatever_the_start_uid(tmp_path):
    absolute = str(tmp_path / "absolute-target")
    uids = [*HOSTILE_UIDS, absolute]
    cat = _catalog(*(_run(uid, i + 1) for i, uid in enumerate(uids)))
    dest = tmp_path / "deep" / "er" / "out"
    paths = export_runs(cat, dest)
    # Nothing outside DEST; one file per run; names escaped, injective.
    assert _files_under(tmp_path) == {f"deep/er/out/{os.path.basename(p)}" for p in paths}
    assert sorted(os.listdir(dest)) == sorted(
        [
            "%2E.%2F..%2Fescaped.jsonl",
            "a%2Fb.jsonl",
            "%2E..jsonl",
            "%2Ehidden.jsonl",
            "%252E.%252F..%252Fescaped.jsonl",
            "ok-1_2.3.jsonl",
            "%2F" + absolute[1:].replace("/", "%2F") + ".jsonl",
        ]
    )
    # The documents keep the uids exactly; every run reads back.
    back = jsonl.BlueskyJSONLCatalog(str(dest))
    assert sorted(back) == sorted(uids)
    assert back["../../escaped"].primary.read()["x"].values.tolist() == [0.0, 1.0]


def test_cli_export_of_hostile_uids_stays_in_dest(cli, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for i, uid in enumerate(["../../escaped", "a/b", str(tmp_path / "abs")]):
        with open(store / f"run{i}.jsonl", "w") as f:
            for name, doc in _run(uid, i + 1):
                f.write(json.dumps([name, doc]) + "\n")
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    out = cli.ok("export", store, "out", cwd=work)
    assert sorted(out.split()) == sorted(
        str(work / "out" / name)
        for name in (
            "%2E.%2F..%2Fescaped.jsonl",
            "a%2Fb.jsonl",
            "%2F" + "%2F".join(str(tmp_path / "abs").split("/")[1:]) + ".jsonl",
        )
    )
    assert _files_under(tmp_path) - {f"store/run{i}.jsonl" for i in range(3)} == {
        os.path.relpath(p, tmp_path) for p in out.split()
    }


def test_a_start_uid_that_is_not_a_string_is_refused_naming_the_run(tmp_path):
    cat = _catalog(_run("fine", 1), _run(5, 2))
    with pytest.raises(ExportError, match=r"Run 5 \(scan_id 2\): its uid is 5 \(int\)"):
        export_runs(cat, tmp_path / "out")
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_cli_int_start_uid_is_one_line_naming_the_run(cli, tmp_path):
    module = textwrap.dedent(
        f"""
        from intake_bluesky.core import BlueskyInMemoryCatalog
        import json

        class IntUid(BlueskyInMemoryCatalog):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.ingest([tuple(d) for d in json.loads({json.dumps(json.dumps(_run(5, 7)))})])
        """
    )
    (tmp_path / "int_uid_module.py").write_text(module)
    yml = tmp_path / "cat.yml"
    yml.write_text("sources:\n  runs:\n    driver: int_uid_module.IntUid\n")
    env = {"PYTHONPATH": str(tmp_path)}
    err = cli.fails("export", yml, tmp_path / "out", env=env)
    assert err.count("\n") == 1
    assert "Run 5 (scan_id 7): its uid is 5 (int), not a non-empty string" in err
    # The same run in a JSONL file.
    store = tmp_path / "store"
    store.mkdir()
    with open(store / "run.jsonl", "w") as f:
        for name, doc in _run(5, 7):
            f.write(json.dumps([name, doc]) + "\n")
    err = cli.fails("export", store, tmp_path / "out2")
    assert err.count("\n") == 1 and "5" in err and "int" in err
    assert not (tmp_path / "out2").exists() or os.listdir(tmp_path / "out2") == []


def test_cli_yaml_transform_that_is_not_a_function_is_one_line(cli, tmp_path):
    yml = tmp_path / "cat.yml"
    yml.write_text(
        "sources:\n"
        "  fixed:\n"
        "    driver: intake_bluesky.core.BlueskyInMemoryCatalog\n"
        "    args:\n"
        "      transforms: {start: mypackage.fix_start}\n"
    )
    for command in (["ls", yml], ["export", yml, tmp_path / "out"]):
        err = cli.fails(*command)
        assert err.count("\n") == 1
        assert "entry 'fixed': cannot be opened" in err
        assert "transforms['start'] must be callable" in err


# --- external files: folders, roots, contents -----------------------------------
def test_external_folder_of_a_hostile_resource_uid_stays_in_dest(tmp_path):
    data = tmp_path / "data"
    _npy_seq(data, value=5.0)
    run = _run("r1", 1, resource=_resource("../../../stolen", data, "frames"))
    dest = tmp_path / "deep" / "out"
    export_runs(_catalog(run), dest, copy_external=True)
    shutil.rmtree(data)
    assert _files_under(tmp_path) == {
        "deep/out/r1.jsonl",
        "deep/out/catalog.yml",
        "deep/out/external/%2E.%2F..%2F..%2Fstolen/frames_0.npy",
        "deep/out/external/%2E.%2F..%2F..%2Fstolen/frames_1.npy",
    }
    img = jsonl.BlueskyJSONLCatalog(str(dest), handler_registry=HANDLERS)["r1"].primary.read()
    assert img["img"].values[:, 0, 0].tolist() == [5.0, 6.0]


@pytest.mark.parametrize(
    ("root", "path", "said"),
    [
        ("data", "../private/frames", "'../private/frames' under its root"),
        ("data", "{private}/frames", "under its root"),
        ("/", "", "the whole of the file system"),
        ("data", "", "the whole of its root"),
        ("data", ".", "the whole of its root"),
    ],
)
def test_copy_external_refuses_what_leaves_the_root(tmp_path, root, path, said):
    private = tmp_path / "private"
    _npy_seq(private)
    (tmp_path / "data").mkdir()
    root = str(tmp_path / root) if root != "/" else root
    run = _run("r1", 1, resource=_resource("res-1", root, path.format(private=private)))
    dest = tmp_path / "out"
    with pytest.raises(ExportError) as info:
        export_runs(_catalog(run), dest, copy_external=True)
    message = str(info.value)
    assert "Run 'r1'" in message and "resource 'res-1'" in message and said in message
    assert "not copied" in message
    assert not dest.exists() or _files_under(dest) == set()


def test_copy_external_refuses_a_stream_resource_climbing_out(tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    np.save(private / "stack.npy", np.zeros((2, 2, 2)))
    uri = f"file://localhost{tmp_path}/data/../private/stack.npy"
    sr = {"uid": "sr-1", "mimetype": "application/x-npy", "uri": uri, "parameters": {}}
    sr["data_key"] = "img"
    dest = tmp_path / "out"
    with pytest.raises(ExportError) as info:
        export_runs(_catalog(_run("r1", 1, stream_resource=sr)), dest, copy_external=True)
    message = str(info.value)
    assert "Run 'r1'" in message and "stream_resource 'sr-1'" in message
    assert f"{tmp_path}/data/../private/stack.npy" in message and "not copied" in message
    assert not dest.exists() or _files_under(dest) == set()


def test_copy_external_from_root_slash_with_a_path_below_it(tmp_path):
    # Legacy documents store root '/' and the rest of the path as resource_path:
    # the files named below the root are copied (the root itself never is).
    data = tmp_path / "data"
    _npy_seq(data, value=3.0)
    run = _run("r1", 1, resource=_resource("res-1", "/", f"{str(data)[1:]}/frames"))
    dest = tmp_path / "out"
    export_runs(_catalog(run), dest, copy_external=True)
    assert _files_under(dest / "external") == {"res-1/frames_0.npy", "res-1/frames_1.npy"}


def test_copy_external_never_keeps_a_differing_copy(tmp_path):
    data = tmp_path / "data"
    _npy_seq(data, value=10.0)
    resource = _resource("res-1", data, "frames")
    first, second = _run("r1", 1, resource=resource), _run("r2", 2, resource=resource)
    dest = tmp_path / "out"
    export_runs(_catalog(first), dest, copy_external=True)
    copy = dest / "external" / "res-1" / "frames_0.npy"
    # A stale copy of the same size (another run's frame of the same shape).
    stale = np.full((2, 2), -1.0)
    np.save(copy, stale)
    assert copy.stat().st_size == (data / "frames_0.npy").stat().st_size
    with pytest.raises(ExportError) as info:
        export_runs(_catalog(second), dest, copy_external=True)
    message = str(info.value)
    assert str(copy) in message and str(data / "frames_0.npy") in message
    assert "differs" in message and "--overwrite" in message and "res-1" in message
    np.testing.assert_array_equal(np.load(copy), stale)  # left as it was
    assert not (dest / "r2.jsonl").exists()
    # Asked to overwrite: replaced by the source's bytes.
    export_runs(_catalog(second), dest, copy_external=True, existing="overwrite")
    assert (copy).read_bytes() == (data / "frames_0.npy").read_bytes()
    # The source changed since (same size): --overwrite copies it again.
    _npy_seq(data, value=20.0)
    export_runs(_catalog(first, second), dest, copy_external=True, existing="overwrite")
    cat = jsonl.BlueskyJSONLCatalog(str(dest), handler_registry=HANDLERS)
    assert cat["r1"].primary.read()["img"].values[:, 0, 0].tolist() == [20.0, 21.0]
    # Equal content is kept (not an error, not rewritten).
    before = copy.stat().st_mtime_ns
    export_runs(_catalog(first), dest, copy_external=True, existing="overwrite")
    assert copy.stat().st_mtime_ns == before


def test_cli_copy_external_differing_copy_is_an_error(cli, tmp_path):
    data = tmp_path / "data"
    _npy_seq(data, value=1.0)
    resource = _resource("res-1", data, "frames")
    store = tmp_path / "store"
    store.mkdir()
    for docs in (_run("r1", 1, resource=resource), _run("r2", 2, resource=resource)):
        with open(store / f"{docs[0][1]['uid']}.jsonl", "w") as f:
            for name, doc in docs:
                f.write(json.dumps([name, doc]) + "\n")
    dest = tmp_path / "out"
    cli.ok("export", store, dest, "r1", "--copy-external")
    copy = dest / "external" / "res-1" / "frames_1.npy"
    np.save(copy, np.full((2, 2), 99.0))
    err = cli.fails("export", store, dest, "r2", "--copy-external")
    assert f"{copy} already exists and differs" in err
    cli.ok("export", store, dest, "--copy-external", "--overwrite")
    assert copy.read_bytes() == (data / "frames_1.npy").read_bytes()


# --- a moved export opens where it lands ----------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "msgpack"])
def test_moved_export_opens_with_its_copies(tmp_path, fmt):
    if fmt == "msgpack":
        pytest.importorskip("intake_bluesky.msgpack")
    import intake

    external = tmp_path / "external-data"
    cat = BlueskyInMemoryCatalog(
        handler_registry=HANDLERS, root_map={EXTERNAL_ROOT: str(external)}
    )
    for docs in example_runs(external):
        cat.ingest(docs)
    want_img = cat[UIDS["scan"]].primary.read()["img"].values
    want_frames = cat[UIDS["stream"]].primary.read()["frames"].values
    dest = tmp_path / "first" / "out"
    export_runs(cat, dest, format=fmt, copy_external=True)
    moved = tmp_path / "laptop" / "runs"
    moved.parent.mkdir()
    shutil.move(str(dest), str(moved))
    shutil.rmtree(tmp_path / "first")
    shutil.rmtree(external)

    yml = intake.open_catalog(str(moved / "catalog.yml"))
    assert list(yml) == [fmt]
    opened = yml[fmt](handler_registry=HANDLERS)
    assert sorted(opened) == sorted(UIDS.values())
    got = opened[UIDS["scan"]].primary.read()["img"]
    np.testing.assert_array_equal(got.values, want_img)
    frames = opened[UIDS["stream"]].primary.read()["frames"]
    np.testing.assert_array_equal(frames.values, want_frames)
    assert frames.dtype == np.dtype("<i4")
    # The map the command line applies to the folder.
    assert exported_root_map(moved) == {str(dest / "external"): f"{moved}/external"}


def test_export_into_a_moved_export_keeps_both_roots(tmp_path):
    data = tmp_path / "data"
    _npy_seq(data, value=1.0)
    first = tmp_path / "a" / "out"
    export_runs(
        _catalog(_run("r1", 1, resource=_resource("res-1", data, "frames"))),
        first,
        copy_external=True,
    )
    moved = tmp_path / "b" / "out"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    _npy_seq(data, prefix="more", value=7.0)
    run2 = _run("r2", 2, resource=_resource("res-2", data, "more"))
    export_runs(_catalog(run2), moved, copy_external=True)
    shutil.rmtree(data)
    assert exported_root_map(moved) == {
        str(first / "external"): f"{moved}/external",
        str(moved / "external"): f"{moved}/external",
    }
    again = tmp_path / "c" / "out"
    again.parent.mkdir()
    shutil.move(str(moved), str(again))
    import intake

    opened = intake.open_catalog(str(again / "catalog.yml"))["jsonl"](handler_registry=HANDLERS)
    assert opened["r1"].primary.read()["img"].values[:, 0, 0].tolist() == [1.0, 2.0]
    assert opened["r2"].primary.read()["img"].values[:, 0, 0].tolist() == [7.0, 8.0]


def test_a_catalog_file_not_written_by_an_export_is_left_alone(tmp_path):
    data = tmp_path / "data"
    _npy_seq(data)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "catalog.yml").write_text("sources: {mine: {driver: csv}}\n")
    with pytest.warns(UserWarning, match="was not written by an intake-bluesky export"):
        export_runs(
            _catalog(_run("r1", 1, resource=_resource("res-1", data, "frames"))),
            dest,
            copy_external=True,
        )
    assert (dest / "catalog.yml").read_text() == "sources: {mine: {driver: csv}}\n"
    assert exported_root_map(dest) == {}


def test_cli_reads_a_moved_export_of_stream_data(cli, ophyd_async_store, tmp_path):
    from intake_bluesky.core._cli.stores import open_store

    h5, store, root = ophyd_async_store.h5, ophyd_async_store.store, ophyd_async_store.root
    source = jsonl.BlueskyJSONLCatalog(str(store), root_map={root: str(h5)})
    want = {k: source[k].primary.read() for k in (1, 2)}
    dest = tmp_path / "first" / "out"
    cli.ok("export", store, dest, "--copy-external", "--root-map", f"{root}={h5}")
    moved = tmp_path / "laptop" / "runs"
    moved.parent.mkdir()
    shutil.move(str(dest), str(moved))
    shutil.rmtree(tmp_path / "first")
    shutil.rmtree(h5)

    listed = cli.ok("ls", moved, "--json")
    assert [json.loads(line)["scan_id"] for line in listed.splitlines()][:2] == [1, 2]
    opened = open_store(str(moved))
    for k, ds in want.items():
        got = opened[k].primary.read()
        assert list(got.data_vars) == list(ds.data_vars)
        for key in ds.data_vars:
            np.testing.assert_array_equal(got[key].values, ds[key].values, err_msg=key)
            assert got[key].dtype == ds[key].dtype
