"""The core tap against the emulator: rows, calls, bookmarks, lookback, tokens and errcodes."""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

import pendulum
import pytest

from tests.conftest import (
    APP_ID,
    APP_SECRET,
    TODAY,
    biz_rows,
    bookmark,
    check_state_order,
    daily_rows,
    freeze_clock,
    hourly_rows,
    sync,
)
from tests.emulator import BIZ_PATH, Fault, WeChatEmulator

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
STABLE = "/cgi-bin/stable_token"
ARTICLE = "/datacube/getarticleshare"


def begin_dates(emu: WeChatEmulator, path: str) -> list[str | None]:
    return [call.begin_date for call in emu.calls_to(path)]


def test_reads_exactly_the_served_rows_one_call_per_day_and_one_token_call(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 0
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")
    assert out.records("share_day") == daily_rows(emulator, "2026-11-01", "2026-11-10")
    # One request per day, begin_date == end_date, days in ascending order.
    assert begin_dates(emulator, HOURLY) == [f"2026-11-{d:02d}" for d in range(1, 11)]
    assert all(c.begin_date == c.end_date for c in emulator.calls_to(HOURLY))
    assert len(emulator.calls_to(STABLE)) == 1
    assert emulator.calls_to("/cgi-bin/token") == []
    # The emulator's data has days without shares in this range: they are read, not skipped.
    empty = [d for d in range(1, 11) if not emulator.hourly_rows(APP_ID, _day(d))]
    assert empty, "the test range should include a day without shares"


def _day(d: int) -> dt.date:
    return dt.date(2026, 11, d)


def test_an_api_url_with_a_trailing_slash_works(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    out = sync(config | {"api_url": emulator.url + "/", "end_date": "2026-11-02"})
    assert out.exit_code == 0
    assert {STABLE, HOURLY, DAILY} <= {c.path for c in emulator.calls}
    assert {c.outcome for c in emulator.calls} == {"ok"}
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-02")


def test_records_are_in_day_order_and_typed(config: dict[str, t.Any]) -> None:
    records = sync(config).records("share_hour")
    assert records == sorted(
        records, key=lambda r: (r["ref_date"], r["ref_hour"], r["share_scene"])
    )
    for record in records:
        assert set(record) == {
            "app_id",
            "ref_date",
            "ref_hour",
            "share_scene",
            "share_count",
            "share_user",
        }
        assert record["app_id"] == APP_ID
        assert all(isinstance(record[f], int) for f in ("ref_hour", "share_scene", "share_count"))


def test_share_day_reads_17_days_in_three_calls(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    config |= {"start_date": "2026-10-01", "end_date": "2026-10-17"}
    out = sync(config)
    calls = emulator.calls_to(DAILY)
    assert sorted((c.begin_date or "", c.end_date or "") for c in calls) == [
        ("2026-10-01", "2026-10-07"),
        ("2026-10-08", "2026-10-14"),
        ("2026-10-15", "2026-10-17"),
    ]
    assert out.records("share_day") == daily_rows(emulator, "2026-10-01", "2026-10-17")
    assert out.records("share_hour") == hourly_rows(emulator, "2026-10-01", "2026-10-17")
    assert len(emulator.calls_to(HOURLY)) == 17
    assert len(emulator.calls_to(STABLE)) == 1  # one token for both streams


def test_with_interval_0_a_state_message_follows_every_completed_day_naming_only_complete_days(
    config: dict[str, t.Any],
) -> None:
    out = sync(config | {"max_concurrent_requests": 3, "state_message_interval": 0})
    seen_dates: list[str] = []
    marks: list[str] = []
    for message in out.messages:
        if message["type"] == "RECORD" and message["stream"] == "share_hour":
            seen_dates.append(message["record"]["ref_date"])
        elif message["type"] == "STATE":
            mark = bookmark(message["value"], "share_hour")
            if mark and (not marks or mark != marks[-1]):
                # Every row of the bookmarked day, and of the days before, is already out.
                assert all(d <= mark for d in seen_dates)
                marks.append(mark)
    assert marks == [f"2026-11-{d:02d}" for d in range(1, 11)]


@pytest.mark.parametrize("in_flight", [1, 3])
def test_every_row_of_a_day_comes_before_the_state_naming_it_and_the_last_state_is_complete(
    config: dict[str, t.Any], in_flight: int
) -> None:
    out = sync(config | {"max_concurrent_requests": in_flight})
    check_state_order(out.messages)  # sync checks it too; here it is the point of the test
    assert out.states, "no STATE at all"
    assert bookmark(out.final_state, "share_hour") == "2026-11-10"
    assert bookmark(out.final_state, "share_day") == "2026-11-10"
    # Bookmarks only ever name days of the run, and never move past the last one.
    for state in out.states:
        for stream in ("share_hour", "share_day"):
            mark = bookmark(state, stream)
            assert mark is None or "2026-11-01" <= mark <= "2026-11-10"


def test_state_order_check_catches_a_state_before_its_rows() -> None:
    record: dict[str, t.Any] = {
        "type": "RECORD",
        "stream": "share_hour",
        "record": {"app_id": APP_ID, "ref_date": "2026-11-02"},
    }
    state: dict[str, t.Any] = {
        "type": "STATE",
        "value": {
            "bookmarks": {
                "share_hour": {
                    "partitions": [
                        {"context": {"app_id": APP_ID}, "replication_key_value": "2026-11-02"}
                    ]
                }
            }
        },
    }
    check_state_order([record, state])
    with pytest.raises(AssertionError, match="came after a STATE naming 2026-11-02"):
        check_state_order([state, record, state])
    # The state the run started from names days an earlier run delivered: a lookback reads
    # them again after it.
    check_state_order([state, record, state], initial_state=state["value"])
    later = {**record, "record": {"app_id": APP_ID, "ref_date": "2026-11-03"}}
    with pytest.raises(AssertionError, match="records after the last STATE"):
        check_state_order([state, later])


def test_bookmark_moves_to_the_end_even_when_the_last_days_have_no_rows(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    # Find a run of published days whose last day has no shares.
    day = dt.date(2026, 6, 1)
    while emulator.hourly_rows(APP_ID, day):
        day += dt.timedelta(days=1)
    config |= {"start_date": (day - dt.timedelta(days=2)).isoformat(), "end_date": day.isoformat()}
    out = sync(config)
    assert out.records("share_hour")[-1]["ref_date"] < day.isoformat()
    assert bookmark(out.final_state, "share_hour") == day.isoformat()
    assert bookmark(out.final_state, "share_day") == day.isoformat()


@pytest.mark.parametrize(
    ("lookback", "first"), [(2, "2026-11-09"), (0, "2026-11-11"), (3, "2026-11-08")]
)
def test_resumed_run_reads_lookback_days_then_goes_on(
    emulator: WeChatEmulator, config: dict[str, t.Any], lookback: int, first: str
) -> None:
    state = sync(config).final_state
    assert bookmark(state, "share_hour") == "2026-11-10"
    emulator.reset_calls()
    out = sync(config | {"end_date": "2026-11-14", "lookback_days": lookback}, state)
    assert min(begin_dates(emulator, HOURLY)) == first  # type: ignore[type-var]
    assert len(begin_dates(emulator, HOURLY)) == len(set(begin_dates(emulator, HOURLY)))
    assert max(begin_dates(emulator, HOURLY)) == "2026-11-14"  # type: ignore[type-var]
    assert out.records("share_hour") == hourly_rows(emulator, first, "2026-11-14")
    assert bookmark(out.final_state, "share_hour") == "2026-11-14"


def test_up_to_date_run_makes_no_datacube_call(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    state = sync(config).final_state
    emulator.reset_calls()
    out = sync(config | {"lookback_days": 0}, state)
    assert out.records() == []
    assert emulator.calls_to(HOURLY) == []
    assert emulator.calls_to(STABLE) == []  # no token needed when nothing is read
    assert bookmark(out.final_state, "share_hour") == "2026-11-10"


@pytest.mark.parametrize(
    "china_time_and_latest_day",
    [("07:59", "2026-11-27"), ("08:00", "2026-11-28")],
)
def test_end_date_after_the_latest_published_day_is_clamped(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    china_time_and_latest_day: tuple[str, str],
) -> None:
    # TODAY in China, just before and at 08:00, when WeChat publishes yesterday's data.
    china_time, latest = china_time_and_latest_day
    hour, minute = (int(part) for part in china_time.split(":"))
    freeze_clock(
        monkeypatch,
        pendulum.datetime(TODAY.year, TODAY.month, TODAY.day, hour, minute, tz="Asia/Shanghai"),
    )
    out = sync(config | {"start_date": "2026-11-26", "end_date": "2026-12-05"})
    assert out.exit_code == 0
    days = sorted(c.begin_date or "" for c in emulator.calls_to(HOURLY))
    assert days == [d for d in ("2026-11-26", "2026-11-27", "2026-11-28") if d <= latest]
    assert (
        f"end_date 2026-12-05 is later than the latest day WeChat has published ({latest}, "
        f"China time); reading up to {latest}"
    ) in caplog.text
    assert bookmark(out.final_state, "share_hour") == latest


def test_counts_given_as_digit_strings_are_read_as_integers(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    for path in (HOURLY, DAILY, BIZ_PATH):
        emulator.add_fault(Fault("digit_strings", path=path, day="2026-11-02"))
    out = sync(config)
    assert out.exit_code == 0
    assert {
        c.outcome
        for c in emulator.calls
        if c.begin_date == "2026-11-02" and c.path in {HOURLY, DAILY, BIZ_PATH}
    } == {"ok digit_strings"}
    # The same records as from integers: integers (the schema check in sync() insists too).
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")
    assert out.records("share_day") == daily_rows(emulator, "2026-11-01", "2026-11-10")
    assert out.records("biz_share") == biz_rows(emulator, "2026-11-01", "2026-11-10")


@pytest.mark.parametrize("errcode", [-1, 61503])
def test_busy_and_data_not_ready_errcodes_are_retried(
    emulator: WeChatEmulator, config: dict[str, t.Any], errcode: int
) -> None:
    emulator.add_fault(Fault("errcode", path=HOURLY, day="2026-11-03", errcode=errcode, times=2))
    out = sync(config | {"max_tries": 3})
    assert out.exit_code == 0
    assert [c.outcome for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-03"] == [
        f"errcode {errcode}",
        f"errcode {errcode}",
        "ok",
    ]
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")


def test_refused_token_is_renewed_once_with_app_secret(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.add_fault(Fault("rotate", path=HOURLY, day="2026-11-04"))
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 0
    assert len(emulator.calls_to(STABLE)) == 2
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_each_refused_token_errcode_renews_the_token_once_and_the_day_loads(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    errcode: int,
) -> None:
    emulator.add_fault(
        Fault("errcode", path=HOURLY, day="2026-11-04", errcode=errcode, errmsg="token refused")
    )
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 0
    assert len(emulator.calls_to(STABLE)) == 2  # the first token, and one renewal
    assert [c.outcome for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-04"] == [
        f"errcode {errcode}",
        "ok",
    ]
    assert f"WeChat refused the access token (errcode {errcode}: token refused)" in caplog.text
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")


def test_token_refused_again_after_renewal_stops_the_account(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault(
        Fault(
            "errcode",
            path=HOURLY,
            day="2026-11-04",
            errcode=40001,
            errmsg="invalid credential",
            times=-1,
        )
    )
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 1
    assert len(emulator.calls_to(STABLE)) == 2
    assert "refused the token again right after it was renewed" in caplog.text
    assert {r["ref_date"] for r in out.records("share_hour")} <= {
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    }
    assert bookmark(out.final_state, "share_hour") == "2026-11-03"


def test_refused_ready_token_stops_with_a_clear_message(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    del config["app_secret"]
    config["access_token"] = "not-a-valid-token-at-all"
    out = sync(config)
    assert out.exit_code == 1
    assert "access_token given for" in caplog.text
    assert "invalid or expired" in caplog.text
    assert "errcode 40001" in caplog.text
    assert emulator.calls_to(STABLE) == []


def test_ready_token_is_used_as_given(emulator: WeChatEmulator, config: dict[str, t.Any]) -> None:
    del config["app_secret"]
    config["access_token"] = emulator.issue_token(APP_ID)
    out = sync(config)
    assert out.exit_code == 0
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-10")
    assert emulator.calls_to(STABLE) == []


@pytest.mark.parametrize(
    ("errcode", "hint"),
    [
        (48001, "certified"),
        (45009, "daily API quota"),
        (40164, "whitelist"),
        (61004, "whitelist"),
        (40013, "check app_id and app_secret"),
        (40125, "check app_id and app_secret"),
        (40243, "check app_id and app_secret"),
        (61500, "start_date/end_date"),
        (61501, "start_date/end_date"),
        (99999, "does not know"),
    ],
)
def test_fatal_errcodes_stop_at_once_with_errcode_errmsg_and_hint(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    errcode: int,
    hint: str,
) -> None:
    emulator.add_fault(
        Fault(
            "errcode", path=HOURLY, day="2026-11-02", errcode=errcode, errmsg="the errmsg", times=-1
        )
    )
    out = sync(config | {"max_concurrent_requests": 1})
    assert out.exit_code == 1
    assert len([c for c in emulator.calls_to(HOURLY) if c.begin_date == "2026-11-02"]) == 1
    assert f"errcode {errcode}: the errmsg" in caplog.text
    assert hint in caplog.text
    assert bookmark(out.final_state, "share_hour") == "2026-11-01"


def test_wrong_secret_is_fatal_without_retries(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    out = sync(config | {"app_secret": "a-wrong-secret-value"})
    assert out.exit_code == 1
    assert len(emulator.calls_to(STABLE)) == 1
    assert "errcode 40125" in caplog.text
    assert "a-wrong-secret-value" not in caplog.text
    assert APP_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("errcode", "hint"),
    [
        (40013, "check app_id and app_secret"),
        (40125, "check app_id and app_secret"),
        (40243, "check app_id and app_secret"),
        (40164, "whitelist"),
        (61004, "whitelist"),
    ],
)
def test_fatal_errcodes_of_stable_token_stop_the_account_at_once_with_the_hint(
    emulator: WeChatEmulator,
    config: dict[str, t.Any],
    caplog: pytest.LogCaptureFixture,
    errcode: int,
    hint: str,
) -> None:
    emulator.add_fault(
        Fault("errcode", path=STABLE, errcode=errcode, errmsg="the errmsg", times=-1)
    )
    out = sync(config)
    assert out.exit_code == 1
    assert len(emulator.calls_to(STABLE)) == 1  # not retried, and not asked again per stream
    assert emulator.calls_to(HOURLY) == emulator.calls_to(DAILY) == []
    assert f"errcode {errcode}: the errmsg" in caplog.text
    assert hint in caplog.text
    assert out.records() == []


def test_a_lookback_reads_days_again_without_moving_a_bookmark_back(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    own = {"context": {"app_id": APP_ID}, "replication_key": "ref_date"}
    state = {
        "bookmarks": {
            stream: {"partitions": [own | {"replication_key_value": "2026-11-08"}]}
            for stream in ("share_hour", "share_day")
        }
    }
    out = sync(config | {"lookback_days": 3, "state_message_interval": 0}, state)
    assert out.exit_code == 0
    assert min(c.begin_date or "" for c in emulator.calls_to(HOURLY)) == "2026-11-06"
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-06", "2026-11-10")
    # A STATE after every window, and none names an earlier day than the run started from.
    assert len(out.states) > 6
    for value in out.states:
        for stream in ("share_hour", "share_day"):
            assert (bookmark(value, stream) or "") >= "2026-11-08", (stream, value)
    for stream in ("share_hour", "share_day"):
        assert out.final_state["bookmarks"][stream] == {
            "partitions": [own | {"replication_key_value": "2026-11-10"}]
        }


def test_each_account_s_plan_is_one_info_line_per_stream(
    config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = config | {"end_date": "2026-11-02", "lookback_days": 0}
    first = sync(settings)

    def plans() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.INFO and r.getMessage().startswith(APP_ID)
        ]

    assert plans() == [
        f"{APP_ID} article_share: reading 2026-11-01 to 2026-11-02 in 2 request(s)",
        f"{APP_ID} biz_share: reading 2026-11-01 to 2026-11-02 in 2 request(s)",
        f"{APP_ID} share_day: reading 2026-11-01 to 2026-11-02 in 1 request(s)",
        f"{APP_ID} share_hour: reading 2026-11-01 to 2026-11-02 in 2 request(s)",
    ]
    caplog.clear()
    sync(settings, first.final_state)
    assert plans() == [
        f"{APP_ID} {stream} is up to date"
        for stream in ("article_share", "biz_share", "share_day", "share_hour")
    ]
