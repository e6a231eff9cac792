"""The shared machinery of file backends, with a minimal test format."""

import json
import os
import time
import warnings

import numpy as np
import pytest

from intake_bluesky.core import (
    BlueskyCatalog,
    FileDriver,
    FileFormat,
    RunChangedError,
    expand_paths,
)
from intake_bluesky.core._files import headers as _headers
from intake_bluesky.core.testing import (
    UIDS,
    ConformanceTests,
    RunStore,
    example_runs,
)


def _default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(obj)


class LinesFormat(FileFormat):
    """One JSON document per line; counts what it reads (class attributes)."""

    suffixes = (".lines",)
    name = "test lines"
    headers_read = 0
    documents_read = 0

    def read_documents(self, location):
        type(self).documents_read += 1
        with open(location) as f:
            for line in f:
                if line.strip():
                    yield tuple(json.loads(line))

    def read_header(self, location):
        type(self).headers_read += 1
        return super().read_header(location)


def write(path, docs):
    with open(path, "w") as f:
        for name, doc in docs:
            f.write(json.dumps([name, doc], default=_default) + "\n")
    return path


class LinesStore(RunStore):
    def __init__(self, directory):
        self.directory = directory

    def write_run(self, documents):
        path = self.directory / f"{documents[0][1]['uid']}.lines"
        # Bump mtime even within the clock's resolution: a rewrite must be seen.
        before = os.stat(path).st_mtime_ns if path.exists() else 0
        write(path, documents)
        if os.stat(path).st_mtime_ns <= before:
            os.utime(path, ns=(before + 1000, before + 1000))

    def append_documents(self, documents, new):
        text = "".join(json.dumps([n, d], default=_default) + "\n" for n, d in new)
        with open(self.directory / f"{documents[0][1]['uid']}.lines", "a") as f:
            f.write(text)

    def delete_run(self, uid):
        (self.directory / f"{uid}.lines").unlink()

    def catalog(self, **common):
        return BlueskyCatalog(FileDriver(self.directory, LinesFormat()), **common)


class TestFileDriverConformance(ConformanceTests):
    @pytest.fixture
    def store(self, tmp_path):
        (tmp_path / "runs").mkdir()
        return LinesStore(tmp_path / "runs")


class IndexedLinesStore(LinesStore):
    """Catalogs whose runs come out of the on-disk index, as in a new process:
    their searches are answered by SQL there (and the evaluator for what SQL
    leaves undecided), never from documents decoded beforehand."""

    def __init__(self, directory, index, aged=0):
        super().__init__(directory)
        self.index = index
        self.aged = aged

    def catalog(self, **common):
        if self.aged:
            # An old directory: its listing is stored, and a new catalog
            # answers searches from the index without listing it. (Each
            # time another mtime, as a directory that changed has: one set
            # back to the very same mtime looks unchanged.)
            self.aged += 1
            os.utime(self.directory, ns=(10**18 + self.aged, 10**18 + self.aged))
        # Index the files as they are now, then forget what this process
        # read, so the catalog's entries are the index's.
        FileDriver(self.directory, LinesFormat(), index_path=self.index).count({})
        _headers._HEADERS.clear()
        return BlueskyCatalog(
            FileDriver(self.directory, LinesFormat(), index_path=self.index), **common
        )


class TestFileDriverConformanceFromIndex(ConformanceTests):
    @pytest.fixture
    def store(self, tmp_path):
        (tmp_path / "runs").mkdir()
        return IndexedLinesStore(tmp_path / "runs", tmp_path / "index.sqlite")

    def test_searches_were_answered_in_the_index(self, store, runs, common):
        store.aged = 0
        for docs in runs:
            store.write_run(docs)
        cat = store.catalog(**common)
        assert list(cat.search({"plan_name": "count"})) == [UIDS["count"], UIDS["failed"]]
        # Only the runs found were decoded: the others' documents are still
        # in the index.
        pending = cat.driver._pending
        assert len(pending) == 3 and UIDS["count"] not in {e.uid for e in pending.values()}


class TestFileDriverConformanceFromStoredListing(ConformanceTests):
    @pytest.fixture
    def store(self, tmp_path):
        (tmp_path / "runs").mkdir()
        return IndexedLinesStore(tmp_path / "runs", tmp_path / "index.sqlite", aged=1)

    def test_searches_were_answered_without_a_listing(self, store, runs, common):
        for docs in runs:
            store.write_run(docs)
        cat = store.catalog(**common)
        assert list(cat.search({"plan_name": "count"})) == [UIDS["count"], UIDS["failed"]]
        assert cat.driver._files is None  # the directory was not listed


