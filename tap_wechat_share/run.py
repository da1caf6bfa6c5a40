"""One run of the tap: its accounts, its days, its look-ahead, its STATE pacing, and its counts.

The tap makes one :class:`Run` when it starts syncing; its streams read everything about the run
from it (so that streams never import the tap).
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Mapping

    from tap_wechat_share.accounts import Account
    from tap_wechat_share.client import WeChatClient
    from tap_wechat_share.dates import Window
    from tap_wechat_share.lookahead import LookAhead


STATE_BUDGET_FACTOR = 10
STATE_BUDGET_FLOOR = 1024 * 1024
"""Paced STATE messages add up to at most FACTOR x the latest one's size + FLOOR bytes."""


class Task(t.NamedTuple):
    """One request of a run: a stream's window of days for one account."""

    stream: str
    app_id: str
    window: Window


class WindowResult(t.NamedTuple):
    """A window's checked records, and the last day of it that counts as read (if any)."""

    records: list[dict[str, t.Any]]
    read_through: dt.date | None
    """The bookmark may move to this day; None: no day of the window counts as read yet."""
    delayed: bool = False
    """WeChat said (``is_delay``) that the window's figures are not final yet."""


@dataclass
class StreamCounts:
    """How far one stream of the run has got: what progress lines and the summary say.

    Kept by the stream on the main thread (see ``DatacubeStream.get_records``).
    """

    path: str
    """The endpoint's path (the client counts retries per path)."""
    accounts: int
    """The run's accounts."""
    requests: int
    """The requests the run makes in this stream (one per window); those an account that
    fails no longer makes are taken off."""
    started: float
    """When the stream began to be read (the run's clock)."""
    accounts_done: int = 0
    accounts_failed: int = 0
    """Accounts not read in this stream: failed here, or earlier in the run."""
    accounts_unreached: int = 0
    """Of ``accounts_failed``, those that failed only on network faults (see client.py)."""
    requests_done: int = 0
    records: int = 0
    ended: float | None = None
    """When the stream was read to its end (None while it is read, or if the run stopped)."""


@dataclass
class Run:
    """What one run of the tap knows, shared by its streams.

    Args:
        client: The HTTP client every request of the run goes through.
        accounts: The accounts of this run (this shard's), by app_id, in the order given.
        first_day: The first day any account reads (start_date, clamped).
        last_day: The last day to read (end_date, clamped to ``latest``).
        latest: The latest day WeChat has published when the run began.
        lookback_days: Days up to and including a bookmark that are read again.
        state_interval: Seconds between STATE messages (0: after every window).
        state_sizes: The bytes of STATE written so far in the run, and of the latest one.
        all_app_ids: Every account the settings give, in every shard.
    """

    client: WeChatClient
    accounts: Mapping[str, Account]
    first_day: dt.date
    last_day: dt.date
    latest: dt.date
    lookback_days: int
    state_interval: float
    state_sizes: Callable[[], tuple[int, int]] = lambda: (0, 0)
    all_app_ids: frozenset[str] = frozenset()
    lookahead: LookAhead[Task, WindowResult] | None = None
    retired: dict[str, str] = field(default_factory=dict)
    """Streams whose endpoint WeChat has retired in this run: name -> the line for the summary."""
    _last_state: float = field(default_factory=time.monotonic)
    counts: dict[str, StreamCounts] = field(default_factory=dict)
    """The streams begun so far, in the order they were read."""
    reading: str | None = None
    """The stream being read."""
    unreached: set[str] = field(default_factory=set)
    """Accounts that failed only because WeChat's host gave no answer (see client.py)."""
    on_progress: Callable[[], None] = lambda: None
    """Called on the main thread after each window and while it waits (the progress lines)."""
    on_stream_end: Callable[[str], None] = lambda _name: None
    """Called when a stream has been read to its end (its last progress line)."""
    clock: Callable[[], float] = time.monotonic
    """The clock of the counts (injectable for tests)."""

    def begin_stream(self, name: str, path: str, requests: int) -> StreamCounts:
        """Start counting a stream that makes ``requests`` requests; it is now the one read."""
        counts = StreamCounts(path, len(self.accounts), requests, started=self.clock())
        self.counts[name] = counts
        self.reading = name
        return counts

    def end_stream(self, name: str) -> None:
        """The stream was read to its end."""
        if (counts := self.counts.get(name)) is not None and counts.ended is None:
            counts.ended = self.clock()
            # What was not made by now never will be (a retired endpoint, failed accounts).
            counts.requests = counts.requests_done
        if self.reading == name:
            self.reading = None

    def state_due(self) -> bool:
        """Whether a STATE message is due; if so, a new interval starts.

        It is due when ``state_interval`` has passed, and the STATE messages written so far add
        up to at most ``STATE_BUDGET_FACTOR`` times the latest one (plus a MiB). The state only
        grows during a run, so the paced STATE messages of a run add up to at most about ten
        times its final state, however long the run: with thousands of accounts a STATE every
        few seconds would otherwise be most of what the tap writes. Past that, the interval
        stretches until the state has grown; a small state (a few accounts) never reaches it.
        """
        now = time.monotonic()
        if now - self._last_state < self.state_interval:
            return False
        written, latest = self.state_sizes()
        if written > STATE_BUDGET_FACTOR * latest + STATE_BUDGET_FLOOR:
            return False
        self._last_state = now
        return True

    def failed(self) -> list[Account]:
        """The accounts that failed, in the order given."""
        return [account for account in self.accounts.values() if account.failure]
