"""Conformance tests of ``run.follow()``: a run's documents as they are written."""

from __future__ import annotations

import threading
import time

import pytest

from ._compare import RESOURCES, _skip_without
from ._examples import UIDS, example_runs

__all__ = ["FollowTests"]


def _normalize(documents):
    from ._suite import normalize_documents

    return normalize_documents(documents)


class FollowTests:
    """Mixin of :class:`~intake_bluesky.core.testing.ConformanceTests`.

    Uses the store's ``append_documents`` (by default: write the run again,
    longer) to grow a run while another thread follows it.
    """

    @pytest.fixture
    def follow_docs(self, tmp_path):
        # The scan: two streams, single events and a page, external data.
        directory = tmp_path / "follow-external"
        directory.mkdir()
        return example_runs(directory)[0]

    def _grow(self, store, docs, done: int, step_s: float):
        for i in range(done, len(docs)):
            time.sleep(step_s)
            store.append_documents(docs[:i], docs[i : i + 1])

    def test_follow_sees_every_document_as_written(self, store, common, follow_docs):
        from ._suite import _check_order

        _skip_without(
            store, "supports_concurrent_appends", "the store cannot append while a run is read"
        )
        _skip_without(store, "keeps_resources", RESOURCES)
        store.write_run(follow_docs[:2])
        run = store.catalog(**common)[UIDS["scan"]]
        assert run.metadata["stop"] is None
        writer = threading.Thread(target=self._grow, args=(store, follow_docs, 2, 0.03))
        writer.start()
        try:
            followed = list(run.follow(poll_interval=0.01, idle_timeout=20))
        finally:
            writer.join()
        _check_order(followed)
        assert followed[0][0] == "start"
        assert followed[-1][0] == "stop"
        assert _normalize(followed) == _normalize(follow_docs)
        # Nothing twice: as many event rows as written.
        rows = sum(
            1 if name == "event" else len(doc["seq_num"])
            for name, doc in followed
            if name in ("event", "event_page")
        )
        assert rows == 8  # as written: 6 primary, 2 baseline
        assert [n for n, _ in followed].count("descriptor") == 2

    def test_follow_of_a_finished_run_is_its_canonical_stream(self, store, cat, runs):
        _skip_without(store, "keeps_resources", RESOURCES)
        run = cat[UIDS["scan"]]
        started = time.monotonic()
        followed = list(run.follow(poll_interval=5))
        assert time.monotonic() - started < 4  # ends at the stop, no polling
        assert _normalize(followed) == _normalize(run.canonical(fill="no"))
        assert _normalize(followed) == _normalize(runs[0])

    def test_follow_idle_timeout_names_the_run(self, store, common, follow_docs):
        store.write_run(follow_docs[:3])
        run = store.catalog(**common)[UIDS["scan"]]
        got = []
        with pytest.raises(TimeoutError, match=UIDS["scan"]):
            for item in run.follow(poll_interval=0.02, idle_timeout=0.3):
                got.append(item)
        # The one event written so far, in the form the store keeps it in.
        assert [n for n, _ in got[:2]] == ["start", "descriptor"]
        assert len(got) == 3 and got[2][0] in ("event", "event_page")
        stored = store.as_stored(follow_docs[:3])
        if stored is not None:
            assert got[2][0] == stored[2][0]
        name, doc = got[2]
        assert ([doc["seq_num"]] if name == "event" else list(doc["seq_num"])) == [1]

    def test_follow_never_mixes_a_run_with_its_rewritten_version(self, store, common, follow_docs):
        from .._files.driver import RunChangedError

        # Written up to its second primary event; then the whole run is
        # written again (a file truncated and rewritten in place): another
        # first event (new uid and time), no others, and a stop.
        primary = next(
            d["uid"] for n, d in follow_docs if n == "descriptor" and d["name"] == "primary"
        )
        cut = next(
            i
            for i, (n, d) in enumerate(follow_docs)
            if n == "event" and d["descriptor"] == primary and d["seq_num"] == 2
        )
        store.write_run(follow_docs[: cut + 1])
        rewritten = []
        for name, doc in follow_docs:
            if name in ("event", "event_page") and doc["descriptor"] == primary:
                if name == "event_page" or doc["seq_num"] > 1:
                    continue
                doc = {**doc, "uid": doc["uid"] + "-again", "time": doc["time"] + 0.25}
            rewritten.append((name, doc))
        run = store.catalog(**common)[UIDS["scan"]]
        followed, ended = [], []

        def follow():
            try:
                for item in run.follow(poll_interval=0.01, idle_timeout=3):
                    followed.append(item)
            except (RunChangedError, TimeoutError, KeyError) as err:
                ended.append(err)
            else:
                ended.append(None)

        follower = threading.Thread(target=follow)
        follower.start()
        try:
            deadline = time.monotonic() + 20
            while _primary_rows(followed, primary) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _primary_rows(followed, primary) == 2
            store.write_run(rewritten)
        finally:
            follower.join()
        # Never the old events and the new stop, ended as if complete: the
        # follower says the run changed. (A store that replaces a run by
        # deleting it first may instead say the run is gone, KeyError, or
        # leave the followed object waiting, a timeout: nothing mixed.)
        (err,) = ended
        assert err is not None, "follow() ended normally over two versions of the run"
        assert UIDS["scan"] in str(err)
        if isinstance(err, RunChangedError):
            assert "changed while it was followed" in str(err)
        assert "stop" not in [n for n, _ in followed]
        uids = [u for n, d in followed if n in ("event", "event_page") for u in _uids(n, d)]
        assert not [u for u in uids if u.endswith("-again")]

    def test_follow_arguments(self, cat):
        run = cat[UIDS["scan"]]
        with pytest.raises(ValueError, match="fill"):
            next(run.follow(fill="maybe"))
        with pytest.raises(ValueError, match="poll_interval"):
            next(run.follow(poll_interval=0))


def _uids(name, doc):
    return [doc["uid"]] if name == "event" else list(doc["uid"])


def _primary_rows(followed, primary):
    return sum(
        len(_uids(n, d))
        for n, d in list(followed)
        if n in ("event", "event_page") and d["descriptor"] == primary
    )
