"""The faces people use, where the conformance kit cannot look:
what a file catalog reads for a table, progress bars, notebook display."""

import io
import json
import os

import numpy as np
import pytest

from intake_bluesky.core import (
    BlueskyCatalog,
    BlueskyInMemoryCatalog,
    FileDriver,
    FileFormat,
    _progress,
    run_rows,
    set_progress,
)
from intake_bluesky.core.testing import UIDS, example_registry, example_runs


class CountingFormat(FileFormat):
    """One JSON document per line; counts whole-file and header reads."""

    suffixes = (".lines",)
    name = "counting lines"
    headers_read = 0
    documents_read = 0

    def read_documents(self, location):
        type(self).documents_read += 1
        return self._lines(location)

    def _lines(self, location):
        with open(location) as f:
            for line in f:
                if line.strip():
                    yield tuple(json.loads(line))

    def read_header(self, location):
        type(self).headers_read += 1
        docs = dict(self._lines(location))  # start and stop: first and last
        return docs.get("start"), docs.get("stop")


def _write_runs(directory, runs):
    def default(obj):
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise TypeError(obj)

    for docs in runs:
        with open(directory / f"{docs[0][1]['uid']}.lines", "w") as f:
            for name, doc in docs:
                f.write(json.dumps([name, doc], default=default) + "\n")


@pytest.fixture
def file_cat(tmp_path):
    runs = example_runs(tmp_path / "ext")
    (tmp_path / "runs").mkdir()
    _write_runs(tmp_path / "runs", runs)
    return BlueskyCatalog(FileDriver(tmp_path / "runs", CountingFormat()))


def test_file_table_reads_only_the_index(file_cat):
    CountingFormat.headers_read = CountingFormat.documents_read = 0
    assert len(file_cat) == 5
    assert CountingFormat.headers_read == 5
    df = file_cat.to_dataframe(fields=["sample.name", "stop.reason"])
    rows = run_rows(file_cat.search({"plan_name": "count"}), limit=1)
    html = file_cat._repr_html_()
    # No file was read again, in whole or in part: start and stop come from
    # the index built by the first listing.
    assert (CountingFormat.headers_read, CountingFormat.documents_read) == (5, 0)
    assert df["sample.name"].tolist() == ["Cu", "Fe", "Fe", "Ni", "Au"]
    assert [r["uid"] for r in rows] == [UIDS["failed"]]
    assert "5 runs" in html


def test_file_table_sees_a_run_finish(file_cat, tmp_path):
    assert run_rows(file_cat)[3]["exit_status"] is None
    runs = example_runs(tmp_path / "ext")
    live = runs[3] + [
        (
            "stop",
            {
                "uid": "f0f0",
                "run_start": UIDS["live"],
                "time": runs[3][0][1]["time"] + 9,
                "exit_status": "abort",
                "num_events": {"primary": 3},
            },
        )
    ]
    _write_runs(tmp_path / "runs", [live])
    row = run_rows(file_cat)[3]
    assert (row["exit_status"], row["duration"], row["num_events"]) == (
        "abort",
        9.0,
        {"primary": 3},
    )


# --- progress -------------------------------------------------------------
@pytest.fixture
def no_override():
    set_progress(None)
    yield
    set_progress(None)


def test_progress_is_silent_when_nobody_watches(no_override, monkeypatch, capsys):
    monkeypatch.delenv(_progress.ENV_VAR, raising=False)
    # pytest captures stderr: not a terminal, so no bar and no wrapper at all.
    items = [1, 2, 3]
    assert _progress.progress_enabled() is False
    assert _progress.progress(items, desc="x") is items
    assert capsys.readouterr().err == ""


