"""Odd input: odd values in rows, hand-edited states, BATCH, a start after the latest day.

Each odd thing either stops only what it concerns, with one line saying what to do, or is used
as the user meant it; nothing silently re-reads years of data or skips days for ever.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import subprocess
import typing as t

import pytest

from tap_wechat_share import tap as tap_module
from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import (
    APP_ID,
    APP_ID_2,
    TAP_EXECUTABLE,
    bookmark,
    daily_rows,
    hourly_rows,
    run_tap,
    sync,
    two_accounts,
)
from tests.emulator import Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from pathlib import Path

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"


@pytest.mark.parametrize("value", ["--5", "²", "1e3", " ", "12.5", [], {"n": 1}, 1.5, True])
def test_an_odd_value_stops_only_its_account_with_one_line(
    emulator: WeChatEmulator, tmp_path: Path, value: object
) -> None:
    emulator.add_fault(
        Fault("odd_value", path=HOURLY, app_id=APP_ID, day="2026-11-03", value=value)
    )
    out = run_tap(two_accounts(emulator), tmp_path)
    assert out.exit_code == 1
    assert "Traceback" not in out.stderr
    # The other account is read exactly; the odd one up to the day before the odd row.
    got = [r for r in out.records("share_hour") if r["app_id"] == APP_ID_2]
    assert got == hourly_rows(emulator, "2026-11-01", "2026-11-06", APP_ID_2)
    assert bookmark(out.final_state, "share_hour", APP_ID) == "2026-11-02"
    last = out.stderr.strip().splitlines()[-1]
    assert f"  {APP_ID} share_hour 2026-11-03: a row has share_count=" in last
    assert "not an integer" in last


def test_a_count_beyond_a_bigint_stops_its_account_in_one_line(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    # Other values beyond it (strings of digits, 2**63, keys): tests/test_parsing.py.
    value = 99999999999999999999
    emulator.add_fault(
        Fault("odd_value", path=HOURLY, app_id=APP_ID, day="2026-11-03", value=value)
    )
    out = run_tap(two_accounts(emulator), tmp_path)
    assert out.exit_code == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert (
        f"  {APP_ID} share_hour 2026-11-03: a row has share_count={value}, beyond what a "
        "BIGINT holds (2**63 - 1)"
    ) in last
    assert bookmark(out.final_state, "share_hour", APP_ID) == "2026-11-02"
    got = [r for r in out.records("share_hour") if r["app_id"] == APP_ID_2]
    assert got == hourly_rows(emulator, "2026-11-01", "2026-11-06", APP_ID_2)


def test_the_largest_bigint_is_loaded(emulator: WeChatEmulator, config: dict[str, t.Any]) -> None:
    emulator.add_fault(Fault("odd_value", path=HOURLY, day="2026-11-03", value=2**63 - 1))
    out = sync(config)
    assert out.exit_code == 0
    assert [r["share_count"] for r in out.records("share_hour") if r["share_count"] > 10**9] == [
        2**63 - 1
    ]


def test_an_answer_that_is_not_utf_8_stops_its_account_naming_account_stream_and_day(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    article = "/datacube/getarticleshare"
    emulator.add_fault(Fault("gbk", path=article, app_id=APP_ID, day="2026-11-03"))
    out = run_tap(two_accounts(emulator), tmp_path)
    assert out.exit_code == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"  {APP_ID} article_share 2026-11-03: WeChat's answer is not UTF-8 (" in last
    assert "nothing of it is loaded, and it is not asked again in this run" in last
    assert not [r for r in out.records() if "\ufffd" in json.dumps(r, ensure_ascii=False)]
    assert bookmark(out.final_state, "article_share", APP_ID) == "2026-11-02"
    assert len([c for c in emulator.calls_to(article) if c.begin_date == "2026-11-03"]) == 2


def test_digit_strings_are_read_as_integers(
    emulator: WeChatEmulator, config: dict[str, t.Any]
) -> None:
    emulator.add_fault(Fault("odd_value", path=HOURLY, day="2026-11-03", value=" 12 "))
    out = sync(config)
    assert out.exit_code == 0
    odd = [r for r in out.records("share_hour") if r["share_count"] == 12 and r["ref_hour"] == 0]
    assert [r["ref_date"] for r in odd if r["share_user"] == 1] == ["2026-11-03"]


def test_an_unexpected_error_in_one_account_stops_only_that_account(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    from tap_wechat_share import streams  # noqa: PLC0415

    original = streams.DatacubeStream.parse_rows

    def parse_rows(self: streams.DatacubeStream, body: dict[str, t.Any], *args: t.Any) -> t.Any:
        if args[1] == APP_ID:
            raise ZeroDivisionError("a bug")
        return original(self, body, *args)

    monkeypatch.setattr(streams.DatacubeStream, "parse_rows", parse_rows)
    out = sync(two_accounts(emulator))
    assert out.exit_code == 1
    assert not [r for r in out.records() if r["app_id"] == APP_ID]
    assert [r for r in out.records("share_day") if r["app_id"] == APP_ID_2] == daily_rows(
        emulator, "2026-11-01", "2026-11-06", APP_ID_2
    )
    # Its traceback is kept for DEBUG, under a line naming what was being read.
    # (Windows fetched ahead fail alike, each with its own line.)
    traced = [r for r in caplog.records if "ZeroDivisionError: a bug" in (r.exc_text or "")]
    assert {r.levelno for r in traced} == {logging.DEBUG}
    assert f"{APP_ID} article_share 2026-11-01: unexpected error" in [
        r.getMessage() for r in traced
    ]


# States as people write them ------------------------------------------------------------------


def stream_level(value: str, key: str | None = "ref_date") -> dict[str, t.Any]:
    entry: dict[str, t.Any] = {"replication_key_value": value}
    if key is not None:
        entry["replication_key"] = key
    return {"bookmarks": {"share_hour": entry, "share_day": dict(entry)}}


def partitioned(
    value: object, context: dict[str, t.Any] | None = None, **extra: t.Any
) -> dict[str, t.Any]:
    partition = {"context": context or {"app_id": APP_ID}, "replication_key_value": value, **extra}
    return {
        "bookmarks": {
            "share_hour": {"partitions": [partition]},
            "share_day": {"partitions": [copy.deepcopy(partition)]},
        }
    }


def first_hourly_day(emulator: WeChatEmulator) -> str | None:
    return min((c.begin_date or "" for c in emulator.calls_to(HOURLY)), default=None)


@pytest.mark.parametrize(
    "state",
    [
        stream_level("2026-11-04"),
        stream_level("2026-11-04", key=None),
        partitioned("2026-11-04"),
        partitioned("2026-11-04", replication_key=None),
        partitioned("2026-11-04", replication_key="something_else"),
        partitioned("2026-11-04", context={"app_id": APP_ID, "extra": 1}),
    ],
    ids=[
        "stream-level",
        "stream-level-no-key",
        "partition",
        "null-key",
        "other-key",
        "extra-context",
    ],
)
def test_a_state_in_another_shape_is_used_for_the_one_account(
    emulator: WeChatEmulator, config: dict[str, t.Any], state: dict[str, t.Any]
) -> None:
    out = sync(config | {"lookback_days": 1}, state)
    assert out.exit_code == 0
    assert first_hourly_day(emulator) == "2026-11-04"
    assert bookmark(out.final_state, "share_hour") == "2026-11-10"
    # Written back in the tap's own shape.
    partitions = out.final_state["bookmarks"]["share_hour"]["partitions"]
    assert [
        (p["context"], p["replication_key"], p["replication_key_value"]) for p in partitions
    ] == [({"app_id": APP_ID}, "ref_date", "2026-11-10")]
    assert "replication_key_value" not in out.final_state["bookmarks"]["share_hour"]


def test_a_stream_level_bookmark_with_several_accounts_is_named_in_a_warning(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    out = run_tap(two_accounts(emulator), tmp_path, stream_level("2026-11-04"))
    assert out.exit_code == 0
    assert (
        "share_hour: the state has a stream-level bookmark (2026-11-04) but this run reads 2"
        in out.stderr
    )
    assert "read from start_date" in out.stderr
    assert first_hourly_day(emulator) == "2026-11-01"


def test_a_stream_level_bookmark_is_not_given_to_a_shard_s_only_account(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    # Two accounts, in different shards of 3 (APP_ID in shard 1, APP_ID_2 in shard 0): each
    # shard reads one account, and still nobody can say whose the bookmark is.
    for index, app_id in ((1, APP_ID), (0, APP_ID_2)):
        emulator.reset_calls()
        config = two_accounts(emulator, shard_count=3, shard_index=index)
        out = run_tap(config, tmp_path, stream_level("2026-11-04"))
        assert out.exit_code == 0
        assert "the run's only account" not in out.stderr
        assert (
            "share_hour: the state has a stream-level bookmark (2026-11-04) but the settings "
            f"give 2 accounts (this shard reads {app_id})"
        ) in out.stderr
        assert {c.app_id for c in emulator.calls_to(HOURLY)} == {app_id}
        assert first_hourly_day(emulator) == "2026-11-01"
        assert out.records("share_hour") == hourly_rows(
            emulator, "2026-11-01", "2026-11-06", app_id
        )


def test_bookmarks_of_unknown_contexts_are_named_when_accounts_have_none(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    state = partitioned("2026-11-04", context={"app_id": APP_ID.upper()})
    out = run_tap(two_accounts(emulator) | {"end_date": "2026-11-02"}, tmp_path, state)
    assert out.exit_code == 0
    warning = next(
        line for line in out.stderr.splitlines() if "share_hour: 2 account(s) have no" in line
    )
    assert f"{APP_ID}, {APP_ID_2}" in warning
    assert json.dumps({"app_id": APP_ID.upper()}) in warning
    # Kept as it was: it may be another shard's.
    assert {"app_id": APP_ID.upper()} in [
        p["context"] for p in out.final_state["bookmarks"]["share_hour"]["partitions"]
    ]


def test_other_shards_bookmarks_pass_through_without_a_warning(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    # With 3 shards the two accounts are in different shards: APP_ID in 1, APP_ID_2 in 0.
    config = two_accounts(emulator) | {"end_date": "2026-11-02", "shard_count": 3}
    state = partitioned("2026-10-01", {"app_id": APP_ID_2})
    out = run_tap(config | {"shard_index": 1}, tmp_path, state)
    assert out.exit_code == 0
    assert "shard 1 of 3: 1 of 2 account(s)" in out.stderr
    assert "have no bookmark" not in out.stderr
    assert {r["app_id"] for r in out.records()} == {APP_ID}
    for stream in ("share_hour", "share_day"):
        assert bookmark(out.final_state, stream, APP_ID_2) == "2026-10-01"  # untouched
        assert bookmark(out.final_state, stream, APP_ID) == "2026-11-02"


@pytest.mark.parametrize(("count", "first_six"), [(3, [0, 0, 1, 0, 0, 2]), (2, [0, 0, 0, 0, 1, 1])])
def test_each_account_is_read_by_exactly_one_shard(
    emulator: WeChatEmulator, count: int, first_six: list[int]
) -> None:
    accounts = [{"app_id": f"wx{n:016d}", "access_token": "t" * 20} for n in range(1, 41)]
    owners: dict[str, list[int]] = {a["app_id"]: [] for a in accounts}
    for index in range(count):
        tap = TapWeChatShare(
            config={
                "accounts": accounts,
                "start_date": "2026-11-01",
                "api_url": emulator.url,
                "shard_count": count,
                "shard_index": index,
            }
        )
        for app_id in tap.run.accounts:
            owners[app_id].append(index)
    assert all(len(shards) == 1 for shards in owners.values())
    assert {shards[0] for shards in owners.values()} == set(range(count))
    # The same on every machine and Python version (SHA-256 of the app_id, not hash()).
    assert [owners[f"wx{n:016d}"][0] for n in range(1, 7)] == first_six


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"shard_count": 0}, "shard_count: 0 is not allowed; give a whole number of at least 1"),
        ({"shard_index": 3}, "shard_index: 3 is not allowed; give a whole number from 0 to 2"),
        ({"shard_index": -1}, "shard_index: -1 is not allowed"),
    ],
)
def test_bad_shard_settings_give_one_line_before_any_call(
    emulator: WeChatEmulator, tmp_path: Path, change: dict[str, t.Any], error: str
) -> None:
    config = two_accounts(emulator) | {"shard_count": 3} | change
    out = run_tap(config, tmp_path)
    assert out.exit_code == 1
    assert error in out.stderr
    assert emulator.calls == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-11-20garbage", '"2026-11-20garbage"'),
        (20261120, "20261120"),
        ("2026-11-2", '"2026-11-2"'),
        ("\uff12\uff10\uff12\uff16-11-20", '"\\uff12\\uff10\\uff12\\uff16-11-20"'),
    ],
)
def test_a_bookmark_that_is_not_a_date_stops_its_account_saying_what_to_do(
    emulator: WeChatEmulator, tmp_path: Path, value: object, shown: str
) -> None:
    out = run_tap(two_accounts(emulator), tmp_path, partitioned(value))
    assert out.exit_code == 1
    last = out.stderr.strip().splitlines()[-1]
    assert (
        f"the state's bookmark for share_day {APP_ID} is {shown}, not a date written YYYY-MM-DD; "
        "correct it or remove that partition from the state"
    ) in last
    # Not read in any stream, not even article_share (read first, no bookmark of its own).
    assert not [r for r in out.records() if r["app_id"] == APP_ID]
    assert [r for r in out.records("share_hour") if r["app_id"] == APP_ID_2] == hourly_rows(
        emulator, "2026-11-01", "2026-11-06", APP_ID_2
    )


@pytest.mark.parametrize(
    ("value", "shown", "why"),
    [
        ("2026-13-01", '"2026-13-01"', "not a date written YYYY-MM-DD"),
        (20261101, "20261101", "not a date written YYYY-MM-DD"),
        ("2099-01-01", "2099-01-01", "later than the latest day WeChat has published (2026-11-28)"),
    ],
)
def test_an_unusable_bookmark_fails_its_account_in_every_stream_before_any_request(
    emulator: WeChatEmulator,
    caplog: pytest.LogCaptureFixture,
    value: object,
    shown: str,
    why: str,
) -> None:
    out = sync(two_accounts(emulator), partitioned(value))
    assert out.exit_code == 1
    assert [c for c in emulator.calls if c.app_id == APP_ID] == []
    assert not [r for r in out.records() if r["app_id"] == APP_ID]
    assert [r for r in out.records("share_hour") if r["app_id"] == APP_ID_2] == hourly_rows(
        emulator, "2026-11-01", "2026-11-06", APP_ID_2
    )
    reason = (
        f"the state's bookmark for share_day {APP_ID} is {shown}, {why}; correct it or remove "
        "that partition from the state (meltano state edit), then run again"
    )
    skipped = "Skipping {} for " + APP_ID + ": the account failed earlier in this run"
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        (logging.ERROR, f"{APP_ID} failed in share_day: {reason}"),
        *(
            (logging.WARNING, skipped.format(s))
            for s in ("article_share", "biz_share", "share_day", "share_hour")
        ),
        (logging.ERROR, "1 of 2 accounts failed; the others were read and their state written:"),
        (logging.ERROR, f"  {reason}"),
    ]


def test_unusable_bookmarks_of_several_accounts_in_different_streams_fail_each_up_front(
    emulator: WeChatEmulator,
) -> None:
    own = {"replication_key": "ref_date", "replication_key_value": "2026-13-01"}
    state = {
        "bookmarks": {
            "share_day": {"partitions": [{"context": {"app_id": APP_ID}, **own}]},
            "share_hour": {"partitions": [{"context": {"app_id": APP_ID_2}, **own}]},
        }
    }
    out = sync(two_accounts(emulator), state)
    assert out.exit_code == 1
    # Neither is read in any stream, article_share (read first) included.
    assert out.records() == []
    assert emulator.calls_to("/datacube/getarticleshare") == []


def test_a_bookmark_after_the_latest_published_day_stops_its_account(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    out = run_tap(two_accounts(emulator), tmp_path, partitioned("2099-01-01"))
    assert out.exit_code == 1
    assert (
        f"the state's bookmark for share_day {APP_ID} is 2099-01-01, later than the latest day "
        "WeChat has published"
    ) in out.stderr
    # Not read in any stream, not even article_share (read first, no bookmark of its own).
    assert not [r for r in out.records() if r["app_id"] == APP_ID]


def test_items_of_partitions_that_are_not_objects_are_left_out_with_a_warning(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    state = partitioned("2026-11-04")
    state["bookmarks"]["share_hour"]["partitions"] += ["not a partition", 7, None, ["wx"]]
    state["bookmarks"]["share_week"] = {"partitions": [1]}  # no stream of this tap: still read
    out = run_tap(two_accounts(emulator), tmp_path, state)
    assert out.exit_code == 0
    assert "Traceback" not in out.stderr
    assert (
        "share_hour: the state's partitions hold 4 item(s) that are not objects (\"not a "
        'partition", 7, null, ...); they are no bookmark of any account and are left out of the '
        "state"
    ) in out.stderr
    assert "share_week: the state's partitions hold 1 item(s) that are not objects (1)" in (
        out.stderr
    )
    assert first_hourly_day(emulator) == "2026-11-01"  # APP_ID_2, from start_date
    assert min(c.begin_date or "" for c in emulator.calls_to(HOURLY) if c.app_id == APP_ID) == (
        "2026-11-02"  # the bookmark, less the default lookback of 3 days
    )
    partitions = out.final_state["bookmarks"]["share_hour"]["partitions"]
    assert all(isinstance(p, dict) for p in partitions)
    assert bookmark(out.final_state, "share_hour", APP_ID) == "2026-11-06"


def test_duplicate_partitions_of_an_account_not_read_are_kept_and_the_run_goes_on(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    removed = {"context": {"app_id": "wx9999999999999999"}, "replication_key_value": "2026-10-01"}
    state = partitioned("2026-11-04")
    state["bookmarks"]["share_hour"]["partitions"] += [removed, copy.deepcopy(removed)]
    out = run_tap(two_accounts(emulator), tmp_path, state)
    assert out.exit_code == 0
    assert "Traceback" not in out.stderr
    for app_id in (APP_ID, APP_ID_2):
        assert bookmark(out.final_state, "share_hour", app_id) == "2026-11-06"
    partitions = out.final_state["bookmarks"]["share_hour"]["partitions"]
    kept = [p for p in partitions if p["context"] == removed["context"]]
    assert [p["replication_key_value"] for p in kept] == ["2026-10-01", "2026-10-01"]


def test_duplicate_partitions_of_an_account_read_stop_that_account_in_one_line(
    emulator: WeChatEmulator, tmp_path: Path
) -> None:
    state = partitioned("2026-11-04")
    state["bookmarks"]["share_hour"]["partitions"] *= 2
    out = run_tap(two_accounts(emulator), tmp_path, state)
    assert out.exit_code == 1
    assert "Traceback" not in out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"the state holds more than one partition for share_hour {APP_ID}; keep one (meltano "
            "state edit), then run again"
        )
    )
    assert not [r for r in out.records() if r["app_id"] == APP_ID]
    assert bookmark(out.final_state, "share_hour", APP_ID_2) == "2026-11-06"


# Settings ---------------------------------------------------------------------------------------


def test_batch_config_is_refused_in_one_line_and_batch_not_advertised(
    config: dict[str, t.Any], tmp_path: Path, emulator: WeChatEmulator
) -> None:
    batch = {"encoding": {"format": "jsonl"}, "storage": {"root": f"file://{tmp_path}"}}
    out = run_tap(config | {"batch_config": batch}, tmp_path)
    assert out.exit_code == 1
    assert "batch_config: this tap does not write BATCH messages" in out.stderr
    assert emulator.calls == []
    about = subprocess.run(
        [TAP_EXECUTABLE, "--about", "--format=json"], capture_output=True, check=True, text=True
    )
    assert "batch" not in json.loads(about.stdout)["capabilities"]
    assert "stream-maps" in json.loads(about.stdout)["capabilities"]


def test_a_start_date_after_the_latest_published_day_is_refused_before_any_call(
    config: dict[str, t.Any], tmp_path: Path, emulator: WeChatEmulator
) -> None:
    out = run_tap(config | {"start_date": "2099-01-01", "end_date": None}, tmp_path)
    assert out.exit_code == 1
    assert "start_date 2099-01-01 is after the latest day WeChat has published" in out.stderr
    assert emulator.calls == []


# The latest published day, empty at 08:00:01 -----------------------------------------------------


def test_an_empty_latest_published_day_is_asked_again_by_the_next_run(
    emulator: WeChatEmulator, config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A published day whose answer is empty, taken as "the latest published day".
    latest = dt.date(2026, 11, 10)
    while emulator.hourly_rows(APP_ID, latest) or not emulator.hourly_rows(
        APP_ID, latest - dt.timedelta(days=1)
    ):
        latest -= dt.timedelta(days=1)
    monkeypatch.setattr(tap_module, "latest_published_day", lambda: latest)
    start = (latest - dt.timedelta(days=3)).isoformat()
    config |= {"start_date": start, "end_date": None, "lookback_days": 0}
    first = sync({k: v for k, v in config.items() if v is not None})
    before = (latest - dt.timedelta(days=1)).isoformat()
    assert bookmark(first.final_state, "share_hour") == before
    assert bookmark(first.final_state, "share_day") == before
    emulator.reset_calls()
    again = sync({k: v for k, v in config.items() if v is not None}, first.final_state)
    assert [c.begin_date for c in emulator.calls_to(HOURLY)] == [latest.isoformat()]
    assert bookmark(again.final_state, "share_hour") == before
    # A day with rows counts as read as usual: the day before it was bookmarked above.


def test_fractional_seconds_in_a_json_config_file_are_accepted(
    config: dict[str, t.Any], tmp_path: Path
) -> None:
    # The SDK reads a config file's fractions as Decimal: they are seconds all the same.
    out = run_tap(
        config | {"end_date": "2026-11-02", "request_timeout": 2.5, "state_message_interval": 0.5},
        tmp_path,
    )
    assert out.exit_code == 0, out.stderr
    assert out.records("share_hour")
