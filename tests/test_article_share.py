"""article_share (getarticleshare) against the emulator, is_delay days, and retired endpoints."""

from __future__ import annotations

import datetime as dt
import logging
import re
import typing as t

import pytest
import requests

from tap_wechat_share.authenticators import ReadyTokenAuthenticator
from tap_wechat_share.client import EndpointRetiredError, WeChatClient
from tap_wechat_share.dates import Window
from tap_wechat_share.streams import DatacubeStream, RowError
from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import (
    APP_ID,
    APP_ID_2,
    APP_SECRET,
    TODAY,
    article_rows,
    biz_rows,
    bookmark,
    daily_rows,
    days,
    hourly_rows,
    run_tap,
    sync,
    two_accounts,
)
from tests.emulator import ARTICLE_PATH, BIZ_PATH, DAILY_PATH, Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from pathlib import Path


def test_reads_exactly_the_served_rows_from_2025_11_01_and_never_asks_before(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out = sync(config | {"start_date": "2025-10-20", "end_date": "2025-11-20"})
    assert out.exit_code == 0
    expected = article_rows(emulator, "2025-11-01", "2025-11-20")
    assert out.records("article_share") == expected
    calls = emulator.calls_to(ARTICLE_PATH)
    assert sorted(str(call.begin_date) for call in calls) == days("2025-11-01", "2025-11-20")
    assert all(call.begin_date == call.end_date and call.outcome == "ok" for call in calls)
    assert bookmark(out.final_state, "article_share") == "2025-11-20"
    # The other streams read from start_date: the earlier first day is article_share's alone.
    assert out.records("share_day") == daily_rows(emulator, "2025-10-20", "2025-11-20")
    said = [
        r for r in caplog.records if r.getMessage().startswith("article_share: WeChat keeps its")
    ]
    assert [r.levelno for r in said] == [logging.INFO]
    assert "start_date 2025-10-20" in said[0].getMessage()
    # The range holds what the test is about: articles shared on several days, and a day
    # without any share (an empty list is a day read, not an error).
    by_msgid: dict[str, set[str]] = {}
    for record in expected:
        by_msgid.setdefault(record["msgid"], set()).add(record["ref_date"])
    assert max(len(shared_on) for shared_on in by_msgid.values()) > 1
    assert {r["ref_date"] for r in expected} != set(days("2025-11-01", "2025-11-20"))


def test_records_have_the_documented_fields_and_key(config: dict[str, t.Any]) -> None:
    out = sync(config | {"end_date": "2026-11-03"})
    records = out.records("article_share")
    assert records
    assert all(set(r) == {"app_id", "ref_date", "msgid", "share_user"} for r in records)
    assert all(isinstance(r["msgid"], str) and isinstance(r["share_user"], int) for r in records)
    schema = next(
        m for m in out.messages if m["type"] == "SCHEMA" and m["stream"] == "article_share"
    )
    assert schema["key_properties"] == ["app_id", "ref_date", "msgid"]
    assert schema["bookmark_properties"] == ["ref_date"]


WINDOW = Window(dt.date(2025, 11, 3), dt.date(2025, 11, 3))


def row(
    msgid: object = "2247490098_1", share_user: object = 366, **extra: t.Any
) -> dict[str, t.Any]:
    return {"ref_date": "2025-11-03", "msgid": msgid, "detail": {"share_user": share_user}} | extra


@pytest.fixture(scope="module")
def article_share() -> DatacubeStream:
    tap = TapWeChatShare(
        config={
            "app_id": "wxrows",
            "access_token": "rows-token-123456",
            "start_date": "2025-11-01",
        },
        validate_config=True,
    )
    return t.cast("DatacubeStream", tap.streams["article_share"])


def test_row_rules_apply_to_nested_counts_and_string_keys(article_share: DatacubeStream) -> None:
    stray = row(ref_date="2022-11-03")
    answer = {"list": [row("2_1", "12"), row("1_2", 0), stray, row("2_1", "12")], "is_delay": False}
    assert article_share.parse_rows(answer, WINDOW, "wxrows") == [
        {"app_id": "wxrows", "ref_date": "2025-11-03", "msgid": "1_2", "share_user": 0},
        {"app_id": "wxrows", "ref_date": "2025-11-03", "msgid": "2_1", "share_user": 12},
    ]
    assert article_share.parse_rows({"list": []}, WINDOW, "wxrows") == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ref_date": "2025-11-03", "msgid": "1_1"}, "no detail.share_user"),
        (row(detail=12), "no detail.share_user"),
        (row(detail={"share_users": 3}), "no detail.share_user"),
        (row(share_user=-1), "detail.share_user=-1, a negative count"),
        (row(share_user=1.5), "detail.share_user=1.5, not an integer"),
        ({"ref_date": "2025-11-03", "detail": {"share_user": 1}}, "no msgid"),
        (row(msgid=""), "msgid=''"),
        (row(msgid=2247490098), "msgid=2247490098"),
    ],
)
def test_a_row_without_a_readable_msgid_or_share_user_stops(
    article_share: DatacubeStream, bad: dict[str, t.Any], message: str
) -> None:
    with pytest.raises(RowError, match=message):
        article_share.parse_rows({"list": [row(), bad]}, WINDOW, "wxrows")


