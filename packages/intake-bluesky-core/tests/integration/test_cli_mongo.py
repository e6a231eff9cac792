"""``intake-bluesky`` over MongoDB, both layouts, ``main(argv)`` in this
process against a real MongoDB wire-protocol server (SecantusDB, in-process).
Needs intake-bluesky-mongo, intake-bluesky-jsonl and SecantusDB (the mongo
package's test group): runs in the ``all_together`` nox session."""

from __future__ import annotations

import copy
import json
import os
import shutil

import numpy as np
import pytest

mongo = pytest.importorskip("intake_bluesky.mongo")
jsonl = pytest.importorskip("intake_bluesky.jsonl")
pymongo = pytest.importorskip("pymongo")
secantus = pytest.importorskip("secantus")

from intake_bluesky.core.testing import NumpySeqHandler, normalize_documents  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_index")

RUN0 = "1b3384cd-9ab9-46c0-8a0a-1b686127ce29"
RUN1 = "e263406e-e0d7-4e17-9c66-1e01c44c4b14"
SAMPLE_ROOT = "/data/bluesky-samples/external_npy"
HANDLERS = {"NPY_SEQ": NumpySeqHandler}


@pytest.fixture(scope="module")
def server():
    with secantus.SecantusDBServer(storage_path=":memory:") as srv:
        yield srv.uri.rstrip("/")


@pytest.fixture
def samples(repo):
    base = repo / "packages" / "intake-bluesky-mongo" / "tests" / "samples"
    if not base.is_dir():
        pytest.skip("the mongo package's sample dumps are not in this checkout")
    return base


def _load(client, name: str, dump_file) -> str:
    """A fresh database holding a suitcase-mongo sample dump; its name."""
    db = client[name]
    for collection, content in json.loads(dump_file.read_text()).items():
        if content["docs"]:
            db[collection].insert_many([copy.deepcopy(d) for d in content["docs"]])
    return name


@pytest.fixture
def stores(server, samples, request):
    """URIs of the sample runs in the normalized (mds + assets) and embedded layouts."""
    client = pymongo.MongoClient(server)
    tag = request.node.name[-12:].replace("[", "_").replace("]", "_")
    names = {
        "mds": _load(client, f"cli_{tag}_mds", samples / "mds.json"),
        "assets": _load(client, f"cli_{tag}_assets", samples / "assets.json"),
        "embedded": _load(client, f"cli_{tag}_embedded", samples / "embedded.json"),
    }
    yield {key: f"{server}/{name}" for key, name in names.items()}
    for name in names.values():
        client.drop_database(name)
    client.close()


def _emitted(samples, i):
    return json.loads((samples / f"run{i}_documents.json").read_text())


def _source(stores, layout, **common):
    if layout == "normalized":
        return mongo.BlueskyMongoCatalog(stores["mds"], stores["assets"], **common)
    return mongo.BlueskyMongoEmbeddedCatalog(stores["embedded"], **common)


def _args(stores, layout):
    if layout == "normalized":
        return [stores["mds"], "--assets", stores["assets"]]
    return [stores["embedded"]]


def _lines(path):
    with open(path) as f:
        return [tuple(json.loads(line)) for line in f]


def _assert_same_streams(want_run, got_run):
    assert list(got_run) == list(want_run)
    for stream in want_run:
        want, got = want_run[stream].read(), got_run[stream].read()
        assert list(got.data_vars) == list(want.data_vars)
        np.testing.assert_array_equal(got["time"].values, want["time"].values)
        for key in want.data_vars:
            np.testing.assert_array_equal(got[key].values, want[key].values, err_msg=key)
            assert got[key].dtype == want[key].dtype, (stream, key)


@pytest.mark.parametrize("layout", ["normalized", "embedded"])
def test_ls_and_show_detect_the_layout(cli, stores, layout):
    out = cli.ok("ls", *_args(stores, layout), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["uid"] for r in rows] == [RUN0, RUN1]
    assert rows[0]["num_events"] == {"baseline": 2, "primary": 3}
    info = json.loads(cli.ok("show", *_args(stores, layout), "-1", "--json"))
    assert info["start"]["uid"] == RUN1 and info["streams"]["primary"]["events"] == 2


@pytest.mark.parametrize("layout", ["normalized", "embedded"])
@pytest.mark.parametrize("copy_external", [False, True], ids=["plain", "copy-external"])
def test_export_mongo_to_jsonl_reads_back_equal(
    cli, stores, samples, tmp_path, layout, copy_external
):
    external = tmp_path / "npy"
    shutil.copytree(samples / "external_npy", external)
    root_map = {SAMPLE_ROOT: str(external)}
    dest = tmp_path / "out"
    extra = ["--copy-external", "--root-map", f"{SAMPLE_ROOT}={external}"] if copy_external else []
    out = cli.ok("export", *_args(stores, layout), dest, *extra)
    assert sorted(out.split()) == sorted(str(dest / f"{u}.jsonl") for u in (RUN0, RUN1))

    source = _source(stores, layout, handler_registry=HANDLERS, root_map=root_map)
    for i, uid in enumerate((RUN0, RUN1)):
        lines = _lines(dest / f"{uid}.jsonl")
        expected = list(source[uid].canonical(fill="no"))
        assert [n for n, _ in lines] == [n for n, _ in expected]
        got, want = normalize_documents(lines), normalize_documents(expected)
        if copy_external and uid == RUN0:
            (res,) = got["resources"].values()
            assert res["root"] == str(dest / "external" / res["uid"])
            assert sorted(os.listdir(res["root"])) == [f"0d9c43_{k}.npy" for k in range(3)]
            got["resources"] = want["resources"] = None
        assert got == want
        # ... and what the RunEngine emitted (the resource aside when rewritten).
        emitted = normalize_documents(_emitted(samples, i))
        if copy_external and uid == RUN0:
            emitted["resources"] = None
        assert got == emitted

    if copy_external:
        shutil.rmtree(external)  # the export holds its own copies
        exported = jsonl.BlueskyJSONLCatalog(str(dest), handler_registry=HANDLERS)
        want_img = np.stack(
            [np.load(samples / "external_npy" / f"0d9c43_{k}.npy") for k in range(3)]
        )
        np.testing.assert_array_equal(exported[RUN0].primary.read()["img"].values, want_img)
    else:
        exported = jsonl.BlueskyJSONLCatalog(
            str(dest), handler_registry=HANDLERS, root_map=root_map
        )
        for uid in (RUN0, RUN1):
            _assert_same_streams(source[uid], exported[uid])


def test_layout_errors_and_credentials(cli, server, stores):
    client = pymongo.MongoClient(server)
    client["cli_empty_probe"]["other"].insert_one({"x": 1})
    try:
        err = cli.fails("ls", f"{server}/cli_empty_probe")
        assert "no runs in either layout" in err and "--layout" in err
        # Given explicitly, an empty database is just empty.
        out = cli.ok("ls", f"{server}/cli_empty_probe", "--layout", "embedded", "--json")
        assert out == ""
    finally:
        client.drop_database("cli_empty_probe")
        client.close()
    assert "normalized layout only" in cli.fails(
        "ls", stores["embedded"], "--layout", "embedded", "--assets", stores["assets"]
    )
    # A server that does not answer: a clear error, never the password.
    err = cli.fails("ls", "mongodb://alice:s3cret-pw@127.0.0.1:1/mds?serverSelectionTimeoutMS=300")
    assert "s3cret-pw" not in err
    assert "127.0.0.1:1" in err
