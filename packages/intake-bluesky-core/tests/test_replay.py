"""run.replay(callback, speed=...): canonical documents, original timing
scaled, with a fake clock (nothing sleeps for real)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from intake_bluesky.core import BlueskyInMemoryCatalog
from intake_bluesky.core._model import replay as replay_module
from intake_bluesky.core._model.replay import document_time, replay
from intake_bluesky.core.testing import UIDS, example_registry, example_runs

T0 = 1_700_000_000.0  # the example runs' time origin


class FakeClock:
    """``sleep`` records each wait and advances ``now``; the callback may
    advance it too (its own work)."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


@pytest.fixture
def cat(tmp_path):
    cat = BlueskyInMemoryCatalog(**example_registry(tmp_path))
    for docs in example_runs(tmp_path):
        cat.ingest(docs)
    return cat


@pytest.mark.parametrize(
    "speed, sleeps, arrivals",
    [
        (1.0, [0.1, 0.9, 5.0], [0, 0.1, 1.0, 6.0]),
        (2.0, [0.05, 0.45, 2.5], [0, 0.05, 0.5, 3.0]),
        (0.5, [0.2, 1.8, 10.0], [0, 0.2, 2.0, 12.0]),
    ],
)
def test_count_run_timing_scaled_by_speed(cat, speed, sleeps, arrivals):
    # start T0+100, descriptor +0.1, one event page of events at +1..+5
    # (due at its first event), stop +6.
    fake, seen = FakeClock(), []
    replay(
        cat[UIDS["count"]].canonical(),
        lambda name, doc: seen.append((name, fake.now)),
        speed=speed,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert fake.sleeps == pytest.approx(sleeps, abs=1e-6)
    assert [name for name, _ in seen] == ["start", "descriptor", "event_page", "stop"]
    # Each document reaches the callback at its own scaled time.
    assert [t - 100.0 for _, t in seen] == pytest.approx(arrivals, abs=1e-6)


def test_documents_in_canonical_order_untimed_ones_at_once(cat):
    run = cat[UIDS["scan"]]
    fake, seen = FakeClock(), []
    replay(
        run.canonical(fill="no"),
        lambda name, doc: seen.append((name, doc)),
        speed=1.0,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert seen == list(run.canonical(fill="no"))
    # Timed: start T0, baseline descriptor +0.1, its event +0.2, primary
    # descriptor +0.3, events +1, +2, page +3, baseline event +7, stop +8;
    # resource and datums (no time) add no wait.
    assert fake.sleeps == pytest.approx([0.1, 0.1, 0.1, 0.7, 1.0, 1.0, 4.0, 1.0], abs=1e-6)
    names = [name for name, _ in seen]
    assert names.index("resource") < names.index("datum") < names.index("datum_page")


def test_speed_none_never_sleeps(cat):
    fake, seen = FakeClock(), []
    replay(
        cat[UIDS["scan"]].canonical(),
        lambda name, doc: seen.append(name),
        speed=None,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert fake.sleeps == []
    assert seen[0] == "start" and seen[-1] == "stop" and len(seen) == 13


def test_a_slow_callback_does_not_add_drift(cat):
    # The callback takes 0.5 s per document: waits shrink by that much, and
    # a document already late is passed on at once.
    fake = FakeClock()

    def slow(name, doc):
        fake.now += 0.5

    replay(cat[UIDS["count"]].canonical(), slow, speed=1.0, sleep=fake.sleep, clock=fake.clock)
    # descriptor due at +0.1: already +0.5 (no wait); page due at +1.0, now
    # +1.0 (no wait); stop due at +6.0, now +1.5: 4.5.
    assert fake.sleeps == pytest.approx([4.5])


def test_times_going_back_do_not_wait():
    docs = [
        ("start", {"time": 10.0}),
        ("descriptor", {"time": 9.0}),  # another host's clock
        ("event", {"time": 12.0}),
        ("resource", {"uid": "r"}),
        ("event_page", {"time": [13.5, 14.0]}),
        ("stop", {"time": 15.0}),
    ]
    fake, seen = FakeClock(), []
    replay(docs, lambda n, d: seen.append(n), sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == pytest.approx([2.0, 1.5, 1.5])
    assert seen == [name for name, _ in docs]


def test_document_time():
    assert document_time("event_page", {"time": [3.0, 1.0, 2.0]}) == 1.0
    assert document_time("event", {"time": 5}) == 5.0
    assert document_time("datum", {"time": 5}) is None
    assert document_time("event", {"time": "soon"}) is None
    assert document_time("stop", {"time": float("nan")}) is None
    assert document_time("event_page", {"time": []}) is None


@pytest.mark.parametrize("speed", [0, -1.0, float("inf"), float("nan"), "fast", True])
def test_speed_must_be_positive_or_none(cat, speed):
    seen = []
    with pytest.raises(ValueError, match="speed must be a positive number"):
        cat[-1].replay(seen.append, speed=speed)
    assert seen == []


def test_callback_must_be_callable(cat):
    with pytest.raises(TypeError, match="callback"):
        cat[-1].replay("print", speed=None)


def test_run_replay_uses_the_original_timing(cat, monkeypatch):
    fake, seen = FakeClock(), []
    monkeypatch.setattr(
        replay_module, "time", SimpleNamespace(sleep=fake.sleep, monotonic=fake.clock)
    )
    cat[UIDS["failed"]].replay(lambda name, doc: seen.append((name, doc)), speed=4.0)
    # failed: start T0+200, descriptor +0.1, page at +1, stop +3.
    assert fake.sleeps == pytest.approx([0.025, 0.225, 0.5], abs=1e-6)
    assert [n for n, _ in seen] == ["start", "descriptor", "event_page", "stop"]
    assert seen[0][1]["uid"] == UIDS["failed"]
    assert seen[-1][1]["exit_status"] == "fail"


def test_run_replay_fills_external_data(cat):
    seen = []
    cat[UIDS["scan"]].replay(lambda name, doc: seen.append((name, doc)), speed=None)
    page = next(doc for name, doc in seen if name == "event_page")
    assert page["filled"]["ext"] == [True] * 4
    assert page["data"]["ext"][0].shape == (3, 2)
    seen.clear()
    cat[UIDS["scan"]].replay(lambda name, doc: seen.append((name, doc)), speed=None, fill="no")
    page = next(doc for name, doc in seen if name == "event_page")
    assert all(isinstance(v, str) for v in page["data"]["ext"])
    assert T0 == seen[0][1]["time"]
