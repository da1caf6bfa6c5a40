"""biz_share (getbizsummary): the account's daily sharers against the emulator, and its rows.

The delayed (``is_delay``) day read again by the next run is in test_article_share.py (one run
for both streams), and through Meltano into PostgreSQL in test_meltano_e2e.py; share_day's
retirement line naming biz_share is in test_article_share.py too.
"""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

import pytest
import requests

from tap_wechat_share.dates import Window
from tap_wechat_share.streams import DatacubeStream, RowError
from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import (
    APP_ID,
    APP_ID_2,
    TODAY,
    biz_rows,
    bookmark,
    days,
    hourly_rows,
    sync,
    two_accounts,
)
from tests.emulator import ARTICLE_PATH, BIZ_PATH, Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from collections.abc import Iterator


def dates(first: str, last: str) -> Iterator[dt.date]:
    return map(dt.date.fromisoformat, days(first, last))


def test_reads_exactly_the_served_rows_from_2025_11_01_and_never_asks_before(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    out = sync(config | {"start_date": "2025-10-25", "end_date": "2025-11-20"})
    assert out.exit_code == 0
    expected = biz_rows(emulator, "2025-11-01", "2025-11-20")
    assert out.records("biz_share") == expected
    assert [r["ref_date"] for r in expected] == days("2025-11-01", "2025-11-20")  # one row a day
    calls = emulator.calls_to(BIZ_PATH)
    assert sorted(str(call.begin_date) for call in calls) == days("2025-11-01", "2025-11-20")
    assert all(call.begin_date == call.end_date and call.outcome == "ok" for call in calls)
    assert bookmark(out.final_state, "biz_share") == "2025-11-20"
    said = [r for r in caplog.records if r.getMessage().startswith("biz_share: WeChat keeps")]
    assert [(r.levelno, r.getMessage()) for r in said] == [
        (
            logging.INFO,
            (
                "biz_share: WeChat keeps its data from 2025-11-01 on; start_date 2025-10-25 is "
                "earlier, so biz_share is read from 2025-11-01"
            ),
        )
    ]
    # Only share_user is loaded, though the answers carry more.
    schema = next(m for m in out.messages if m["type"] == "SCHEMA" and m["stream"] == "biz_share")
    assert set(schema["schema"]["properties"]) == {"app_id", "ref_date", "share_user"}
    assert schema["key_properties"] == ["app_id", "ref_date"]
    assert schema["bookmark_properties"] == ["ref_date"]
    assert all(set(r) == {"app_id", "ref_date", "share_user"} for r in out.records("biz_share"))
    # The range holds days with sharers and a day without (share_user 0 is a figure).
    assert {r["share_user"] > 0 for r in expected} == {True, False}


# Row rules, on the base's checks ----------------------------------------------------------------

WINDOW = Window(dt.date(2025, 11, 3), dt.date(2025, 11, 3))


def row(share_user: object = 761, **extra: t.Any) -> dict[str, t.Any]:
    detail = {"read_user": 10278, "share_user": share_user, "like_user": 411, "zaikan_user": 2}
    return {"ref_date": "2025-11-03", "detail": detail} | extra


@pytest.fixture(scope="module")
def biz_share() -> DatacubeStream:
    tap = TapWeChatShare(
        config={
            "app_id": "wxrows",
            "access_token": "rows-token-123456",
            "start_date": "2025-11-01",
        },
        validate_config=True,
    )
    return t.cast("DatacubeStream", tap.streams["biz_share"])


def test_the_key_within_an_account_is_the_day(biz_share: DatacubeStream) -> None:
    assert biz_share.key_fields == ("ref_date",)
    assert tuple(biz_share.primary_keys) == ("app_id", "ref_date")
    assert biz_share.replication_key == "ref_date"
    assert biz_share.selected


def test_only_detail_share_user_is_read_and_the_other_rules_hold(
    biz_share: DatacubeStream,
) -> None:
    stray = row(ref_date="2022-11-03")
    answer = {"list": [stray, row("12", comment_count=4), row("12", comment_count=4)]}
    assert biz_share.parse_rows(answer | {"is_delay": False}, WINDOW, "wxrows") == [
        {"app_id": "wxrows", "ref_date": "2025-11-03", "share_user": 12}
    ]
    assert biz_share.parse_rows({"list": [row(0)]}, WINDOW, "wxrows") == [
        {"app_id": "wxrows", "ref_date": "2025-11-03", "share_user": 0}
    ]
    assert biz_share.parse_rows({"list": []}, WINDOW, "wxrows") == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ref_date": "2025-11-03", "detail": {"read_user": 3}}, "no detail.share_user"),
        ({"ref_date": "2025-11-03", "share_user": 3}, "no detail.share_user"),
        (row(detail=12), "no detail.share_user"),
        (row(share_user=None), "no detail.share_user"),
        (row(share_user=-1), "detail.share_user=-1, a negative count"),
        (row(share_user=1.5), "detail.share_user=1.5, not an integer"),
        (row(share_user=True), "detail.share_user=True, not an integer"),
        (row(ref_date=None), "ref_date=None, not a YYYY-MM-DD date"),
    ],
)
def test_a_row_without_a_readable_share_user_stops(
    biz_share: DatacubeStream, bad: dict[str, t.Any], message: str
) -> None:
    with pytest.raises(RowError, match=message):
        biz_share.parse_rows({"list": [row(), bad]}, WINDOW, "wxrows")


