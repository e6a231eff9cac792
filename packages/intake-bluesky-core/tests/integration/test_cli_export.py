"""``intake-bluesky export`` (and ls/show) over real file backends, ``main(argv)``
in this process. Needs intake-bluesky-jsonl and intake-bluesky-msgpack: runs in
the ``all_together`` nox session."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

jsonl = pytest.importorskip("intake_bluesky.jsonl")
msgpack_backend = pytest.importorskip("intake_bluesky.msgpack")
msgpack = pytest.importorskip("msgpack")
msgpack_numpy = pytest.importorskip("msgpack_numpy")
event_model = pytest.importorskip("event_model")

from intake_bluesky.core.testing import (  # noqa: E402
    EXTERNAL_ROOT,
    UIDS,
    NpyStackReader,
    NumpySeqHandler,
    example_runs,
    normalize_documents,
)

pytestmark = pytest.mark.usefixtures("private_index")

RUN0 = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1 = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
SAMPLE_ROOT = "/data/bluesky-samples/external_npy"
HANDLERS = {"NPY_SEQ": NumpySeqHandler, "application/x-npy": NpyStackReader}


@pytest.fixture
def samples(repo):
    """Copies of the real suitcase-jsonl / suitcase-msgpack sample files."""
    base_msgpack = repo / "packages" / "intake-bluesky-msgpack" / "tests" / "data"
    base_jsonl = repo / "packages" / "intake-bluesky-jsonl" / "tests" / "samples"
    if not base_msgpack.is_dir() or not base_jsonl.is_dir():
        pytest.skip("sample files of the backends' tests are not in this checkout")
    return {
        "msgpack": base_msgpack / "msgpack",
        "jsonl": base_jsonl / "jsonl",
        "external": base_msgpack / "external_npy",
        "docs": base_msgpack / "docs",
    }


def _suitcase_msgpack(path, documents):
    """A run file exactly as suitcase-msgpack writes it (ground truth writer)."""
    with open(path, "wb") as f:
        for name, doc in documents:
            if name == "event":
                name, doc = "event_page", event_model.pack_event_page(doc)
            elif name == "datum":
                name, doc = "datum_page", event_model.pack_datum_page(doc)
            f.write(msgpack.packb([name, doc], default=msgpack_numpy.encode))


def _read_jsonl_lines(path):
    """What a plain JSONL reader (suitcase-jsonl's format) sees."""
    with open(path) as f:
        return [tuple(json.loads(line)) for line in f]


def _read_msgpack_records(path):
    """What a plain msgpack reader with msgpack-numpy sees."""
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(
            f, raw=False, object_hook=msgpack_numpy.decode, max_buffer_size=0
        )
        return [tuple(record) for record in unpacker]


def _open(fmt, path, **common):
    cls = jsonl.BlueskyJSONLCatalog if fmt == "jsonl" else msgpack_backend.BlueskyMsgpackCatalog
    common.setdefault("handler_registry", HANDLERS)
    return cls(str(path), **common)


def _assert_streams_equal(expected_run, actual_run, *, dtypes=True):
    assert list(actual_run) == list(expected_run)
    for stream in expected_run:
        want = expected_run[stream].read()
        got = actual_run[stream].read()
        assert list(got.data_vars) == list(want.data_vars), stream
        np.testing.assert_array_equal(got["time"].values, want["time"].values)
        for key in want.data_vars:
            np.testing.assert_array_equal(got[key].values, want[key].values, err_msg=key)
            if dtypes:
                assert got[key].dtype == want[key].dtype, (stream, key)
            assert got[key].dims == want[key].dims, (stream, key)


# --- msgpack (suitcase-msgpack's files) -> JSONL ------------------------------
def test_export_msgpack_samples_to_jsonl(cli, samples, tmp_path):
    dest = tmp_path / "out"
    out = cli.ok("export", samples["msgpack"], dest)
    written = sorted(out.split())
    assert written == [str(dest / f"{RUN0}.jsonl"), str(dest / f"{RUN1}.jsonl")]
    assert sorted(os.listdir(dest)) == [f"{RUN0}.jsonl", f"{RUN1}.jsonl"]  # nothing else

    source = _open("msgpack", samples["msgpack"], root_map={SAMPLE_ROOT: str(samples["external"])})
    for uid, emitted_file in ((RUN0, "run0_documents.json"), (RUN1, "run1_documents.json")):
        lines = _read_jsonl_lines(dest / f"{uid}.jsonl")
        expected = list(source[uid].canonical(fill="no"))
        # Document for document, in the canonical order of the source.
        assert [n for n, _ in lines] == [n for n, _ in expected]
        assert normalize_documents(lines) == normalize_documents(expected)
        # ... and equal to what the RunEngine emitted.
        emitted = json.loads((samples["docs"] / emitted_file).read_text())
        assert normalize_documents(lines) == normalize_documents(emitted)

    # Read back by the JSONL backend exactly as the file suitcase-jsonl wrote
    # for the same runs reads (values and dtypes), and with the msgpack values.
    exported = _open("jsonl", dest, root_map={SAMPLE_ROOT: str(samples["external"])})
    by_suitcase = _open(
        "jsonl", samples["jsonl"], root_map={SAMPLE_ROOT: str(samples["external"])}
    )
    exported_img = exported[RUN0].primary.read()["img"]
    for uid in (RUN0, RUN1):
        _assert_streams_equal(by_suitcase[uid], exported[uid])
        _assert_streams_equal(source[uid], exported[uid], dtypes=False)
    assert exported_img.shape == (3, 6, 3)  # external frames filled from the sample files
    assert exported_img.dtype == np.float64


def test_export_copy_external_is_self_contained(cli, samples, tmp_path):
    # External files in a place of their own, deleted after the export.
    external = tmp_path / "beamline" / "npy"
    shutil.copytree(samples["external"], external)
    dest = tmp_path / "out"
    cli.ok(
        "export",
        samples["msgpack"],
        dest,
        RUN0,
        "--copy-external",
        "--root-map",
        f"{SAMPLE_ROOT}={external}",
    )
    expected = _open("msgpack", samples["msgpack"], root_map={SAMPLE_ROOT: str(external)})
    want = expected[RUN0].primary.read()["img"].values
    shutil.rmtree(external)

    lines = _read_jsonl_lines(dest / f"{RUN0}.jsonl")
    (resource,) = [doc for name, doc in lines if name == "resource"]
    assert resource["root"] == str(dest / "external" / resource["uid"])
    assert resource["resource_path"] == "0d9c43"
    assert sorted(os.listdir(resource["root"])) == [f"0d9c43_{i}.npy" for i in range(3)]
    # Every other document unchanged.
    source_docs = list(expected[RUN0].canonical(fill="no"))
    rest = [(n, d) for n, d in lines if n != "resource"]
    assert normalize_documents(rest) == normalize_documents(
        [(n, d) for n, d in source_docs if n != "resource"]
    )
    # Readable with no root_map at all: the export holds its data.
    exported = _open("jsonl", dest, handler_registry=HANDLERS)
    got = exported[RUN0].primary.read()["img"].values
    np.testing.assert_array_equal(got, want)
    filled = [d for n, d in exported[RUN0].canonical() if n in ("event", "event_page")]
    assert any(d.get("filled", {}).get("img") for d in filled)


def test_missing_external_files_fail_cleanly(cli, samples, tmp_path):
    dest = tmp_path / "out"
    err = cli.fails("export", samples["msgpack"], dest, "--copy-external")
    assert SAMPLE_ROOT in err and "--root-map" in err
    # No run file that looks complete, no temporary left behind.
    leftovers = [p for p in dest.rglob("*") if p.is_file()] if dest.exists() else []
    assert leftovers == []


# --- example runs: every kind of data, both output formats -------------------
@pytest.fixture
def example_store(tmp_path):
    """The kit's example runs as suitcase-msgpack files, external data beside."""
    external = tmp_path / "external"
    store = tmp_path / "store"
    store.mkdir()
    runs = example_runs(external)
    for docs in runs:
        _suitcase_msgpack(store / f"{docs[0][1]['uid']}.msgpack", docs)
    return store, external


@pytest.mark.parametrize("fmt", ["jsonl", "msgpack"])
def test_export_examples_round_trip(cli, example_store, tmp_path, fmt):
    store, external = example_store
    dest = tmp_path / "out"
    cli.ok(
        "export",
        store,
        dest,
        "--format",
        fmt,
        "--copy-external",
        "--root-map",
        f"{EXTERNAL_ROOT}={external}",
    )
    shutil.rmtree(external)  # the export must not need it
    names = sorted(p.name for p in dest.iterdir() if p.is_file())
    # The run files, and the intake catalog that opens them where they are.
    assert names == sorted([*(f"{uid}.{fmt}" for uid in UIDS.values()), "catalog.yml"])

    # (The source's external files are gone: its external fields are not read.)
    source = _open("msgpack", store)
    exported = _open(fmt, dest)
    assert list(exported) == list(source)
    read = _read_jsonl_lines if fmt == "jsonl" else _read_msgpack_records
    for uid in UIDS.values():
        documents = read(dest / f"{uid}.{fmt}")
        expected = list(source[uid].canonical(fill="no"))
        assert [
            n for n, _ in documents if n not in ("event", "event_page", "datum", "datum_page")
        ] == [n for n, _ in expected if n not in ("event", "event_page", "datum", "datum_page")]
        if fmt == "msgpack":
            # suitcase-msgpack's layout: pages only.
            assert not {"event", "datum"} & {n for n, _ in documents}
        got, want = normalize_documents(documents), normalize_documents(expected)
        for key in ("resources", "stream_resources"):
            for res_uid, res in got[key].items():
                assert str(dest / "external" / res_uid) in json.dumps(res)
            got[key] = want[key] = None
        assert got == want, uid
    # Values and dtypes: external data from the copies equals the originals.
    scan = exported[UIDS["scan"]]
    primary = scan.primary.read()
    assert primary["img"].dtype == np.dtype("<u2")
    assert primary["ext"].shape == (6, 3, 2)
    assert list(primary["det"].values) == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
    frames = exported[UIDS["stream"]].primary.read()["frames"]
    np.testing.assert_array_equal(frames.values, np.arange(24, dtype="<i4").reshape(4, 2, 3))
    assert frames.dtype == np.dtype("<i4")
    # Fields not external: equal to the source, dtypes included.
    for uid in (UIDS["count"], UIDS["failed"], UIDS["live"]):
        _assert_streams_equal(source[uid], exported[uid])
    assert exported[UIDS["live"]].metadata["stop"] is None


def test_export_jsonl_to_msgpack_keeps_values(cli, samples, tmp_path):
    dest = tmp_path / "out"
    cli.ok("export", samples["jsonl"], dest, "--format", "msgpack", "--search", '{"scan_id": 2}')
    assert os.listdir(dest) == [f"{RUN1}.msgpack"]
    records = _read_msgpack_records(dest / f"{RUN1}.msgpack")
    source = _open("jsonl", samples["jsonl"])
    assert normalize_documents(records) == normalize_documents(source[RUN1].canonical(fill="no"))
    assert {n for n, _ in records} == {"start", "descriptor", "event_page", "stop"}
    _assert_streams_equal(source[RUN1], _open("msgpack", dest)[RUN1])


# --- existing files, selection ------------------------------------------------
def test_existing_run_files_are_never_overwritten_silently(cli, samples, tmp_path):
    dest = tmp_path / "out"
    cli.ok("export", samples["msgpack"], dest, RUN1)
    target = dest / f"{RUN1}.jsonl"
    target.write_text("precious\n")
    err = cli.fails("export", samples["msgpack"], dest)
    assert str(target) in err and "Nothing was written" in err
    assert target.read_text() == "precious\n"
    assert not (dest / f"{RUN0}.jsonl").exists()
    out = cli.ok("export", samples["msgpack"], dest, "--skip-existing")
    assert out.split() == [str(dest / f"{RUN0}.jsonl")]
    assert target.read_text() == "precious\n"
    out = cli.ok("export", samples["msgpack"], dest, "--overwrite", "2")
    assert out.split() == [str(target)]
    assert _read_jsonl_lines(target)[0][1]["uid"] == RUN1
    assert "not allowed with" in cli.fails(
        "export", samples["msgpack"], dest, "--overwrite", "--skip-existing", code=2
    )


def test_export_selection_and_errors(cli, samples, tmp_path):
    dest = tmp_path / "out"
    # RUN arguments after options; -N, partial uid; duplicates exported once.
    out = cli.ok("export", samples["msgpack"], dest, "--format", "jsonl", "-1", "e2634", "1")
    assert sorted(out.split()) == sorted(
        [str(dest / f"{RUN1}.jsonl"), str(dest / f"{RUN0}.jsonl")]
    )
    assert "No runs match" in cli.fails(
        "export", samples["msgpack"], tmp_path / "none", "--search", '{"scan_id": 99}'
    )
    assert "No run with uid" in cli.fails("export", samples["msgpack"], tmp_path / "x", "beef")
    assert "No run writer 'csv'" in cli.fails(
        "export", samples["msgpack"], tmp_path / "y", "--format", "csv"
    )


def test_ls_and_show_detect_the_backend(cli, samples, tmp_path):
    for fmt in ("msgpack", "jsonl"):
        out = cli.ok("ls", samples[fmt])
        assert [line.split()[0] for line in out.splitlines()[1:]] == [RUN0[:8], RUN1[:8]]
        assert "baseline:2 primary:3" in out
    # A glob, and --backend / --format naming it
    out = cli.ok("ls", f"{samples['jsonl']}/*.jsonl", "--format", "jsonl", "--json")
    assert [json.loads(line)["uid"] for line in out.splitlines()] == [RUN0, RUN1]
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(samples["jsonl"] / f"{RUN0}.jsonl", both)
    shutil.copy(samples["msgpack"] / f"{RUN1}.msgpack", both)
    assert "several formats" in cli.fails("ls", both)
    out = cli.ok("ls", both, "--backend", "msgpack", "--json")
    assert [json.loads(line)["uid"] for line in out.splitlines()] == [RUN1]
    info = json.loads(cli.ok("show", samples["msgpack"], RUN0[:6], "--json"))
    primary = info["streams"]["primary"]
    assert primary["events"] == 3
    assert primary["fields"]["direct_img"]["shape"] == [4, 5]
    assert primary["fields"]["img"]["external"] == "FILESTORE"
    assert info["streams"]["baseline"]["events"] == 2


def test_progress_counts_every_event_and_stays_off_the_pipe(cli, samples, tmp_path, monkeypatch):
    # Through a pipe (not a terminal): nothing but the run files' paths.
    result = cli("export", samples["msgpack"], tmp_path / "quiet")
    assert result.returncode == 0 and result.stderr == ""
    assert len(result.stdout.split()) == 2
    # The bar itself (a recorder in its place: a real bar shows on a terminal
    # only after its delay): its total is the stop documents' event count,
    # and every event written advances it.
    from intake_bluesky.core._cli import main
    from intake_bluesky.core._cli import progress as progress_module

    seen = {}

    class Recorder:
        def __init__(self, total=None, desc="", unit="it"):
            seen.update(total=total, desc=desc, unit=unit, updates=0)

        def update(self, n=1):
            seen["updates"] += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(progress_module, "ProgressCounter", Recorder)
    assert main(["export", str(samples["msgpack"]), str(tmp_path / "bar")]) == 0
    assert seen == {"total": 9, "desc": "Exporting 2 runs", "unit": "event", "updates": 9}
    seen.clear()
    args = ["export", str(samples["msgpack"]), str(tmp_path / "q"), "--quiet"]
    assert main(args) == 0
    assert seen == {}


# --- external files: sharing and name collisions -------------------------------
def _suitcase_jsonl(path, documents):
    with open(path, "w") as f:
        for name, doc in documents:
            f.write(json.dumps([name, doc]) + "\n")


def _npy_seq_run(scan_id, root, resource=None, value=0.0):
    """A run whose ``img`` frames are NPY_SEQ files ``<root>/frames_<i>.npy``."""
    bundle = event_model.compose_run(metadata={"scan_id": scan_id, "plan_name": "count"})
    docs = [("start", bundle.start_doc)]
    if resource is None:
        resource = bundle.compose_resource(
            spec="NPY_SEQ", root=str(root), resource_path="frames", resource_kwargs={}
        ).resource_doc
        for i in range(2):
            np.save(root / f"frames_{i}.npy", np.full((2, 2), value + i))
    docs.append(("resource", resource))
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "img": {
                "source": "sim",
                "dtype": "array",
                "shape": [2, 2],
                "dtype_numpy": "<f8",
                "external": "FILESTORE:",
            }
        },
    )
    docs.append(("descriptor", desc.descriptor_doc))
    for i in range(2):
        datum_id = f"{resource['uid']}/{i}"
        docs.append(
            (
                "datum",
                {"resource": resource["uid"], "datum_id": datum_id, "datum_kwargs": {"index": i}},
            )
        )
        docs.append(
            (
                "event",
                desc.compose_event(data={"img": datum_id}, timestamps={"img": 0.0}, seq_num=i + 1),
            )
        )
    docs.append(("stop", bundle.compose_stop()))
    return docs, resource


