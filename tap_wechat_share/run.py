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


STATE_SHARE = 0.2
"""Paced STATE is due by output when it would be at most this share of what was written since the
last one (itself included)."""
STATE_RATE = 256 * 1024
"""Bytes per second: paced STATE is due anyway once the last STATE's size / this has passed."""
STATE_FLOOR = 8 * 1024
"""A STATE of at most this many bytes (a few dozen accounts) is due at every interval."""


class Output(t.NamedTuple):
    """What the tap has written so far in the run, in bytes (see :meth:`Run.state_due`)."""

    state: int
    """Bytes of STATE messages."""
    last_state: int
    """Bytes of the latest STATE message."""
    total: int
    """Bytes of every message (RECORD, STATE, SCHEMA, ...)."""


QUIET_ABOVE_ACCOUNTS = 10
"""Above this many accounts, no line per account or partition at INFO (they go to DEBUG)."""


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
        output: What the tap has written so far in the run (bytes of STATE, of the latest
            STATE, of everything).
        all_app_ids: Every account the settings give, in every shard.
    """

    client: WeChatClient
    accounts: Mapping[str, Account]
    first_day: dt.date
    last_day: dt.date
    latest: dt.date
    lookback_days: int
    state_interval: float
    output: Callable[[], Output] = lambda: Output(0, 0, 0)
    all_app_ids: frozenset[str] = frozenset()
    lookahead: LookAhead[Task, WindowResult] | None = None
    retired: dict[str, str] = field(default_factory=dict)
    """Streams whose endpoint WeChat has retired in this run: name -> the line for the summary."""
    _last_state: float = field(init=False)
    _others_at_last: int = field(init=False, default=0)
    """Bytes of messages other than STATE written when the last paced STATE was due."""
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

    @staticmethod
    def clock() -> float:
        """Seconds: for STATE pacing and the counts (tests replace it with a clock of their own)."""
        return time.monotonic()

    def __post_init__(self) -> None:
        """The first interval starts when the run is made."""
        self._last_state = self.clock()

    @property
    def quiet(self) -> bool:
        """Whether lines about one account go to DEBUG: the run has many accounts.

        One line per account is useful for a few accounts, noise for thousands. Warnings and
        errors about one account keep their level, except an account's failure on network faults
        (one fault that every account meets: the summary counts them).
        """
        return len(self.accounts) > QUIET_ABOVE_ACCOUNTS

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
        """Whether a paced STATE message is due; if so, a new interval starts.

        Asked after each window that moves a bookmark. With ``S`` the size of the latest STATE
        message, it is due when ``state_interval`` has passed since the last one and either

        - (small) ``S`` is at most ``STATE_FLOOR`` (8 KiB: a few dozen accounts); or
        - (by output) one more STATE of size ``S`` would be at most ``STATE_SHARE`` (a fifth)
          of what it and the other messages written since the last one add up to: those
          others are at least ``4 x S`` bytes; or
        - (by time) ``S / STATE_RATE`` seconds have passed since the last one (``STATE_RATE``:
          256 KiB a second; 17 s for the 4.4 MB state of 10,000 accounts in four streams).

        The two bounds that follow hold for any run, whatever the state's size and whether it
        grows (a fresh run) or not (a daily run over existing bookmarks):

        - **Time**: the gap between two STATE messages is at most ``max(state_interval,
          S / STATE_RATE)``, plus the time until the next window that moves a bookmark is
          written. It grows with the state, linearly, never to the end of the stream.
        - **Bytes**: with ``R`` the bytes of every other message the run writes and ``T`` its
          seconds, the paced STATE messages of a state larger than ``STATE_FLOOR`` add up to
          at most ``R / 4 + STATE_RATE x T + the final state`` (the state may grow between the
          estimate ``S`` and the STATE written). So while the other messages go out at
          ``4 x STATE_RATE`` (1 MiB) a second or more, paced STATE is at most about a third of
          all output (``R / 2`` against ``R``) plus the final state; a slower run writes less
          than ``STATE_RATE`` of it a second. Besides them, one STATE ends each stream. A state
          of at most ``STATE_FLOOR`` is written every ``state_interval`` (with 0, after every
          window: a few accounts, as asked).
        """
        now = self.clock()
        elapsed = now - self._last_state
        if elapsed < self.state_interval:
            return False
        written = self.output()
        others = written.total - written.state
        size = written.last_state
        if (
            size > STATE_FLOOR
            and size > STATE_SHARE * (size + others - self._others_at_last)
            and elapsed * STATE_RATE < size
        ):
            return False
        self._last_state = now
        self._others_at_last = others
        return True

    def failed(self) -> list[Account]:
        """The accounts that failed, in the order given."""
        return [account for account in self.accounts.values() if account.failure]