def test_expand_paths_forms(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "sub").mkdir()
    for name in ("a/x.lines", "a/y.LINES", "a/z.txt", "a/sub/w.lines", "v.lines"):
        (tmp_path / name).write_text("")
    a = str(tmp_path / "a")
    assert [os.path.basename(p) for p in expand_paths(a, (".lines",))] == ["x.lines", "y.LINES"]
    assert len(expand_paths(a, (".lines",), recursive=True)) == 3
    globbed = expand_paths(str(tmp_path / "*.lines"), (".lines",))
    assert [os.path.basename(p) for p in globbed] == ["v.lines"]
    # An explicit file is taken whatever its suffix; duplicates collapse.
    both = expand_paths([a + "/z.txt", a, a + "/x.lines"], (".lines",))
    assert [os.path.basename(p) for p in both] == ["z.txt", "x.lines", "y.LINES"]


def test_headers_read_once_per_file_version(tmp_path):
    runs = example_runs(tmp_path / "ext")
    for docs in runs[:3]:
        write(tmp_path / f"{docs[0][1]['uid']}.lines", docs)
    LinesFormat.headers_read = 0
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    assert len(cat) == 3
    assert LinesFormat.headers_read == 3
    list(cat.search({"plan_name": "count"}))
    cat[-1]
    # A warm re-open of the same files reads none of them again.
    cat2 = BlueskyCatalog(FileDriver(str(tmp_path), LinesFormat()))
    assert len(cat2) == 3
    assert LinesFormat.headers_read == 3
    # A changed file is read again, and only that one.
    path = tmp_path / f"{UIDS['count']}.lines"
    write(path, runs[1][:-1])
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**6))
    assert cat[UIDS["count"]].metadata["stop"] is None
    len(cat)
    assert LinesFormat.headers_read == 4


def test_file_without_start_is_skipped_with_a_warning(tmp_path):
    runs = example_runs(tmp_path / "ext")
    write(tmp_path / "good.lines", runs[1])
    bad = write(tmp_path / "bad.lines", runs[1][1:])
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    with pytest.warns(UserWarning, match="bad.lines") as record:
        assert list(cat) == [UIDS["count"]]
    assert "no start document" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        len(cat)  # warned once per file version, not on every access
    assert os.path.exists(bad)


def test_run_object_sees_its_file_grow(tmp_path):
    runs = example_runs(tmp_path / "ext")
    path = tmp_path / "run.lines"
    write(path, runs[1][:2])
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    run = cat[-1]
    assert run.metadata["stop"] is None and run.primary.read()["det"].size == 0
    time.sleep(0.01)
    write(path, runs[1])
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run.primary.read()["det"].values.tolist() == [201.0, 202.0, 203.0, 204.0, 205.0]


def test_removed_file_gives_clear_error(tmp_path):
    runs = example_runs(tmp_path / "ext")
    path = write(tmp_path / "run.lines", runs[1])
    run = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))[-1]
    os.remove(path)
    with pytest.raises(FileNotFoundError, match="removed"):
        run.metadata


def test_duplicate_runs_are_warned_not_silently_dropped(tmp_path):
    runs = example_runs(tmp_path / "ext")
    write(tmp_path / "a.lines", runs[1])
    write(tmp_path / "b.lines", runs[1])
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    with pytest.warns(UserWarning, match="stored twice") as record:
        assert list(cat) == [UIDS["count"]]
    assert "a.lines" in str(record[0].message) and "b.lines" in str(record[0].message)


class ShoutingFormat(LinesFormat):
    """The same files read with an option that changes the start document."""

    def __init__(self, shout):
        self.shout = shout

    def read_header(self, location):
        start, stop = super().read_header(location)
        if self.shout:
            start = {**start, "plan_name": start["plan_name"].upper()}
        return start, stop


def test_header_cache_distinguishes_format_options(tmp_path):
    runs = example_runs(tmp_path / "ext")
    write(tmp_path / "a.lines", runs[1])
    quiet = BlueskyCatalog(FileDriver(tmp_path, ShoutingFormat(False)))
    loud = BlueskyCatalog(FileDriver(tmp_path, ShoutingFormat(True)))
    assert len(quiet.search({"plan_name": "count"})) == 1
    assert len(loud.search({"plan_name": "COUNT"})) == 1
    assert len(quiet.search({"plan_name": "COUNT"})) == 0


