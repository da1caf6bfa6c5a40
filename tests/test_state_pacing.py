"""STATE pacing (``Run.state_due``) on a clock of the test's own: both of its bounds, in runs
whose state grows (a fresh run) and whose state does not (a daily run over existing bookmarks).

A simulated run: windows one after another, each taking ``seconds`` and writing ``record_bytes``
of RECORD lines; when ``state_due`` says so, a STATE of the state's current size is written. The
bounds checked are the docstring's: the gap between STATE messages is at most
``max(interval, S / STATE_RATE)`` plus one window, and paced STATE larger than ``STATE_FLOOR``
adds up to at most a quarter of the other bytes + ``STATE_RATE`` x the run's seconds + the final
state.
"""

from __future__ import annotations

import datetime as dt
import itertools
import typing as t
from dataclasses import dataclass, field

import pytest

from tap_wechat_share.run import STATE_FLOOR, STATE_RATE, STATE_SHARE, Output, Run

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_wechat_share.client import WeChatClient


@dataclass
class Simulation:
    """What a simulated run wrote, and when."""

    clock: float = 0.0
    total: int = 0
    state: int = 0
    last_state: int = 0
    times: list[float] = field(default_factory=list)
    """When each STATE was written (the run starts at 0)."""
    sizes: list[int] = field(default_factory=list)

    def output(self) -> Output:
        return Output(self.state, self.last_state, self.total)

    def write_state(self, size: int, *, paced: bool = True) -> None:
        if paced:
            self.times.append(self.clock)
            self.sizes.append(size)
        self.state += size
        self.last_state = size
        self.total += size

    def max_gap(self) -> float:
        """The longest time without a STATE: from the start, between two, and to the end."""
        marks = [0.0, *self.times, self.clock]
        return max(b - a for a, b in itertools.pairwise(marks))


def simulate(
    monkeypatch: pytest.MonkeyPatch,
    *,
    windows: int,
    seconds: float,
    record_bytes: int,
    state_size: Callable[[int], int],
    interval: float,
    initial_state: int = 0,
) -> Simulation:
    """Run ``windows`` windows through ``Run.state_due`` on a simulated clock and output."""
    sim = Simulation()
    monkeypatch.setattr(Run, "clock", staticmethod(lambda: sim.clock))
    run = Run(
        client=t.cast("WeChatClient", None),
        accounts={},
        first_day=dt.date(2026, 11, 1),
        last_day=dt.date(2026, 11, 1),
        latest=dt.date(2026, 11, 1),
        lookback_days=0,
        state_interval=interval,
        output=sim.output,
    )
    if initial_state:  # the state the run starts from, as the SDK writes it before any record
        sim.write_state(initial_state, paced=False)
    for window in range(windows):
        sim.clock += seconds
        sim.total += record_bytes
        if run.state_due():
            sim.write_state(state_size(window))
    return sim


def check_bounds(sim: Simulation, interval: float, seconds: float) -> None:
    largest = max(sim.sizes)
    assert sim.max_gap() <= max(interval, largest / STATE_RATE) + seconds + 1e-9
    paced = sum(size for size in sim.sizes if size > STATE_FLOOR)
    others = sim.total - sim.state
    assert paced <= others / 4 + STATE_RATE * sim.clock + sim.sizes[-1]


def test_a_daily_run_over_existing_bookmarks_keeps_writing_state_to_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10,000 accounts' state (3.3 MB) that does not grow; a window every 10 ms writing 2 KB.
    # The budget this replaces (10x the latest + 1 MiB) wrote 11 STATE messages, then none.
    size = 3_300_000
    sim = simulate(
        monkeypatch,
        windows=30_000,
        seconds=0.01,
        record_bytes=2_000,
        state_size=lambda _: size,
        interval=5,
        initial_state=size,
    )
    check_bounds(sim, 5, 0.01)
    assert sim.max_gap() <= size / STATE_RATE + 0.01  # about 12.6 s in a 300 s run
    assert len(sim.times) > 20  # all the way through, not only at its start


def test_a_run_that_writes_no_records_still_writes_state_by_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Days without rows move bookmarks too: nothing but STATE is written.
    sim = simulate(
        monkeypatch,
        windows=5_000,
        seconds=0.02,
        record_bytes=0,
        state_size=lambda _: 500_000,
        interval=1,
        initial_state=500_000,
    )
    check_bounds(sim, 1, 0.02)
    assert sim.max_gap() == pytest.approx(500_000 / STATE_RATE, abs=0.03)


def test_a_fresh_run_whose_state_grows_stays_within_both_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10,000 accounts read in three streams: 110 bytes more state per window.
    sim = simulate(
        monkeypatch,
        windows=30_000,
        seconds=0.004,
        record_bytes=1_500,
        state_size=lambda window: 110 * (window + 1),
        interval=5,
    )
    check_bounds(sim, 5, 0.004)


def test_when_records_pour_out_state_is_due_by_output_at_each_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 100 KB of records per window: STATE (100 KB) is a small share whatever the interval.
    sim = simulate(
        monkeypatch,
        windows=1_000,
        seconds=0.01,
        record_bytes=100_000,
        state_size=lambda _: 100_000,
        interval=0.5,
        initial_state=100_000,
    )
    check_bounds(sim, 0.5, 0.01)
    assert sim.max_gap() == pytest.approx(0.5, abs=0.011)
    assert sim.state - 100_000 <= STATE_SHARE * sim.total


def test_a_small_state_is_written_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = simulate(
        monkeypatch,
        windows=40,
        seconds=0.25,
        record_bytes=300,
        state_size=lambda _: 400,
        interval=1,
    )
    assert sim.times == pytest.approx([n * 1.0 for n in range(1, 11)])


def test_with_interval_0_a_small_state_follows_every_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A few accounts, windows with few rows, on a clock that does not move: a STATE after each
    # window as asked, the same in every run (no rule by time or by output decides it).
    sim = simulate(
        monkeypatch,
        windows=50,
        seconds=0,
        record_bytes=100,
        state_size=lambda _: STATE_FLOOR,
        interval=0,
    )
    assert len(sim.times) == 50
