"""FairShare: slots shared between models, the least used model first."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tfhf.serving.model_server import sharing
from tfhf.serving.model_server.sharing import FairShare


class Clock:
    """A stand-in for time.perf_counter that moves only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(sharing.time, "perf_counter", fake)
    return fake


def hold(share: FairShare, model: str, order: list, release: threading.Event) -> threading.Thread:
    """A thread that takes `model`'s turn, notes it in `order`, and holds it until `release`."""

    def run():
        with share.turn(model):
            order.append(model)
            release.wait()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition) -> None:
    for _ in range(400):
        if condition():
            return
        threading.Event().wait(0.005)
    raise AssertionError("condition never held")


def test_a_flooded_model_keeps_to_its_share_and_another_model_starts_at_once(clock):
    share = FairShare(capacity=4, models=lambda: 2)
    order, release = [], threading.Event()
    flood = [hold(share, "lm", order, release) for _ in range(10)]
    wait_until(lambda: share.running("lm") == 2)
    assert order == ["lm", "lm"]  # two of four slots: the other two kept for classify
    classify = hold(share, "classify", order, release)
    wait_until(lambda: share.running("classify") == 1)
    assert share.running("lm") == 2
    release.set()
    for thread in [*flood, classify]:
        thread.join(5)
    assert share.running("lm") == share.running("classify") == 0


def test_a_freed_slot_goes_to_the_waiting_model_that_has_used_the_least_time(clock):
    share = FairShare(capacity=1, models=lambda: 2)
    with share.turn("lm"):
        clock.now += 10.0  # lm has used 10 s
    with share.turn("classify"):
        clock.now += 1.0  # classify 1 s
    order, first = [], threading.Event()
    blocker = hold(share, "other", order, first)
    wait_until(lambda: order == ["other"])
    later = threading.Event()
    waiting = [hold(share, "lm", order, later), hold(share, "classify", order, later)]
    wait_until(lambda: len(share._waiting) == 2)
    first.set()
    wait_until(lambda: len(order) == 2)
    assert order[1] == "classify"  # it came last but has used less
    later.set()
    for thread in [blocker, *waiting]:
        thread.join(5)


def test_a_model_waking_from_idle_cannot_spend_time_saved_up_while_idle(clock):
    share = FairShare(capacity=1, models=lambda: 2)
    release = threading.Event()
    order = []
    busy = hold(share, "lm", order, release)
    wait_until(lambda: order == ["lm"])
    clock.now += 100.0
    release.set()
    busy.join(5)  # lm has used 100 s; classify was idle all along
    gate = threading.Event()
    holder = hold(share, "lm", order, gate)
    wait_until(lambda: len(order) == 2)
    # classify wakes while lm is busy: it starts level with lm, not 100 s behind.
    waiter = threading.Thread(target=lambda: share.turn("classify").__enter__(), daemon=True)
    waiter.start()
    wait_until(lambda: "classify" in share._waiting)
    assert share._used["classify"] == share._used["lm"] == 100.0
    gate.set()
    holder.join(5)


def test_an_async_turn_cancelled_while_waiting_leaves_the_queue(clock):
    share = FairShare(capacity=1)

    async def scenario():
        with share.turn("a"):
            waiting = asyncio.ensure_future(_take(share, "a"))
            await asyncio.sleep(0.05)
            assert "a" in share._waiting
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert "a" not in share._waiting
        assert share.running("a") == 0
        assert await _take(share, "a") == 1  # the slot is free again

    asyncio.run(scenario())


async def _take(share: FairShare, model: str) -> int:
    async with share.turn_async(model):
        return share.running(model)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be positive"):
        FairShare(0)
