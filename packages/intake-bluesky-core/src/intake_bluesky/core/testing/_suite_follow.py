"""Conformance tests of ``run.follow()``: a run's documents as they are written."""

from __future__ import annotations

import threading
import time

import pytest

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

    def test_follow_of_a_finished_run_is_its_canonical_stream(self, cat, runs):
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
        assert [n for n, _ in got] == ["start", "descriptor", "event"]
        assert got[2][1]["seq_num"] == 1

    def test_follow_arguments(self, cat):
        run = cat[UIDS["scan"]]
        with pytest.raises(ValueError, match="fill"):
            next(run.follow(fill="maybe"))
        with pytest.raises(ValueError, match="poll_interval"):
            next(run.follow(poll_interval=0))
