"""One run of the tap: its accounts, its days, its look-ahead, its STATE pacing, and its stop.

The tap makes one :class:`Run` when it starts syncing; its streams read everything about the run
from it (so that streams never import the tap).
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    from tap_wechat_share.accounts import Account
    from tap_wechat_share.client import WeChatClient
    from tap_wechat_share.dates import Window
    from tap_wechat_share.lookahead import LookAhead


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
        all_app_ids: Every account the settings give, in every shard.
    """

    client: WeChatClient
    accounts: Mapping[str, Account]
    first_day: dt.date
    last_day: dt.date
    latest: dt.date
    lookback_days: int
    state_interval: float
    all_app_ids: frozenset[str] = frozenset()
    lookahead: LookAhead[Task, WindowResult] | None = None
    stop_signal: int | None = None
    """The signal that asked the run to stop, if one did."""
    _last_state: float = field(default_factory=time.monotonic)

    def state_due(self) -> bool:
        """Whether a STATE message is due (the interval has passed); if so, start a new one."""
        now = time.monotonic()
        if now - self._last_state < self.state_interval:
            return False
        self._last_state = now
        return True

    def stopping(self) -> bool:
        """Whether a signal asked the run to stop."""
        return self.stop_signal is not None

    def failed(self) -> list[Account]:
        """The accounts that failed, in the order given."""
        return [account for account in self.accounts.values() if account.failure]