def test_two_different_rows_for_one_day_stop(biz_share: DatacubeStream) -> None:
    with pytest.raises(
        RowError, match=r"^wxrows biz_share 2025-11-03: two different rows for \{'ref_date': "
    ):
        biz_share.parse_rows(
            {"list": [row(), row(share_user=762)]}, WINDOW, "wxrows", "wxrows biz_share 2025-11-03"
        )


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("missing_key", "a row has no detail.share_user"),
        ("negative", "a row has detail.share_user=-3, a negative count"),
        ("bad_hour", "a row has no detail.share_user"),
    ],
)
def test_a_bad_row_stops_the_account_and_the_others_go_on(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture, kind: str, why: str
) -> None:
    emulator.add_fault(Fault(kind, path=BIZ_PATH, day="2026-11-03", app_id=APP_ID))
    out = sync(two_accounts(emulator, max_concurrent_requests=1))
    assert out.exit_code == 1
    mine = [r for r in out.records("biz_share") if r["app_id"] == APP_ID]
    assert mine == biz_rows(emulator, "2026-11-01", "2026-11-02")
    assert bookmark(out.final_state, "biz_share") == "2026-11-02"
    theirs = [r for r in out.records("biz_share") if r["app_id"] == APP_ID_2]
    assert theirs == biz_rows(emulator, "2026-11-01", "2026-11-06", APP_ID_2)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith(
        f"{APP_ID} failed in biz_share: {APP_ID} biz_share 2026-11-03: {why}"
    )


def test_a_retired_getbizsummary_ends_biz_share_only(
    emulator: WeChatEmulator, config: dict[str, t.Any], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.retire(BIZ_PATH)
    out = sync(config | {"end_date": "2026-11-02"})
    assert out.exit_code == 1
    assert out.records("biz_share") == []
    assert out.records("share_hour") == hourly_rows(emulator, "2026-11-01", "2026-11-02")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(
        "biz_share: WeChat has retired its endpoint /datacube/getbizsummary (errcode 47009"
    )
    assert "keeping article_share, share_day and share_hour selected" in errors[0]
    assert errors[0].endswith("WeChat names no successor that this tap reads")


# The emulator's getbizsummary, over plain HTTP --------------------------------------------------


def post(emu: WeChatEmulator, token: str, begin: str, end: str) -> dict[str, t.Any]:
    body = {"begin_date": begin, "end_date": end}
    response = requests.post(
        emu.url + BIZ_PATH, params={"access_token": token}, json=body, timeout=5.0
    )
    assert response.status_code == 200
    answer: dict[str, t.Any] = response.json()
    return answer


def test_emulator_serves_getbizsummary_as_documented(emulator: WeChatEmulator) -> None:
    token = emulator.issue_token(APP_ID)
    answer = post(emulator, token, "2025-11-01", "2025-11-01")
    assert answer == {"list": emulator.biz_rows(APP_ID, dt.date(2025, 11, 1)), "is_delay": False}
    [served] = answer["list"]
    assert served["ref_date"] == "2025-11-01"
    # Figures the tap does not load are there too.
    assert {"share_user", "read_user", "like_user", "zaikan_user"} <= set(served["detail"])
    # One day per request, nothing before 2025-11-01, nothing after yesterday.
    for begin, end in [
        ("2025-11-01", "2025-11-02"),
        ("2025-10-31", "2025-10-31"),
        (TODAY.isoformat(), TODAY.isoformat()),
    ]:
        assert post(emulator, token, begin, end)["errcode"] == 61501
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    emulator.delay_latest = True
    delayed = post(emulator, token, yesterday, yesterday)
    assert delayed["is_delay"] is True
    assert delayed["list"] == emulator.biz_rows(APP_ID, TODAY - dt.timedelta(days=1), delayed=True)
    assert post(emulator, token, "2026-11-01", "2026-11-01")["is_delay"] is False
    emulator.delayed_days = {dt.date(2026, 11, 1)}
    assert post(emulator, token, "2026-11-01", "2026-11-01")["is_delay"] is True
    emulator.retire(BIZ_PATH)
    assert post(emulator, token, "2026-11-02", "2026-11-02")["errcode"] == 47009
    assert [c.outcome for c in emulator.calls_to(BIZ_PATH)][-1] == "errcode 47009"
    assert emulator.calls_to(ARTICLE_PATH) == []


def test_emulator_s_account_sharers_agree_with_its_articles(emulator: WeChatEmulator) -> None:
    """At least the largest article's sharers (one person may share several: at most the sum)."""
    overlapping = 0
    for day in dates("2025-11-01", "2025-12-31"):
        for delayed in (False, True):
            articles = [
                t.cast("dict[str, int]", r["detail"])["share_user"]
                for r in emulator.article_rows(APP_ID, day, delayed=delayed)
            ]
            [biz] = emulator.biz_rows(APP_ID, day, delayed=delayed)
            sharers = t.cast("dict[str, int]", biz["detail"])["share_user"]
            assert max(articles, default=0) <= sharers <= sum(articles), (day, delayed)
            overlapping += max(articles, default=0) < sharers < sum(articles)
    assert overlapping > 5
