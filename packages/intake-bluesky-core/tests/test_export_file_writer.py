"""Run file writers (``write_run(run, path, options)``) through ``export_runs``:
what they are given, atomic placement, no overwrite, refused options. A
writer defined here stands in for the ``nexus`` writer of intake-bluesky-hdf5
(not installed in the core's own test environment)."""

from __future__ import annotations

import json
import os

import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core import export as export_module
from intake_bluesky.core.export import (
    ExportError,
    RunFileWriter,
    RunWriter,
    WriteOptions,
    export_runs,
)
from intake_bluesky.core.testing import EXTERNAL_ROOT, example_registry, example_runs


class SummaryWriter:
    """Writes what it was given, as JSON; can fail after writing part."""

    suffix = ".summary"
    options = frozenset({"link_external"})

    def __init__(self, fail_after_bytes=None, write_nothing=False):
        self.fail_after_bytes = fail_after_bytes
        self.write_nothing = write_nothing
        self.calls: list[tuple[str, str, WriteOptions]] = []

    def write_run(self, run, path, options):
        self.calls.append((run.uid, path, options))
        if self.write_nothing:
            return
        assert not os.path.exists(path)  # a new file, always
        summary = {
            "uid": run.uid,
            "streams": {s: run[s].read().sizes["time"] for s in run},
            "link_external": options.link_external,
            "file_name": options.file_name,
            "root_map": dict(options.root_map),
            "stream_resources": [d["uid"] for d in options.stream_resources],
            "stream_datums": [d["uid"] for d in options.stream_datums],
        }
        data = json.dumps(summary).encode()
        with open(path, "xb") as f:
            if self.fail_after_bytes is not None:
                f.write(data[: self.fail_after_bytes])
                f.flush()
                raise RuntimeError("disk full")
            f.write(data)
        for stream in run:
            options.rows_written(summary["streams"][stream])


class DocumentWriter:
    """A document-stream writer (``write(documents, file)``)."""

    suffix = ".docs"

    def write(self, documents, file):
        for name, _ in documents:
            file.write(name.encode() + b"\n")


@pytest.fixture
def catalog(tmp_path_factory):
    """The example runs, their external files where the catalog's root_map says."""
    files = tmp_path_factory.mktemp("external")
    cat = BlueskyInMemoryCatalog(**example_registry(files))
    for run in example_runs(files):
        cat.ingest(run)
    return cat


@pytest.fixture
def use_writer(monkeypatch):
    def use(writer):
        monkeypatch.setattr(export_module, "get_writer", lambda name: writer)
        return writer

    return use


def test_a_file_writer_is_given_the_run_and_its_options(catalog, use_writer, tmp_path):
    writer = use_writer(SummaryWriter())
    assert isinstance(writer, RunFileWriter) and not isinstance(writer, RunWriter)
    counted = []
    paths = export_runs(catalog, tmp_path, format="summary", progress=counted.append)
    assert paths == [str(tmp_path / f"{uid}.summary") for uid in catalog]
    for (uid, tmp, options), path in zip(writer.calls, paths, strict=True):
        # Written under a hidden temporary name beside the final one.
        assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".")
        assert options.file_name == os.path.basename(path)
        assert set(options.root_map) == {EXTERNAL_ROOT}  # the catalog's
        summary = json.loads(open(path).read())
        assert summary["uid"] == uid
        assert summary["link_external"] is False
        stored = [d for n, d in catalog[uid].canonical(fill="no")]
        names = [n for n, _ in catalog[uid].canonical(fill="no")]
        want_sr = [d["uid"] for n, d in zip(names, stored, strict=True) if n == "stream_resource"]
        want_sd = [d["uid"] for n, d in zip(names, stored, strict=True) if n == "stream_datum"]
        assert summary["stream_resources"] == want_sr
        assert summary["stream_datums"] == want_sd
    assert any(summary_has_stream_data(p) for p in paths)  # the examples include one
    total = sum(sum(json.loads(open(p).read())["streams"].values()) for p in paths)
    assert sum(counted) == total > 0
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)


def summary_has_stream_data(path) -> bool:
    return bool(json.loads(open(path).read())["stream_resources"])


def test_link_external_reaches_the_writer(catalog, use_writer, tmp_path):
    writer = use_writer(SummaryWriter())
    export_runs(catalog, tmp_path, format="summary", link_external=True)
    assert all(options.link_external for _, _, options in writer.calls)


def test_a_failing_writer_leaves_nothing(catalog, use_writer, tmp_path):
    use_writer(SummaryWriter(fail_after_bytes=10))
    with pytest.raises(RuntimeError, match="disk full"):
        export_runs(catalog, tmp_path, format="summary")
    assert os.listdir(tmp_path) == []  # neither the partial file nor a temporary one


def test_a_writer_that_writes_no_file_is_an_error(catalog, use_writer, tmp_path):
    use_writer(SummaryWriter(write_nothing=True))
    with pytest.raises(ExportError, match="wrote no file"):
        export_runs(catalog, tmp_path, format="summary")
    assert os.listdir(tmp_path) == []


def test_existing_files_are_kept_unless_asked(catalog, use_writer, tmp_path):
    use_writer(SummaryWriter())
    first = export_runs(catalog, tmp_path, format="summary")
    (tmp_path / os.path.basename(first[0])).write_text("mine")
    with pytest.raises(ExportError, match="already exist"):
        export_runs(catalog, tmp_path, format="summary")
    assert (tmp_path / os.path.basename(first[0])).read_text() == "mine"
    assert export_runs(catalog, tmp_path, format="summary", existing="skip") == []
    again = export_runs(catalog, tmp_path, format="summary", existing="overwrite")
    assert again == first
    assert json.loads((tmp_path / os.path.basename(first[0])).read_text())["uid"]


@pytest.mark.parametrize(
    ("writer", "option", "flag"),
    [
        (SummaryWriter(), "copy_external", "--copy-external"),
        (DocumentWriter(), "link_external", "--link-external"),
    ],
    ids=["file-writer-copy", "document-writer-link"],
)
def test_options_a_writer_does_not_honour_are_refused(
    catalog, use_writer, tmp_path, writer, option, flag
):
    use_writer(writer)
    with pytest.raises(ExportError, match=f"does not support {flag}"):
        export_runs(catalog, tmp_path / "out", format="x", **{option: True})
    assert not (tmp_path / "out").exists()  # refused before anything was made
