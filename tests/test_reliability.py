"""Transient faults, odd answers and crashes: no row lost or loaded twice, failures said plainly."""

from __future__ import annotations

import copy
import datetime as dt
import re
import typing as t

import pytest

from tap_wechat_share import client as client_module
from tap_wechat_share.client import seconds_to_next_minute
from tests.conftest import (
    APP_ID,
    APP_SECRET,
    TapOutput,
    article_rows,
    biz_rows,
    bookmark,
    daily_rows,
    hourly_rows,
    key_of,
    killed_after_states,
    run_tap,
    sync,
)
from tests.emulator import Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from pathlib import Path

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
STABLE = "/cgi-bin/stable_token"


def test_twenty_days_with_every_transient_fault_and_odd_row_load_exactly_once_without_secrets(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path
) -> None:
    """Issue 4's acceptance run: every fault at once, the real CLI, DEBUG logging."""
    faults = [
        Fault("errcode", path=HOURLY, day="2026-10-02", errcode=-1, times=2),
        Fault("http", path=HOURLY, day="2026-10-04", status=502),
        Fault("http", path=HOURLY, day="2026-10-05", status=503, times=2),
        Fault("reset", path=HOURLY, day="2026-10-07"),
        Fault("html", path=HOURLY, day="2026-10-09"),
        Fault("rotate", path=HOURLY, day="2026-10-11"),
        Fault("stray", path=HOURLY, day="2026-10-12"),
        Fault("duplicate", path=HOURLY, day="2026-10-14"),
        Fault("duplicate", path=HOURLY, day="2026-10-15"),
        Fault("http", path=HOURLY, day="2026-10-16", status=429),
        Fault("reset", path=DAILY, day="2026-10-08"),
        Fault("stray", path=DAILY, day="2026-10-15"),
        Fault("errcode", path=DAILY, day="2026-10-01", errcode=-1),
        Fault("reset", path=STABLE),
    ]
    for fault in faults:
        emulator.add_fault(fault)
    config |= {"start_date": "2026-10-01", "end_date": "2026-10-20", "max_concurrent_requests": 4}
    out = run_tap(config, tmp_path, log_level="DEBUG")
    assert out.exit_code == 0, out.stderr[-3000:]
    assert out.records("share_hour") == hourly_rows(emulator, "2026-10-01", "2026-10-20")
    assert out.records("share_day") == daily_rows(emulator, "2026-10-01", "2026-10-20")
    keys = [key_of(r) for r in out.records()]
    assert len(keys) == len(set(keys))
    assert bookmark(out.final_state, "share_hour") == "2026-10-20"
    assert "dropped 2 row(s) dated outside the requested days" in out.stderr
    assert "exact duplicate" in out.stderr
    outcomes = {c.outcome for c in emulator.calls}
    assert {"errcode -1", "http 502", "http 503", "http 429", "reset", "html"} <= outcomes
    assert len([c for c in emulator.calls_to(STABLE) if c.outcome == "ok"]) == 2  # one renewal
    secrets = {APP_SECRET} | {c.token for c in emulator.calls if c.token}
    assert len(secrets) >= 3  # the secret, the first token and the one after rotation
    assert "access_token=<redacted>" in out.stderr  # urllib3 logged the URLs, redacted
    for secret in secrets:
        assert secret not in out.stdout
        assert secret not in out.stderr


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("bad_hour", "ref_hour=1250, not one of 0, 100, ..., 2300"),
        ("negative", "share_count=-3, a negative count"),
        ("missing_key", "a row has no share_scene"),
    ],
)
def test_impossible_rows_stop_the_account_and_load_nothing_of_that_day(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    message: str,
) -> None:
    emulator.add_fault(Fault(kind, path=HOURLY, day="2026-11-04"))
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 1
    assert message in caplog.text
    assert "2026-11-04" in caplog.text
    assert {r["ref_date"] for r in out.records("share_hour")} <= {
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    }
    assert bookmark(out.final_state, "share_hour") == "2026-11-03"