def test_progress_settings(no_override, monkeypatch):
    monkeypatch.setenv(_progress.ENV_VAR, "1")
    assert _progress.progress_enabled() is True
    monkeypatch.setenv(_progress.ENV_VAR, "off")
    assert _progress.progress_enabled() is False

    class TTY(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv(_progress.ENV_VAR, "auto")
    monkeypatch.setattr("sys.stderr", TTY())
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert _progress.progress_enabled() is True  # a person at a terminal
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert _progress.progress_enabled() is False
    monkeypatch.delenv("TQDM_DISABLE")
    set_progress(False)
    assert _progress.progress_enabled() is False  # the code setting wins
    monkeypatch.setenv(_progress.ENV_VAR, "1")
    assert _progress.progress_enabled() is False
    with pytest.raises(TypeError):
        set_progress("yes")


def test_progress_bar_is_drawn_when_forced(no_override, monkeypatch):
    monkeypatch.setattr(_progress, "DELAY", 0)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    set_progress(True)
    bar = _progress.progress(range(50), desc="Counting sheep", unit="sheep", leave=True)
    assert list(bar) == list(range(50))
    assert "Counting sheep" in err.getvalue() and "50/50" in err.getvalue()


def _bars(monkeypatch):
    """Record the progress bars the core asks for (description, total)."""
    seen = []
    real_progress = _progress.progress

    def progress(iterable, total=None, desc="", unit="it", leave=False):
        seen.append((desc, len(iterable) if total is None else total, unit))
        return real_progress(iterable, total, desc, unit, leave)

    class Counter(_progress.ProgressCounter):
        def __init__(self, total=None, desc="", unit="it"):
            seen.append((desc, total, unit))
            super().__init__(total, desc, unit)

    from intake_bluesky.core._faces import run as _faces
    from intake_bluesky.core._files import driver as _files
    from intake_bluesky.core._model import filling as _filling

    monkeypatch.setattr(_files, "progress", progress)
    monkeypatch.setattr(_filling, "progress", progress)
    monkeypatch.setattr(_faces, "ProgressCounter", Counter)
    return seen


def test_long_work_reports_progress(tmp_path, monkeypatch):
    seen = _bars(monkeypatch)
    runs = example_runs(tmp_path / "ext")
    (tmp_path / "runs").mkdir()
    _write_runs(tmp_path / "runs", runs)
    cat = BlueskyCatalog(
        FileDriver(tmp_path / "runs", CountingFormat()), **example_registry(tmp_path / "ext")
    )
    assert len(cat) == 5
    assert seen == [("Indexing run files", 5, "run")]
    seen.clear()
    run = cat[UIDS["scan"]]
    seen.clear()
    run.primary.read()
    assert ("Loading ext", 6, "frame") in seen
    seen.clear()
    run.primary.to_dask()["ext"].compute()  # dask chunks stay silent
    assert [s for s in seen if s[0].startswith("Loading")] == []
    seen.clear()
    docs = list(run.canonical(fill="yes"))
    assert seen == [(f"Filling run {UIDS['scan'][:8]}", 8, "event")]
    assert docs[-1][0] == "stop"
    seen.clear()
    list(run.canonical(fill="no"))
    assert seen == []


def test_canonical_progress_counts_events(monkeypatch):
    monkeypatch.setattr(_progress, "DELAY", 0)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    set_progress(True)
    try:
        cat = BlueskyInMemoryCatalog()
        cat.ingest(example_runs()[1])
        list(cat[-1].canonical(fill="yes"))
    finally:
        set_progress(None)
    assert "Filling run a1b2ffee:   0%" in err.getvalue() and "0/5" in err.getvalue()


# --- notebooks ------------------------------------------------------------
def test_ipython_uses_the_html(tmp_path):
    ipython = pytest.importorskip("IPython", reason="IPython is not installed")
    del ipython
    from IPython.core.formatters import DisplayFormatter

    cat = BlueskyInMemoryCatalog()
    for docs in example_runs():
        cat.ingest(docs)
    formatter = DisplayFormatter()
    for obj in (cat, cat[-5], cat[-5].primary):
        data, _ = formatter.format(obj)
        assert "text/html" in data and 'class="ib-repr"' in data["text/html"]
        assert data["text/plain"].startswith("<")


def test_browser_screenshot(tmp_path):
    """Render the three displays in headless Chromium (skipped without it)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cat = BlueskyInMemoryCatalog()
    for docs in example_runs():
        cat.ingest(docs)
    page = tmp_path / "reprs.html"
    page.write_text(
        "<html><body>"
        + cat._repr_html_()
        + cat[-5]._repr_html_()
        + cat[-5].primary._repr_html_()
        + "</body></html>"
    )
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert os.path.getsize(shot) == len(data)
