"""BlueskyTiledCatalog over real HTTP: a tiled server (``tiled serve`` on
localhost, an api key required) filled by TiledWriter from a RunEngine over HTTP; the
catalog opened by URI pickles, keeps the key out of every repr, and the CLI
reads the server by URI."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.tiled import BlueskyTiledCatalog, TiledConnectionError

pytest.importorskip("uvicorn")

API_KEY = "s3cretkey0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiled server over HTTP (``tiled serve catalog`` in a process of its
    own: tiled's server settings are process-wide) holding two runs a
    RunEngine wrote through it."""
    import bluesky.plans as bp
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from ophyd.sim import det, motor
    from tiled.client import from_uri as client_from_uri

    base = tmp_path_factory.mktemp("tiled-http")
    port = _free_port()
    command = [
        sys.executable, "-m", "tiled", "serve", "catalog", f"{base}/catalog.db", "--init",
        "-w", str(base / "data"), "-w", f"duckdb:///{base}/tables.duckdb",
        "--api-key", API_KEY, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    uri = f"http://127.0.0.1:{port}/api/v1/metadata/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"tiled serve did not start: {process.stderr.read()!r}"
                ) from None
            time.sleep(0.1)
    try:
        client = client_from_uri(uri, api_key=API_KEY)
        documents: list = []
        RE = RunEngine({}, call_returns_result=False)
        RE.subscribe(TiledWriter(client))
        RE.subscribe(lambda name, doc: documents.append((name, json.loads(json.dumps(doc)))))
        uids = [
            RE(bp.scan([det], motor, -1, 1, 9), sample="Au")[0],
            RE(bp.count([det], num=4), sample="Cu")[0],
        ]
        expected = BlueskyInMemoryCatalog()
        for name, doc in documents:
            expected(name, doc)
        yield uri, uids, expected
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_reads_over_http_with_an_api_key(server):
    uri, uids, expected = server
    cat = BlueskyTiledCatalog(uri, api_key=API_KEY)
    assert list(cat) == uids
    assert list(cat.search({"sample": "Cu"})) == [uids[1]]
    for uid in uids:
        ours, want = cat[uid].primary.read(), expected[uid].primary.read()
        xr.testing.assert_equal(ours, want)
        assert ours["det"].dtype == want["det"].dtype == np.float64
    assert cat[-1].uid == uids[1]


def test_the_key_never_shows(server):
    uri, uids, _ = server
    cat = BlueskyTiledCatalog(uri, api_key=API_KEY)
    shown = [repr(cat), str(cat.describe()), cat.yaml(), repr(cat[uids[0]])]
    assert not [text for text in shown if API_KEY in text]
    assert "127.0.0.1" in cat.yaml()


def test_a_wrong_key_is_a_clear_error_without_the_key(server):
    uri, _, _ = server
    with pytest.raises(TiledConnectionError) as info:
        len(BlueskyTiledCatalog(uri, api_key="wrongkey000"))
    assert "api key" in str(info.value) and "wrongkey000" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


def test_pickles_by_uri_for_other_processes(server):
    uri, uids, expected = server
    cat = BlueskyTiledCatalog(uri, api_key=API_KEY)
    clone = pickle.loads(pickle.dumps(cat))
    assert list(clone) == uids
    lazy = pickle.loads(pickle.dumps(cat[uids[0]].primary.to_dask()))
    xr.testing.assert_equal(lazy.compute(), expected[uids[0]].primary.read())


def test_an_in_process_client_refuses_to_pickle_and_says_why(tiled_container):
    cat = BlueskyTiledCatalog(tiled_container)
    with pytest.raises(TypeError, match="by URI"):
        pickle.dumps(cat)


def test_cli_lists_and_shows_runs_of_a_tiled_uri(server, monkeypatch, capsys):
    from intake_bluesky.core._cli.main import main

    uri, uids, _ = server
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    assert main(["ls", uri, "--json"]) in (0, None)
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [row["uid"] for row in listed] == uids
    assert main(["show", uri, uids[1]]) in (0, None)
    shown = capsys.readouterr().out
    assert uids[1] in shown and "count" in shown


def test_a_fresh_catalog_by_uri_makes_few_requests(server, monkeypatch):
    """Every request a catalog opened by URI sends to read a stream: the
    server's info, the container, the lookup, one listing of the run's
    streams and their children, the event table (and no request asking
    whether the server redirects to https before the client's own)."""
    import httpx

    uri, uids, expected = server
    sent: list[str] = []
    send = httpx.Client.send

    def counting(self, request, **kwargs):
        sent.append(f"{request.method} {request.url.path}")
        return send(self, request, **kwargs)

    monkeypatch.setattr(httpx.Client, "send", counting)
    for key, uid in ((uids[0], uids[0]), (-1, uids[1])):
        sent.clear()
        cat = BlueskyTiledCatalog(uri, api_key=API_KEY, data_access="direct")
        xr.testing.assert_equal(cat[key].primary.read(), expected[uid].primary.read())
        assert len(sent) == 5, sent
        assert sum("/search-deep/" in path for path in sent) == 1, sent