def test_two_different_rows_for_one_msgid_stop(article_share: DatacubeStream) -> None:
    with pytest.raises(
        RowError, match=r"two different rows for \{'ref_date': '2025-11-03', 'msgid'"
    ):
        article_share.parse_rows({"list": [row(), row(share_user=367)]}, WINDOW, "wxrows")


def test_a_bad_row_stops_the_account_and_the_run_says_so(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.add_fault(Fault("missing_key", path=ARTICLE_PATH, day="2026-11-03"))
    out = sync(config | {"end_date": "2026-11-05", "max_concurrent_requests": 1})
    assert out.exit_code == 1
    assert out.records("article_share") == article_rows(emulator, "2026-11-01", "2026-11-02")


def test_a_delayed_day_is_loaded_then_read_again_by_the_next_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """For article_share and biz_share (getbizsummary says is_delay for the same day)."""
    with WeChatEmulator({APP_ID: APP_SECRET}, today=dt.date(2026, 11, 11)) as emu:
        emu.delay_latest = True
        config = {
            "app_id": APP_ID,
            "app_secret": APP_SECRET,
            "start_date": "2026-11-06",
            "end_date": "2026-11-10",
            "api_url": emu.url,
            "lookback_days": 0,  # only the bookmark brings the delayed day back
        }
        first = sync(config)
        assert first.exit_code == 0
        provisional = [
            {"app_id": APP_ID, "ref_date": "2026-11-10", "msgid": r["msgid"], **r["detail"]}  # type: ignore[dict-item]
            for r in emu.article_rows(APP_ID, dt.date(2026, 11, 10), delayed=True)
        ]
        final = article_rows(emu, "2026-11-10", "2026-11-10")
        assert provisional
        assert provisional != final
        assert first.records("article_share") == [
            *article_rows(emu, "2026-11-06", "2026-11-09"),
            *provisional,
        ]
        assert bookmark(first.final_state, "article_share") == "2026-11-09"
        assert bookmark(first.final_state, "share_hour") == "2026-11-10"
        provisional_biz = [
            {"app_id": APP_ID, "ref_date": "2026-11-10", "share_user": r["detail"]["share_user"]}  # type: ignore[index]
            for r in emu.biz_rows(APP_ID, dt.date(2026, 11, 10), delayed=True)
        ]
        final_biz = biz_rows(emu, "2026-11-10", "2026-11-10")
        assert provisional_biz != final_biz
        assert first.records("biz_share") == [
            *biz_rows(emu, "2026-11-06", "2026-11-09"),
            *provisional_biz,
        ]
        assert bookmark(first.final_state, "biz_share") == "2026-11-09"
        warned = [r for r in caplog.records if "is_delay" in r.getMessage()]
        assert [(r.levelno, r.getMessage()) for r in warned] == [
            (
                logging.WARNING,
                (
                    f"{APP_ID} {stream}: WeChat says 2026-11-10 is not final yet (is_delay); "
                    "loaded as they are now, and read again by the next run"
                ),
            )
            for stream in ("article_share", "biz_share")
        ]

        emu.delay_latest = False
        emu.reset_calls()
        second = sync(config, first.final_state)
        assert second.exit_code == 0
        assert [c.begin_date for c in emu.calls_to(ARTICLE_PATH)] == ["2026-11-10"]
        assert [c.begin_date for c in emu.calls_to(BIZ_PATH)] == ["2026-11-10"]
        assert second.records("article_share") == final
        assert second.records("biz_share") == final_biz
        assert bookmark(second.final_state, "article_share") == "2026-11-10"
        assert bookmark(second.final_state, "biz_share") == "2026-11-10"


def test_the_bookmark_stays_before_a_delayed_day_in_the_middle_of_the_range() -> None:
    with WeChatEmulator({APP_ID: APP_SECRET}, today=dt.date(2026, 11, 11)) as emu:
        emu.delayed_days = {dt.date(2026, 11, 8)}
        out = sync(
            {
                "app_id": APP_ID,
                "app_secret": APP_SECRET,
                "start_date": "2026-11-06",
                "end_date": "2026-11-10",
                "api_url": emu.url,
            }
        )
        assert out.exit_code == 0
        assert [r["ref_date"] for r in out.records("article_share")] == sorted(
            r["ref_date"] for r in out.records("article_share")
        )
        assert {r["ref_date"] for r in out.records("article_share")} >= {"2026-11-09", "2026-11-10"}
        assert bookmark(out.final_state, "article_share") == "2026-11-07"


def test_several_days_not_final_are_named_in_one_warning(
    config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    stream = TapWeChatShare(config=config).streams["article_share"]
    assert isinstance(stream, DatacubeStream)
    days = [dt.date(2026, 11, 9), dt.date(2026, 11, 10)]
    stream._warn_delayed(APP_ID, [Window(day, day) for day in days])
    stream._warn_delayed(APP_ID, [])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        (
            f"{APP_ID} article_share: WeChat says 2026-11-09, 2026-11-10 are not final yet "
            "(is_delay); loaded as they are now, and read again by the next run"
        )
    ]


def test_a_retired_endpoint_ends_only_its_stream_with_one_line_and_a_non_zero_exit(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    emulator.retire(DAILY_PATH)
    config = two_accounts(emulator, end_date="2026-11-05")
    kept = {"context": {"app_id": APP_ID}, "replication_key": "ref_date"}
    state = {
        "bookmarks": {"share_day": {"partitions": [kept | {"replication_key_value": "2026-10-31"}]}}
    }
    out = run_tap(config, tmp_path, state)

    assert out.exit_code == 1
    last = out.stderr.strip().splitlines()[-1]
    assert (
        "share_day: WeChat has retired its endpoint /datacube/getusershare (errcode 47009" in last
    )
    assert (
        "Deselect it, keeping article_share, biz_share and share_hour selected: "
        "`meltano select tap-wechat-share '*' '*'` then "
        "`meltano select tap-wechat-share --exclude share_day '*'` (an exclusion alone "
        "deselects every stream)"
    ) in last
    assert last.endswith("biz_share is the stream that replaces it")
    assert sum("has retired" in line for line in out.stderr.splitlines()) == 1
    assert "accounts failed" not in out.stderr
    assert "The account failed" not in out.stderr
    # The other streams of both accounts load exactly; share_day loads nothing, keeps its state.
    for app_id in (APP_ID, APP_ID_2):
        records = [r for r in out.records("share_hour") if r["app_id"] == app_id]
        assert records == hourly_rows(emulator, "2026-11-01", "2026-11-05", app_id)
        articles = [r for r in out.records("article_share") if r["app_id"] == app_id]
        assert articles == article_rows(emulator, "2026-11-01", "2026-11-05", app_id)
        biz = [r for r in out.records("biz_share") if r["app_id"] == app_id]
        assert biz == biz_rows(emulator, "2026-11-01", "2026-11-05", app_id)
    assert out.records("share_day") == []
    assert bookmark(out.final_state, "share_day") == "2026-10-31"
    assert bookmark(out.final_state, "share_day", APP_ID_2) is None
    # No request to it after the first answer said it is offline (beyond one in flight per account).
    calls = emulator.calls_to(DAILY_PATH)
    assert 1 <= len(calls) <= 2
    assert all(c.outcome == "errcode 47009" for c in calls)


def test_a_retired_endpoint_is_named_once_in_process_with_what_to_do(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.retire(DAILY_PATH)
    config = two_accounts(emulator, end_date="2026-11-02", max_concurrent_requests=1)
    out = sync(config)
    assert out.exit_code == 1
    assert out.records("share_day") == []
    assert len(emulator.calls_to(DAILY_PATH)) == 1
    errmsg = "this api is offline, please use the new api"
    warning = (
        "share_day: WeChat answered that /datacube/getusershare is offline (errcode 47009); "
        "share_day stops for every account, the other streams go on"
    )
    last = (
        "share_day: WeChat has retired its endpoint /datacube/getusershare (errcode 47009: "
        f"{errmsg}); share_day was stopped for every account and its bookmarks are kept, the "
        "other streams were read. Deselect it, keeping article_share, biz_share and share_hour "
        "selected: `meltano select tap-wechat-share '*' '*'` then `meltano select "
        "tap-wechat-share --exclude share_day '*'` (an exclusion alone deselects every stream); "
        "biz_share is the stream that replaces it"
    )
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [(logging.WARNING, warning), (logging.ERROR, last)]


def test_a_retired_endpoint_without_a_successor_says_so(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.retire(ARTICLE_PATH)
    out = sync(config | {"end_date": "2026-11-02"})
    assert out.exit_code == 1
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-02")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    last = (
        "article_share: WeChat has retired its endpoint /datacube/getarticleshare (errcode "
        "47009: this api is offline, please use the new api); article_share was stopped for "
        "every account and its bookmarks are kept, the other streams were read. Deselect it, "
        "keeping biz_share, share_day and share_hour selected: `meltano select tap-wechat-share "
        "'*' '*'` "
        "then `meltano select tap-wechat-share --exclude article_share '*'` (an exclusion alone "
        "deselects every stream); WeChat names no successor that this tap reads"
    )
    assert errors == [last]


# The emulator's getarticleshare and retirement, over plain HTTP ---------------------------------


def post(emu: WeChatEmulator, path: str, token: str, begin: str, end: str) -> dict[str, t.Any]:
    body = {"begin_date": begin, "end_date": end}
    response = requests.post(emu.url + path, params={"access_token": token}, json=body, timeout=5.0)
    assert response.status_code == 200
    answer: dict[str, t.Any] = response.json()
    return answer


def test_emulator_serves_getarticleshare_as_documented(emulator: WeChatEmulator) -> None:
    token = emulator.issue_token(APP_ID)
    answer = post(emulator, ARTICLE_PATH, token, "2025-11-01", "2025-11-01")
    assert answer["is_delay"] is False
    assert answer["list"] == emulator.article_rows(APP_ID, dt.date(2025, 11, 1))
    assert answer["list"]
    for served in answer["list"]:
        assert set(served) == {"ref_date", "msgid", "detail"}
        assert set(served["detail"]) == {"share_user"}
        assert re.fullmatch(r"[0-9]+_[1-9]", served["msgid"])
    # One day per request, nothing before 2025-11-01, nothing after yesterday.
    for begin, end in [
        ("2025-11-01", "2025-11-02"),
        ("2025-10-31", "2025-10-31"),
        (TODAY.isoformat(), TODAY.isoformat()),
    ]:
        assert post(emulator, ARTICLE_PATH, token, begin, end)["errcode"] == 61501
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    emulator.delay_latest = True
    delayed = post(emulator, ARTICLE_PATH, token, yesterday, yesterday)
    assert delayed["is_delay"] is True
    assert post(emulator, ARTICLE_PATH, token, "2026-11-01", "2026-11-01")["is_delay"] is False


def test_emulator_retires_an_endpoint_with_errcode_47009(emulator: WeChatEmulator) -> None:
    token = emulator.issue_token(APP_ID)
    emulator.retire(DAILY_PATH)
    answer = post(emulator, DAILY_PATH, token, "2026-11-01", "2026-11-01")
    assert answer == {"errcode": 47009, "errmsg": "this api is offline, please use the new api"}
    assert "list" in post(emulator, ARTICLE_PATH, token, "2026-11-01", "2026-11-01")


def test_the_client_hands_a_retired_endpoint_to_the_stream_with_an_authenticator_too(
    emulator: WeChatEmulator,
) -> None:
    """Not turned into an account failure where the client renews tokens itself."""
    emulator.retire(DAILY_PATH)
    client = WeChatClient(emulator.url, max_tries=1)
    authenticator = ReadyTokenAuthenticator(APP_ID, emulator.issue_token(APP_ID))
    day = {"begin_date": "2026-11-01", "end_date": "2026-11-01"}
    with pytest.raises(EndpointRetiredError):
        client.post(DAILY_PATH, day, authenticator=authenticator, required="list")