def test_metadata_from_the_index_without_reading_the_run(tmp_path):
    runs = example_runs(tmp_path / "ext")
    write(tmp_path / "a.lines", runs[1])
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    len(cat)
    before = LinesFormat.documents_read
    run = cat[-1]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert LinesFormat.documents_read == before
    assert run.primary.read()["det"].size == 5
    assert LinesFormat.documents_read == before + 1


def test_file_rewritten_with_another_run_is_not_served_under_the_old_uid(tmp_path):
    runs = example_runs(tmp_path / "ext")
    path = write(tmp_path / "a.lines", runs[1])
    run = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))[-1]
    time.sleep(0.01)
    write(path, runs[2])
    with pytest.raises(RunChangedError, match="no longer exists"):
        run.primary.read()


class Catalog(BlueskyCatalog):
    """A file catalog as backends define them: constructed from paths."""

    def __init__(self, paths, **common):
        super().__init__(FileDriver(paths, LinesFormat()), **common)


def test_searched_catalog_pickles_as_the_subset(tmp_path):
    import pickle

    for docs in example_runs(tmp_path / "ext"):
        write(tmp_path / f"{docs[0][1]['uid']}.lines", docs)
    sub = Catalog(str(tmp_path)).search({"plan_name": "count"}).search({"scan_id": 2})
    clone = pickle.loads(pickle.dumps(sub))
    assert list(clone) == list(sub) == [UIDS["count"], UIDS["failed"]]
    assert "plan_name" in sub.yaml() and "scan_id" in sub.yaml()


def test_unreadable_header_is_skipped_with_a_warning_naming_it(tmp_path):
    runs = example_runs(tmp_path / "ext")
    write(tmp_path / "good.lines", runs[1])
    (tmp_path / "bad.lines").write_text("this is not json\n")
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    with pytest.warns(UserWarning, match="bad.lines"):
        assert list(cat) == [UIDS["count"]]


def test_looking_a_run_up_twice_parses_it_once(tmp_path):
    docs = example_runs(tmp_path / "ext")[1]
    write(tmp_path / "a.lines", docs)
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    len(cat)  # index first: this test format reads headers with read_documents
    before = LinesFormat.documents_read
    assert len(list(cat[-1].canonical())) == len(docs)
    assert cat[-1].primary.to_dask()["det"].values.tolist() == [201.0, 202.0, 203.0, 204.0, 205.0]
    assert LinesFormat.documents_read == before + 1


def test_a_finished_runs_read_takes_its_columns_from_the_parse(tmp_path):
    # read() of a whole stream keeps no second copy of the events: the parse
    # hands their columns over, and whatever needs them later reads the
    # file again, giving back what is stored however the Dataset is changed.
    docs = example_runs(tmp_path / "ext")[1]
    write(tmp_path / "a.lines", docs)
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    len(cat)
    before = LinesFormat.documents_read
    run = cat[-1]
    first = run.primary.read()
    assert first["det"].values.tolist() == [201.0, 202.0, 203.0, 204.0, 205.0]
    first["det"].values[:] = -1.0
    source = run._run.source
    (descriptor,) = source.descriptors()
    assert source.event_count(descriptor["uid"]) == 5  # counted when handed over
    assert LinesFormat.documents_read == before + 1
    again = run.primary.read()
    assert LinesFormat.documents_read == before + 2
    assert again["det"].values.tolist() == [201.0, 202.0, 203.0, 204.0, 205.0]
    assert again["seq_num"].values.tolist() == [1, 2, 3, 4, 5]
    stored = [d for d in docs if d[0] != "stop"] + [d for d in docs if d[0] == "stop"]
    assert json.loads(json.dumps(list(run.canonical()), default=_default)) == json.loads(
        json.dumps(stored, default=_default)
    )


def test_a_run_being_written_keeps_its_columns(tmp_path):
    docs = example_runs(tmp_path / "ext")[1]
    write(tmp_path / "a.lines", [d for d in docs if d[0] != "stop"])
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    len(cat)
    before = LinesFormat.documents_read
    run = cat[-1]
    assert run.primary.read()["det"].size == 5
    assert run.primary.read()["det"].size == 5
    assert LinesFormat.documents_read == before + 1


def test_a_path_that_does_not_exist_is_warned(tmp_path):
    with pytest.warns(UserWarning, match="names no file or directory"):
        assert len(BlueskyCatalog(FileDriver(str(tmp_path / "nope"), LinesFormat()))) == 0