def test_answer_without_a_list_is_retried_then_fails_naming_the_day(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault(Fault("no_list", path=HOURLY, day="2026-11-02", times=-1))
    out = sync(config | {"max_concurrent_requests": 1, "max_tries": 3})
    assert out.exit_code == 1
    assert len([c for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-02"]) == 3
    assert "share_hour 2026-11-02: gave up after 3 tries" in caplog.text
    assert "answer has no 'list' and no errcode" in caplog.text


def test_one_answer_without_a_list_is_retried_and_the_day_loads(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.add_fault(Fault("no_list", path=HOURLY, day="2026-11-02"))
    out = sync(config)
    assert out.exit_code == 0
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")


def test_each_retry_is_logged_with_the_fault_the_try_and_the_wait(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault(Fault("http", path=HOURLY, day="2026-11-02", status=502))
    out = sync(config | {"max_concurrent_requests": 1, "max_tries": 3, "end_date": "2026-11-02"})
    assert out.exit_code == 0
    [line] = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    fault = (
        "HTTP 502, text/html: '<html> <head><title>502 Bad Gateway</title></head> <body> "
        "<center><h1>502 Bad Gateway</h1></center> <hr><center>ngin'"
    )
    # The wait is random (full jitter): its figure is not pinned.
    expected = re.escape(f"{APP_ID} share_hour 2026-11-02: {fault}; try 1 of 3, retrying in ")
    assert re.fullmatch(expected + r"\d+\.\d s", line), line


def test_timeouts_are_retried(emulator: WeChatEmulator, config: dict[str, t.Any]) -> None:
    emulator.add_fault(Fault("delay", path=HOURLY, day="2026-11-03", delay=2.5))
    out = sync(config | {"request_timeout": 1, "end_date": "2026-11-04"})
    assert out.exit_code == 0
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-04")
    assert len([c for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-03"]) == 2


def test_retries_are_bounded_and_the_last_error_is_named(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault(Fault("http", path=HOURLY, day="2026-11-02", status=502, times=-1))
    out = sync(config | {"max_tries": 3, "max_concurrent_requests": 1})
    assert out.exit_code == 1
    assert len([c for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-02"]) == 3
    assert "share_hour 2026-11-02: gave up after 3 tries; last error: HTTP 502" in caplog.text


def test_minute_quota_waits_for_the_next_minute_and_goes_on(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real wait is up to a minute; the rule itself is tested below on a frozen clock.
    monkeypatch.setattr(client_module, "seconds_to_next_minute", lambda: 0.2)
    emulator.add_fault(
        Fault(
            "errcode",
            path=HOURLY,
            day="2026-11-02",
            errcode=45011,
            errmsg="api minute-quota reach limit",
        )
    )
    out = sync(config | {"max_concurrent_requests": 1, "max_tries": 1})
    assert out.exit_code == 0
    assert (
        f"{APP_ID} share_hour 2026-11-02: errcode 45011: api minute-quota reach limit; waiting 0 s "
        "for the next minute"
    ) in [record.getMessage() for record in caplog.records]
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")


def _minute_quota_refusals(
    emulator: WeChatEmulator, config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch, times: int
) -> tuple[TapOutput, list[str]]:
    """Run with 2026-11-02 answered 45011 ``times`` times; return the run and that day's calls."""
    # No real minutes: the wait is computed by seconds_to_next_minute, whatever sleeps it.
    monkeypatch.setattr(client_module, "seconds_to_next_minute", lambda *_: 0.0)
    emulator.add_fault(Fault("errcode", path=HOURLY, day="2026-11-02", errcode=45011, times=times))
    out = sync(config | {"end_date": "2026-11-03", "max_concurrent_requests": 1})
    outcomes = [c.outcome for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-02"]
    return out, outcomes


def test_minute_quota_ten_waits_for_one_request_then_it_goes_on(
    emulator: WeChatEmulator, config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, outcomes = _minute_quota_refusals(emulator, config, monkeypatch, times=10)
    assert out.exit_code == 0
    assert outcomes == ["errcode 45011"] * 10 + ["ok"]
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-03")


def test_minute_quota_an_eleventh_refusal_stops_the_account_without_a_twelfth_try(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out, outcomes = _minute_quota_refusals(emulator, config, monkeypatch, times=11)
    assert out.exit_code == 1
    assert outcomes == ["errcode 45011"] * 11
    message = (
        f"{APP_ID} share_hour 2026-11-02: the per-minute quota (errcode 45011) was still reached "
        "after 10 waits; lower max_concurrent_requests or run other jobs at another time"
    )
    assert message in caplog.text
    assert bookmark(out.final_state, "share_hour") == "2026-11-01"


@pytest.mark.parametrize(
    ("now", "wait"), [(1_700_000_000.0, 41.0), (1_700_000_039.5, 1.5), (1_700_000_040.0, 61.0)]
)
def test_seconds_to_next_minute(now: float, wait: float) -> None:
    assert seconds_to_next_minute(now) == pytest.approx(wait)


@pytest.mark.boundary
@pytest.mark.parametrize("states_before_kill", [3, 8])
def test_killed_run_resumed_from_its_last_state_loses_no_row(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path, states_before_kill: int
) -> None:
    emulator.latency = 0.05
    config |= {
        "start_date": "2026-10-01",
        "end_date": "2026-10-20",
        "lookback_days": 0,
        "state_message_interval": 0,  # a STATE after every window: kills fall between them
    }
    first = killed_after_states(config, tmp_path, states_before_kill)
    last_state = next(m["value"] for m in reversed(first) if m["type"] == "STATE")
    first_records = [m["record"] for m in first if m["type"] == "RECORD"]

    resumed = sync(config | {"lookback_days": 0}, copy.deepcopy(last_state))
    assert resumed.exit_code == 0
    expected = (
        hourly_rows(emulator, "2026-10-01", "2026-10-20")
        + daily_rows(emulator, "2026-10-01", "2026-10-20")
        + article_rows(emulator, "2026-10-01", "2026-10-20")
        + biz_rows(emulator, "2026-10-01", "2026-10-20")
    )
    # A target merging on the primary key ends up with exactly the served rows.
    merged = {key_of(r): r for r in first_records + resumed.records()}
    assert sorted(merged, key=str) == sorted((key_of(r) for r in expected), key=str)
    assert list(merged.values()) != []
    # Rows emitted after the last STATE are read again (not lost), days before it are not.
    for stream in ("share_hour", "share_day"):
        mark = bookmark(last_state, stream)
        again = {r["ref_date"] for r in resumed.records(stream)}
        if mark:
            assert all(day > mark for day in again), (stream, mark, sorted(again), last_state)
            assert (dt.date.fromisoformat(mark) + dt.timedelta(days=1)).isoformat() <= min(
                again, default="9999"
            )
