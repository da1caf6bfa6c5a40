"""China dates: the latest published day, the range a run reads, and its request windows.

WeChat's datacube dates are China dates. The timezone is not documented; Asia/Shanghai (UTC+8) is
the working assumption, and the only one that matches the "query yesterday's data after 8:00" rule.
"""

from __future__ import annotations

import datetime as dt
import typing as t
from dataclasses import dataclass

import pendulum

if t.TYPE_CHECKING:
    from collections.abc import Iterator

CHINA_TZ = "Asia/Shanghai"
FIRST_DATA_DAY = dt.date(2014, 12, 1)
"""WeChat's datacube data begins on this day."""
PUBLICATION_HOUR = 8
"""Yesterday's data is published at about 08:00 China time."""


def latest_published_day(now: dt.datetime | None = None) -> dt.date:
    """Return the latest day whose data WeChat has published.

    That is yesterday in China once it is 08:00 or later there, and the day before yesterday until
    then.

    Args:
        now: The current instant (timezone-aware); defaults to the clock.

    Returns:
        The latest published China date.
    """
    china_now = pendulum.instance(now).in_tz(CHINA_TZ) if now else pendulum.now(CHINA_TZ)
    days_back = 1 if china_now.hour >= PUBLICATION_HOUR else 2
    return china_now.date() - dt.timedelta(days=days_back)


@dataclass(frozen=True, order=True)
class Window:
    """An inclusive range of China days asked of the API in one request."""

    begin: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        """Number of days in the window, both ends included."""
        return (self.end - self.begin).days + 1

    def __contains__(self, day: object) -> bool:
        """Whether a date lies within the window."""
        return isinstance(day, dt.date) and self.begin <= day <= self.end

    def __str__(self) -> str:
        """Render as ``YYYY-MM-DD`` or ``YYYY-MM-DD..YYYY-MM-DD``."""
        if self.begin == self.end:
            return self.begin.isoformat()
        return f"{self.begin.isoformat()}..{self.end.isoformat()}"


def first_day_to_read(
    start_date: dt.date,
    bookmark: dt.date | None,
    lookback_days: int,
) -> dt.date:
    """Return the first day a run reads.

    Without a bookmark that is the start date. With one, the run reads again the ``lookback_days``
    days up to and including the bookmark (lookback 2 after a bookmark on the 20th: the 19th and
    the 20th); lookback 0 resumes with the day after it. Never earlier than the start date.

    Args:
        start_date: The configured first day.
        bookmark: The last day a previous run read completely, if any.
        lookback_days: How many days up to the bookmark to read again.

    Returns:
        The first day to read.
    """
    if bookmark is None:
        return start_date
    return max(start_date, bookmark - dt.timedelta(days=lookback_days - 1))


def windows(first: dt.date, last: dt.date, max_days: int) -> Iterator[Window]:
    """Split ``first..last`` into consecutive windows of at most ``max_days`` days, in order.

    Args:
        first: The first day, included.
        last: The last day, included.
        max_days: The endpoint's maximum span.

    Yields:
        The windows, ascending; none if ``first`` is after ``last``.
    """
    step = dt.timedelta(days=max_days)
    begin = first
    while begin <= last:
        end = min(begin + step - dt.timedelta(days=1), last)
        yield Window(begin, end)
        begin = end + dt.timedelta(days=1)
