"""What the run says about itself: progress lines while it reads, and the summary that ends it.

Nothing else writes either; both read the run's counts (see ``run.py``):

- a progress line at INFO for the stream being read, about every ``PROGRESS_INTERVAL`` seconds
  (never more often) and when the stream ends, e.g. ``share_hour: 1,200 of 10,000 accounts,
  3 failed, 21,400 of 180,000 requests, 2,940,112 records, 6 min 10 s, about 48 min left``;
- the summary at the end of every run, one line per stream (accounts read and failed,
  requests and retries, records, duration), then the failed accounts, then why the run stopped
  if it did not end by itself.
"""

from __future__ import annotations

import os
import typing as t

if t.TYPE_CHECKING:
    import logging

    from tap_wechat_share.run import Run, StreamCounts

PROGRESS_INTERVAL = 30.0
"""Seconds between two progress lines of a stream (at least)."""
PROGRESS_INTERVAL_VARIABLE = "TAP_WECHAT_SHARE_PROGRESS_INTERVAL"
"""An environment variable that sets the interval of progress lines, in seconds."""


def progress_interval() -> float:
    """The interval of progress lines: the environment variable's, or ``PROGRESS_INTERVAL``."""
    try:
        seconds = float(os.environ.get(PROGRESS_INTERVAL_VARIABLE, ""))
    except ValueError:
        return PROGRESS_INTERVAL
    return seconds if seconds > 0 else PROGRESS_INTERVAL


def duration(seconds: float) -> str:
    """``42 s``, ``6 min 10 s``, ``2 h 5 min``."""
    whole = round(max(seconds, 0.0))
    if whole < 60:  # noqa: PLR2004 - a minute
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:  # noqa: PLR2004 - an hour
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def estimate(seconds: float) -> str:
    """A rough time left, e.g. ``a few seconds``, ``about 40 s``, ``about 48 min``.

    Args:
        seconds: The time left, as estimated.
    """
    if seconds < 15:  # noqa: PLR2004 - too short to say more
        return "a few seconds"
    if seconds < 60:  # noqa: PLR2004 - a minute
        return f"about {round(seconds / 10) * 10} s"
    if seconds < 3600:  # noqa: PLR2004 - an hour
        return f"about {round(seconds / 60)} min"
    return f"about {duration(seconds)}"


def progress_line(name: str, counts: StreamCounts, now: float) -> str:
    """The progress line of a stream, as of ``now`` (the run's clock)."""
    elapsed = (counts.ended if counts.ended is not None else now) - counts.started
    line = (
        f"{name}: {counts.accounts_done:,} of {counts.accounts:,} accounts, "
        f"{counts.accounts_failed:,} failed, {counts.requests_done:,} of {counts.requests:,} "
        f"requests, {counts.records:,} records, {duration(elapsed)}"
    )
    if counts.ended is not None:
        return f"{line}, done"
    if counts.requests_done and counts.requests > counts.requests_done:
        left = elapsed * (counts.requests - counts.requests_done) / counts.requests_done
        line += f", {estimate(left)} left"
    return line


class Report:
    """Writes the run's progress lines and its summary.

    Args:
        run: The run whose counts it reads.
        logger: Where the lines go (the tap's logger).
        interval: Seconds between two progress lines of a stream; default:
            :func:`progress_interval`.
    """

    def __init__(self, run: Run, logger: logging.Logger, interval: float | None = None) -> None:
        """Start with no line written."""
        self._run = run
        self._logger = logger
        self._interval = progress_interval() if interval is None else interval
        self._last: dict[str, float] = {}

    def tick(self) -> None:
        """Write the progress line of the stream being read if its interval has passed."""
        name = self._run.reading
        if name is None or (counts := self._run.counts.get(name)) is None:
            return
        now = self._run.clock()
        if now - self._last.get(name, counts.started) >= self._interval:
            self._last[name] = now
            self._logger.info("%s", progress_line(name, counts, now))

    def stream_done(self, name: str) -> None:
        """The stream was read to its end: its last progress line."""
        if name not in self._run.counts:
            return
        self._run.end_stream(name)
        self._last[name] = now = self._run.clock()
        self._logger.info("%s", progress_line(name, self._run.counts[name], now))

    def summary(self, streams: list[str], *, unreached: bool) -> None:
        """Write the per-stream lines of the summary (the failed accounts follow: see the tap).

        Args:
            streams: The streams the run was to read, in order.
            unreached: Whether the run stopped because WeChat cannot be reached (accounts that
                failed on network faults then count as not reached, not as failed).
        """
        now = self._run.clock()
        self._logger.info("Summary of the run:")
        for name in streams:
            counts = self._run.counts.get(name)
            if counts is None:
                self._logger.info("  %s: not read (the run stopped before it)", name)
                continue
            read = counts.accounts_done - counts.accounts_failed
            failed = counts.accounts_failed
            not_reached = 0
            if unreached:
                # Those that failed on network faults, and those the run did not get to.
                failed -= counts.accounts_unreached
                not_reached = counts.accounts - read - failed
            end = counts.ended if counts.ended is not None else now
            retries = self._run.client.retries(counts.path)
            words = [
                f"{read:,} of {counts.accounts:,} accounts read",
                f"{failed:,} failed",
            ]
            if name in self._run.retired:
                words = ["stopped for every account: WeChat retired its endpoint (see below)"]
            if not_reached:
                words.append(f"{not_reached:,} not reached")
            line = (
                f"  {name}: {', '.join(words)}; {counts.requests_done:,} "
                f"{'request' if counts.requests_done == 1 else 'requests'} "
                f"({retries:,} {'retry' if retries == 1 else 'retries'}); "
                f"{counts.records:,} records; {duration(end - counts.started)}"
            )
            if counts.ended is None:
                line += "; stopped before its end"
            self._logger.info("%s", line)
