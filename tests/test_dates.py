"""Day arithmetic: the latest published day, the first day a run reads, request windows."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest

from tap_wechat_share.dates import Window, first_day_to_read, latest_published_day, windows
from tests.conftest import freeze_clock

D = dt.date


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # 07:59 in China on 2 May: yesterday (1 May) is not published yet.
        (pendulum.datetime(2024, 5, 2, 7, 59, 59, tz="Asia/Shanghai"), D(2024, 4, 30)),
        (pendulum.datetime(2024, 5, 2, 8, 0, 0, tz="Asia/Shanghai"), D(2024, 5, 1)),
        (pendulum.datetime(2024, 5, 2, 23, 59, tz="Asia/Shanghai"), D(2024, 5, 1)),
        (pendulum.datetime(2024, 5, 2, 0, 0, tz="Asia/Shanghai"), D(2024, 4, 30)),
        # The same instants seen from UTC: 23:59 UTC on 1 May is 07:59 on 2 May in China.
        (pendulum.datetime(2024, 5, 1, 23, 59, tz="UTC"), D(2024, 4, 30)),
        (pendulum.datetime(2024, 5, 2, 0, 0, tz="UTC"), D(2024, 5, 1)),
        # 16:30 UTC on 1 May is already 00:30 on 2 May in China.
        (pendulum.datetime(2024, 5, 1, 16, 30, tz="UTC"), D(2024, 4, 30)),
        # From New York (UTC-4 in May), the evening of 1 May is the morning of 2 May in China.
        (pendulum.datetime(2024, 5, 1, 20, 5, tz="America/New_York"), D(2024, 5, 1)),
    ],
)
def test_latest_published_day_turns_at_0800_china_time(
    instant: pendulum.DateTime, expected: dt.date
) -> None:
    assert latest_published_day(instant) == expected


@pytest.mark.parametrize(
    ("china_time", "expected"), [((7, 59), D(2026, 11, 27)), ((8, 0), D(2026, 11, 28))]
)
def test_latest_published_day_defaults_to_the_clock(
    monkeypatch: pytest.MonkeyPatch, china_time: tuple[int, int], expected: dt.date
) -> None:
    hour, minute = china_time
    freeze_clock(monkeypatch, pendulum.datetime(2026, 11, 29, hour, minute, tz="Asia/Shanghai"))
    assert latest_published_day() == expected


@pytest.mark.parametrize(
    ("bookmark", "lookback", "expected"),
    [
        (None, 3, D(2024, 5, 1)),  # no bookmark: the start date
        (D(2024, 5, 20), 2, D(2024, 5, 19)),  # the 19th and the 20th again
        (D(2024, 5, 20), 1, D(2024, 5, 20)),
        (D(2024, 5, 20), 0, D(2024, 5, 21)),  # the day after the bookmark
        (D(2024, 5, 2), 10, D(2024, 5, 1)),  # never before the start date
        (D(2024, 4, 1), 3, D(2024, 5, 1)),  # a bookmark before a later start date
    ],
)
def test_first_day_to_read(bookmark: dt.date | None, lookback: int, expected: dt.date) -> None:
    assert first_day_to_read(D(2024, 5, 1), bookmark, lookback) == expected


def test_windows_split_17_days_into_7_7_3() -> None:
    plan = list(windows(D(2024, 5, 1), D(2024, 5, 17), 7))
    assert [(w.begin, w.end) for w in plan] == [
        (D(2024, 5, 1), D(2024, 5, 7)),
        (D(2024, 5, 8), D(2024, 5, 14)),
        (D(2024, 5, 15), D(2024, 5, 17)),
    ]
    assert [w.days for w in plan] == [7, 7, 3]


def test_windows_of_one_day_cover_each_day_once_across_month_and_leap_day() -> None:
    plan = list(windows(D(2024, 2, 27), D(2024, 3, 2), 1))
    assert [w.begin for w in plan] == [
        D(2024, 2, 27),
        D(2024, 2, 28),
        D(2024, 2, 29),
        D(2024, 3, 1),
        D(2024, 3, 2),
    ]
    assert all(w.begin == w.end for w in plan)


def test_no_windows_when_first_is_after_last() -> None:
    assert list(windows(D(2024, 5, 2), D(2024, 5, 1), 7)) == []


def test_window_contains_and_renders() -> None:
    window = Window(D(2024, 5, 1), D(2024, 5, 7))
    assert D(2024, 5, 7) in window
    assert D(2024, 5, 8) not in window
    assert str(window) == "2024-05-01..2024-05-07"
    assert str(Window(D(2024, 5, 1), D(2024, 5, 1))) == "2024-05-01"
