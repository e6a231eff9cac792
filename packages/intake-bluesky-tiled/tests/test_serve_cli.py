"""``intake-bluesky serve``: its key rules, its install hints, its workers,
and a real server over HTTP read by bluesky-tiled-plugins' client."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("tiled.server")
pytest.importorskip("uvicorn")

import httpx
from tiled.client import Context, from_context, from_uri

from intake_bluesky.core._cli import serve
from intake_bluesky.core._cli.errors import CLIError
from intake_bluesky.jsonl import BlueskyJSONLCatalog


def _helpers():
    name = "intake_bluesky_tiled_tests_serving"
    if name not in sys.modules:
        path = Path(__file__).with_name("_serving.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


h = _helpers()
#: The command line's module (the package exports its ``main`` function
#: under the same name).
cli = importlib.import_module("intake_bluesky.core._cli.main")


@pytest.fixture
def store(tmp_path) -> Path:
    """A JSONL folder of the recorded ophyd-async runs (their HDF5 files
    beside it): what a CLI serves needs no handler passed in code."""
    documents = h.ophyd_async_documents(tmp_path / "h5")
    folder = tmp_path / "runs"
    folder.mkdir()
    for docs in documents.values():
        lines = [json.dumps([name, doc]) for name, doc in docs]
        (folder / f"{docs[0][1]['uid']}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _args(*argv: str):
    args = cli.build_parser().parse_args(["serve", *argv])
    return args


@pytest.fixture
def no_key_env(monkeypatch):
    monkeypatch.delenv(serve.KEY_ENV, raising=False)


def test_key_rules(no_key_env, monkeypatch):
    # Off localhost: a key is generated unless one is given or --public.
    generated = serve._settings(_args("data", "--host", "0.0.0.0"))
    assert not generated["public"]
    assert len(generated["api_key"]) == 64 and generated["api_key"].isalnum()
    assert serve._settings(_args("data", "--host", "0.0.0.0"))["api_key"] != generated["api_key"]
    given = serve._settings(_args("data", "--host", "0.0.0.0", "--api-key", "abc123"))
    assert (given["api_key"], given["public"]) == ("abc123", False)
    public = serve._settings(_args("data", "--host", "0.0.0.0", "--public"))
    assert (public["api_key"], public["public"]) == (None, True)
    # On localhost: open to this machine unless a key is given.
    local = serve._settings(_args("data"))
    assert (local["api_key"], local["public"]) == (None, True)
    keyed = serve._settings(_args("data", "--api-key", "k1"))
    assert (keyed["api_key"], keyed["public"]) == ("k1", False)
    monkeypatch.setenv(serve.KEY_ENV, "fromenv")
    assert serve._settings(_args("data", "--host", "10.0.0.1"))["api_key"] == "fromenv"
    assert serve._settings(_args("data", "--host", "10.0.0.1", "--workers", "3"))["scalable"]
    with pytest.raises(CLIError, match="letters and digits"):
        serve._settings(_args("data", "--api-key", "not-a-key"))


def test_bad_options_are_usage_errors(capsys):
    for argv in (["--port", "0"], ["--port", "x"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as exit:
            cli.main(["serve", "data", *argv])
        assert exit.value.code == 2


def test_missing_tiled_backend_names_the_package(store, monkeypatch, capsys):
    monkeypatch.setattr(serve, "entry_point_objects", lambda group: {})
    assert cli.main(["serve", str(store)]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "pip install 'intake-bluesky-tiled[server]'" in err


def test_missing_server_extra_names_the_extra(store, monkeypatch, capsys):
    def no_fastapi(name):
        raise ImportError("No module named 'fastapi'")

    monkeypatch.setattr(serve, "import_module", no_fastapi)
    assert cli.main(["serve", str(store)]) == 1
    err = capsys.readouterr().err
    assert "server extra" in err and "fastapi" in err
    assert "pip install 'intake-bluesky-tiled[server]'" in err


def test_the_core_cli_does_not_import_tiled():
    code = (
        "import sys, intake_bluesky.core._cli.main, intake_bluesky.core._cli.serve\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tiled', 'fastapi', 'uvicorn', 'bluesky_tiled_plugins')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reading_from_tiled_does_not_import_its_server():
    """build_app is imported when first used: reading needs tiled's client only."""
    code = (
        "import sys, intake_bluesky.tiled as t\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')"
        " or m.startswith(('tiled.server', 'intake_bluesky.tiled._serve')))\n"
        "t.build_app\n"
        "print(before, 'intake_bluesky.tiled._serve' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True"


def test_workers_build_the_same_app_from_the_environment(store, monkeypatch, capsys, no_key_env):
    """With several workers, uvicorn imports the factory in each process; the
    store and key reach it through the environment."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.delenv(serve.ENV, raising=False)
    argv = ["serve", str(store), "--host", "0.0.0.0", "--port", "8123", "--workers", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    ((app, options),) = calls
    assert app == "intake_bluesky.core._cli.serve:app_from_environment"
    assert options == {
        "factory": True,
        "host": "0.0.0.0",
        "port": 8123,
        "workers": 3,
        "log_level": "warning",
    }
    settings = json.loads(os.environ.pop(serve.ENV))
    key = settings["api_key"]
    assert os.environ.pop(serve.KEY_ENV) == key
    assert f"API key: {key}" in out and "http://0.0.0.0:8123" in out
    assert "Serving 4 runs of" in out
    monkeypatch.setenv(serve.ENV, json.dumps(settings))
    worker_app = serve.app_from_environment()
    ours = BlueskyJSONLCatalog(str(store))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with Context.from_app(worker_app, api_key=key) as context:
            client = from_context(context)
            assert list(client) == list(ours)
            h.assert_served_run(client[-1], ours[-1])
        with Context.from_app(worker_app, api_key="wrong") as context:
            assert context.http_client.get("/api/v1/metadata/").status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_over_http_with_two_workers(store, tmp_path, no_key_env):
    """The command in a process of its own, two uvicorn workers, an api key,
    read over HTTP by bluesky-tiled-plugins' client."""
    port = _free_port()
    key = "s3cretKey"
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from intake_bluesky.core._cli.main import console_main; console_main()",
            "serve",
            str(store),
            "--port",
            str(port),
            "--api-key",
            key,
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # two workers import tiled's server
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.5)
        ours = BlueskyJSONLCatalog(str(store))
        client = from_uri(url, api_key=key)
        assert list(client) == list(ours)
        for uid in ours:
            h.assert_served_run(client[uid], ours[uid])
        names = [name for name, _ in client[-1].documents()]
        assert names == [name for name, _ in ours[-1].canonical(fill="no")]
        assert httpx.get(f"{url}/api/v1/metadata/", params={"api_key": "nope"}).status_code == 401
        assert httpx.get(f"{url}/api/v1/metadata/").status_code == 401
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