def test_lookup_by_full_uid_does_not_relist_the_directory(tmp_path, monkeypatch):
    from intake_bluesky.core._files import listing as _files

    for docs in example_runs(tmp_path / "ext"):
        write(tmp_path / f"{docs[0][1]['uid']}.lines", docs)
    cat = Catalog(str(tmp_path)).search({"plan_name": "count"})
    assert len(cat) == 2

    def no_listing(*args, **kwargs):
        raise AssertionError("listed the directory for a known uid")

    monkeypatch.setattr(_files._Listing, "files", no_listing)
    assert cat[UIDS["count"]].metadata["start"]["scan_id"] == 2
    assert cat[UIDS["failed"]].metadata["stop"]["exit_status"] == "fail"
    with pytest.raises(AssertionError, match="listed"):
        cat[-1]  # "the newest" must look for new files


def _long_run(n):
    """A finished run of ``n`` events of one stream (several pages)."""
    import event_model

    bundle = event_model.compose_run(uid="7e57da7a-0000-4000-8000-000000000001", time=1.0)
    desc = bundle.compose_descriptor(
        name="primary",
        data_keys={"det": {"dtype": "number", "shape": [], "source": "sim"}},
    )
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    for i in range(n):
        event = desc.compose_event(
            data={"det": i * 0.5}, timestamps={"det": 2.0 + i}, seq_num=i + 1, time=2.0 + i
        )
        docs.append(("event", event))
    docs.append(("stop", bundle.compose_stop(time=3.0 + n)))
    return docs


def test_reads_in_threads_each_get_the_whole_stream(tmp_path):
    # Eager reads take the parse's columns; reads, lazy computes and
    # canonical() in other threads, of the same run object or another one
    # for the same file, still each get every event.
    import threading

    import dask

    n = 9000
    docs = _long_run(n)
    write(tmp_path / "a.lines", docs)
    cat = BlueskyCatalog(FileDriver(tmp_path, LinesFormat()))
    shared = cat[-1]
    want = [i * 0.5 for i in range(n)]
    problems = []

    def work(kind, run):
        try:
            for _ in range(6):
                if kind == "read":
                    got = run.primary.read()["det"].values.tolist()
                elif kind == "dask":
                    with dask.config.set(scheduler="threads"):
                        got = run.primary.to_dask(chunks=1000)["det"].values.tolist()
                else:
                    got = [
                        d["data"]["det"] for name, d in run.canonical(fill="no") if name == "event"
                    ]
                if got != want:
                    problems.append(f"{kind}: {len(got)} values")
        except Exception as err:  # reported by the test
            problems.append(f"{kind}: {err!r}")

    threads = [
        threading.Thread(target=work, args=(kind, run))
        for kind in ("read", "read", "dask", "canonical")
        for run in (shared, cat[-1])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_a_run_file_is_parsed_with_the_cyclic_collector_paused(tmp_path):
    # One pause for the whole parse: between decoded batches the collector
    # would traverse everything decoded so far.
    import gc

    import event_model

    seen = []

    class Watching(LinesFormat):
        acyclic_documents = True

        def read_documents(self, location):
            for doc in super().read_documents(location):
                seen.append(gc.isenabled())
                yield doc

    bundle = event_model.compose_run(time=1.0)
    keys = {"x": {"source": "s", "dtype": "number", "shape": []}}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys, time=1.0)
    events = [
        desc.compose_event(
            data={"x": i / 2}, timestamps={"x": 2.0 + i}, seq_num=i + 1, time=2.0 + i
        )
        for i in range(10)
    ]
    docs = [("start", bundle.start_doc), ("descriptor", desc.descriptor_doc)]
    docs += [("event", e) for e in events] + [("stop", bundle.compose_stop(time=20.0))]
    write(tmp_path / "run.lines", docs)
    cat = BlueskyCatalog(FileDriver([str(tmp_path / "*.lines")], Watching()))
    assert gc.isenabled()
    ds = cat[bundle.start_doc["uid"]].primary.read()
    assert len(seen) >= len(docs) and not any(seen)
    assert gc.isenabled()  # restored
    assert ds["x"].values.tolist() == [i / 2 for i in range(10)]
    # A format that does not say so (its reader may make cycles, e.g. a TIFF
    # library's objects) is parsed with the collector running.
    seen.clear()
    Watching.acyclic_documents = False
    write(tmp_path / "run.lines", docs[:-1])  # changed: parsed again
    cat[bundle.start_doc["uid"]].primary.read()
    assert True in seen  # (the index's header reads are paused on their own)
