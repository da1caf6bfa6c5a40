"""Several datacube requests in flight: the output of one at a time, a bound, one token renewal."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest

from tap_wechat_share.lookahead import POLL_SECONDS
from tests.conftest import TODAY, article_rows, bookmark, daily_rows, days, hourly_rows, sync
from tests.emulator import Call, Fault, WeChatEmulator

HOURLY = "/datacube/getusersharehour"
ARTICLE = "/datacube/getarticleshare"
DAILY = "/datacube/getusershare"
STABLE = "/cgi-bin/stable_token"
FIRST, LAST = "2026-10-01", "2026-11-09"  # 40 days


def max_overlap(calls: list[Call]) -> int:
    """The most calls the emulator was answering at one moment (from their start and end)."""
    # At equal times an end (-1) sorts before a start (+1): calls that only touch do not overlap.
    events = sorted([(c.started, 1) for c in calls] + [(c.finished, -1) for c in calls])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def without_time_extracted(messages: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [{k: v for k, v in m.items() if k != "time_extracted"} for m in messages]


def collapse(values: list[str | None]) -> list[str | None]:
    """``values`` without consecutive repeats."""
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def test_max_overlap_counts_simultaneous_calls() -> None:
    def call(started: float, finished: float) -> Call:
        return Call(HOURLY, None, None, None, None, "ok", started, finished)

    assert max_overlap([]) == 0
    assert max_overlap([call(0, 1), call(1, 2), call(2, 3)]) == 1
    assert max_overlap([call(0, 3), call(1, 2), call(1.5, 4), call(3.5, 5)]) == 3


def test_concurrent_runs_emit_exactly_what_a_sequential_run_emits(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.latency = 0.003
    # A STATE after every window, so that the comparison covers where each one falls.
    forty = config | {"start_date": FIRST, "end_date": LAST, "state_message_interval": 0}
    sequential = sync(forty | {"max_concurrent_requests": 1})
    assert sequential.exit_code == 0
    assert sequential.records("share_hour") == hourly_rows(emulator, FIRST, LAST)
    assert max_overlap(emulator.calls_to(HOURLY)) == 1
    # A STATE after each day, naming it: the bookmark steps through the 40 days in order
    # (share_day is read first: its STATE messages have no share_hour bookmark yet).
    marks = collapse([bookmark(state, "share_hour") for state in sequential.states])
    assert marks == [None, *days(FIRST, LAST)]
    expected = without_time_extracted(sequential.messages)

    for in_flight in (3, 8):
        emulator.reset_calls()
        # Some days answered late, so that the days after them are answered first.
        for day in ("2026-10-02", "2026-10-10", "2026-10-11", "2026-11-01"):
            emulator.add_fault(Fault("delay", path=HOURLY, day=day, delay=0.04))
        concurrent = sync(forty | {"max_concurrent_requests": in_flight})
        assert concurrent.exit_code == 0
        calls = emulator.calls_to(HOURLY)
        assert max_overlap(calls) > 1, "the requests did not overlap"
        answered = [c.begin_date for c in sorted(calls, key=lambda c: c.finished)]
        assert answered != days(FIRST, LAST), "the answers came in day order anyway"
        # Every message, RECORD and STATE alike, the same and in the same order.
        assert without_time_extracted(concurrent.messages) == expected
        records = [m for m in concurrent.messages if m["type"] == "RECORD"]
        assert all(
            dt.datetime.fromisoformat(m["time_extracted"]).utcoffset() == dt.timedelta(0)
            for m in records
        )


@pytest.mark.parametrize("in_flight", [3, 8])
def test_requests_in_flight_reach_the_setting_and_never_exceed_it(
    emulator: WeChatEmulator, config: dict[str, t.Any], in_flight: int
) -> None:
    emulator.latency = 0.05
    out = sync(
        config | {"start_date": FIRST, "end_date": LAST, "max_concurrent_requests": in_flight}
    )
    assert out.exit_code == 0
    calls = emulator.calls_to(HOURLY)
    assert sorted(c.begin_date or "" for c in calls) == days(FIRST, LAST)  # one call per day
    assert max_overlap(calls) == in_flight
    assert 1 < max_overlap(emulator.calls_to(DAILY)) <= in_flight  # six windows of 7 days
    assert len(emulator.calls_to(STABLE)) == 1


def test_the_connection_pool_holds_more_requests_in_flight_than_its_default_of_ten(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.latency = 0.05
    out = sync(config | {"start_date": FIRST, "end_date": LAST, "max_concurrent_requests": 16})
    assert out.exit_code == 0
    # No connection is opened for one request and thrown away (urllib3 warns when it does).
    assert "Connection pool is full" not in caplog.text


def test_simultaneous_refusals_of_the_token_lead_to_one_renewal(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.latency = 0.02
    # The first stream the run reads (article_share: the SDK reads streams by name) is the one
    # whose first requests go out together. The first day's answer invalidates the token (as
    # another service's force_refresh would) and refuses it. Days 2 to 5 went out with the same
    # token at the same time; they are answered later, so they are refused too.
    emulator.add_fault(Fault("rotate", path=ARTICLE, day="2026-11-01"))
    for day in range(2, 6):
        emulator.add_fault(Fault("delay", path=ARTICLE, day=f"2026-11-{day:02d}", delay=0.15))
    out = sync(config | {"max_concurrent_requests": 8})
    assert out.exit_code == 0
    assert out.records("article_share") == article_rows(emulator, "2026-11-01", "2026-11-10")
    refused = [c for c in emulator.calls_to(ARTICLE) if c.outcome == "errcode 40001"]
    assert len(refused) >= 5
    assert max_overlap(refused) >= 5, "the refusals were not simultaneous"
    assert len(emulator.calls_to(STABLE)) == 2  # the first token, and one renewal
    answered = sorted(c.begin_date or "" for c in emulator.calls_to(ARTICLE) if c.outcome == "ok")
    assert answered == days("2026-11-01", "2026-11-10")


@pytest.mark.parametrize("in_flight", [1, 4])
def test_answers_slower_than_the_look_ahead_poll_give_every_row(
    emulator: WeChatEmulator, config: dict[str, t.Any], in_flight: int
) -> None:
    # WeChat answers in 100 to 300 ms: longer than the look-ahead's poll, so the reader waits
    # through several polls for each window (before Python 3.11 a poll that ran out raised
    # concurrent.futures.TimeoutError, and every account failed with it).
    emulator.latency = 2.5 * POLL_SECONDS
    out = sync(config | {"end_date": "2026-11-02", "max_concurrent_requests": in_flight})
    assert out.exit_code == 0
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-02")
    assert out.records("share_day") == daily_rows(emulator, "2026-11-01", "2026-11-02")
    assert bookmark(out.final_state, "share_hour") == "2026-11-02"


def test_a_retired_endpoint_leaves_the_next_stream_all_its_requests_in_flight() -> None:
    # share_day (read before share_hour) is retired: the look-ahead holds share_day windows of
    # accounts not reached yet. Dropped, they leave room for share_hour's requests.
    apps = {f"wx{n:016d}": f"secret-of-{n:05d}-0123456789" for n in range(1, 41)}
    with WeChatEmulator(apps, today=TODAY) as emu:
        emu.latency = 0.02
        emu.retire(DAILY)
        accounts = [{"app_id": a, "access_token": emu.issue_token(a)} for a in apps]
        out = sync(
            {
                "accounts": accounts,
                "start_date": "2026-11-01",
                "end_date": "2026-11-04",
                "api_url": emu.url,
                "max_concurrent_requests": 8,
            }
        )
        assert out.exit_code == 1  # the retirement is named at the end
        assert len(out.records("share_hour")) == sum(
            len(hourly_rows(emu, "2026-11-01", "2026-11-04", a)) for a in apps
        )
        assert max_overlap(emu.calls_to(HOURLY)) == 8
        assert len(emu.calls_to(DAILY)) <= 16  # only those fetched ahead (depth: 2 x 8)