def test_copy_external_shared_resources_and_same_names(cli, tmp_path):
    a, b = tmp_path / "beamline_a", tmp_path / "beamline_b"
    a.mkdir()
    b.mkdir()
    run_a, res_a = _npy_seq_run(1, a, value=10.0)
    run_b, _ = _npy_seq_run(2, b, value=20.0)  # same file names, other folder
    run_c, _ = _npy_seq_run(3, a, resource=res_a)  # the very resource of run 1
    store = tmp_path / "store"
    store.mkdir()
    for docs in (run_a, run_b, run_c):
        _suitcase_jsonl(store / f"{docs[0][1]['uid']}.jsonl", docs)
    dest = tmp_path / "out"
    cli.ok("export", store, dest, "--copy-external", "--format", "msgpack")
    shutil.rmtree(a)
    shutil.rmtree(b)
    folders = sorted(os.listdir(dest / "external"))
    assert len(folders) == 2  # resource of runs 1 and 3 copied once
    for folder in folders:
        assert sorted(os.listdir(dest / "external" / folder)) == ["frames_0.npy", "frames_1.npy"]
    cat = _open("msgpack", dest)
    frames = {k: cat[k].primary.read()["img"].values[:, 0, 0].tolist() for k in (1, 2, 3)}
    assert frames == {1: [10.0, 11.0], 2: [20.0, 21.0], 3: [10.0, 11.0]}


def test_copy_external_stream_data_hdf5(cli, ophyd_async_store, tmp_path):
    base, h5, store, root = (
        ophyd_async_store.base,
        ophyd_async_store.h5,
        ophyd_async_store.store,
        ophyd_async_store.root,
    )
    source = _open("jsonl", store, root_map={root: str(h5)})
    want = {k: source[k].primary.read() for k in (1, 2, 3, 4)}
    dest = tmp_path / "out"
    cli.ok("export", store, dest, "--copy-external", "--root-map", f"{root}={h5}")
    shutil.rmtree(h5)
    copies = sorted(p.name for p in (dest / "external").rglob("*.h5"))
    # Each detector file once, though two stream_resources (image and sum) use it.
    assert copies == sorted(p.name for p in (base / "h5").glob("*.h5"))
    exported = _open("jsonl", dest)
    for k, ds in want.items():
        got = exported[k].primary.read()
        assert list(got.data_vars) == list(ds.data_vars)
        for key in ds.data_vars:
            np.testing.assert_array_equal(got[key].values, ds[key].values, err_msg=key)
            assert got[key].dtype == ds[key].dtype
    uris = [d["uri"] for n, d in exported[1].canonical(fill="no") if n == "stream_resource"]
    assert len(uris) == 2 and len(set(uris)) == 1
    assert uris[0].startswith(f"file://localhost{dest}/external/")


def test_ls_that_finds_no_runs_but_warns_fails(cli, samples, tmp_path):
    parent = tmp_path / "parent"
    for name, uid in (("a", RUN0), ("b", RUN1)):
        (parent / name).mkdir(parents=True)
        shutil.copy(samples["jsonl"] / f"{uid}.jsonl", parent / name)
    for extra in ([], ["--json"]):
        result = cli("ls", parent, *extra)
        assert result.returncode == 1, result
        assert "Traceback" not in result.stderr
        assert "its subfolders a, b do: open those folders" in result.stderr
    # Another format's files given to a backend: the warning, and a failure.
    result = cli("ls", samples["msgpack"], "--backend", "jsonl")
    assert result.returncode == 1
    assert "open it with the catalog of that format instead" in result.stderr
    # No runs and nothing to say: an empty listing is a success.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("ls", empty, "--backend", "jsonl")
    assert (result.returncode, result.stderr) == (0, "")
