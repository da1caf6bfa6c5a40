"""Hundreds of accounts in one run: files of accounts, one token command for all, STATE paced by
time, requests in flight across accounts, and crash safety."""

from __future__ import annotations

import copy
import csv
import io
import json
import sys
import typing as t
from contextlib import redirect_stdout

import pytest
from singer_sdk.streams._state import StreamStateManager

from tap_wechat_share.run import STATE_FLOOR, STATE_SHARE, Run
from tap_wechat_share.state import IndexedStateManager
from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import (
    TODAY,
    bookmark,
    check_messages,
    hourly_rows,
    key_of,
    killed_after_states,
    run_tap,
    sync,
)
from tests.emulator import WeChatEmulator
from tests.test_concurrency import max_overlap

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from singer_sdk.helpers.types import TapState

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
STABLE = "/cgi-bin/stable_token"
MANY = 300
APPS = {f"wx{n:016d}": f"secret-of-{n:05d}-0123456789" for n in range(1, MANY + 1)}


@pytest.fixture(scope="module")
def many() -> Iterator[WeChatEmulator]:
    with WeChatEmulator(APPS, today=TODAY) as emu:
        yield emu


@pytest.fixture
def emu(many: WeChatEmulator) -> WeChatEmulator:
    many.reset_calls()
    many.clear_faults()
    many.latency = 0.0
    return many


def base(emu: WeChatEmulator, **more: t.Any) -> dict[str, t.Any]:
    return {
        "start_date": "2026-11-01",
        "end_date": "2026-11-02",
        "api_url": emu.url,
        "max_tries": 2,
        **more,
    }


def ready(emu: WeChatEmulator, count: int = MANY) -> list[dict[str, str]]:
    return [{"app_id": a, "access_token": emu.issue_token(a)} for a in list(APPS)[:count]]


# Files of accounts and one token command for all -------------------------------------------------

TOKEN_COMMAND = (
    f'{sys.executable} -c "import json, os, sys; '
    "print(json.load(open(sys.argv[1]))[os.environ['WECHAT_APP_ID']])\" {path}"
)


def test_accounts_file_json_and_csv_with_one_token_command_for_all(
    emu: WeChatEmulator, tmp_path: Path
) -> None:
    apps = list(APPS)[:6]
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({a: emu.issue_token(a) for a in apps}))
    as_json = tmp_path / "accounts.json"
    # Two with their own credential, one served by the top-level command.
    as_json.write_text(
        json.dumps(
            [
                {"app_id": apps[0], "app_secret": APPS[apps[0]]},
                {"app_id": apps[1], "access_token": emu.issue_token(apps[1])},
                {"app_id": apps[2]},
            ]
        )
    )
    as_csv = tmp_path / "accounts.csv"
    with as_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["app_id", "app_secret", "access_token"])
        writer.writerow([apps[3], APPS[apps[3]], ""])
        writer.writerow([apps[4], "", ""])
        writer.writerow([apps[5], "", ""])
    command = TOKEN_COMMAND.format(path=tokens)
    for path, group in ((as_json, apps[:3]), (as_csv, apps[3:])):
        emu.reset_calls()
        out = run_tap(base(emu, accounts_file=str(path), access_token_command=command), tmp_path)
        assert out.exit_code == 0, out.stderr
        for app_id in group:
            got = [r for r in out.records("share_hour") if r["app_id"] == app_id]
            assert got == hourly_rows(emu, "2026-11-01", "2026-11-02", app_id)
            assert bookmark(out.final_state, "share_hour", app_id) == "2026-11-02"
        assert {r["app_id"] for r in out.records()} == set(group)
        assert len(emu.calls_to(STABLE)) == 1  # only the account with an app_secret
        assert emu.calls_to("/cgi-bin/token") == []
        for app_id in group:
            assert emu.issue_token(app_id) not in out.stderr


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        (
            "a.csv",
            "app_id,app_secret\nwx1,s1\n,s2\n",
            "accounts_file a.csv line 3: needs an app_id",
        ),
        (
            "a.csv",
            "app_id,secret\nwx1,s1\n",
            "accounts_file a.csv line 1: unknown column(s) secret",
        ),
        ("a.csv", "app_secret\ns1\n", "accounts_file a.csv line 1: no app_id column"),
        ("a.csv", "app_id,app_secret\nwx1,s1\nwx1,s2\n", "line 3: app_id wx1 is listed twice"),
        ("a.csv", "app_id,app_secret\nwx1,s1,x\n", "accounts_file a.csv line 2: has 3 field(s)"),
        (
            "a.csv",
            "app_id,app_secret\nwx1,\n",
            "accounts_file a.csv line 2 (wx1): give one of app_secret, access_token",
        ),
        (
            "a.json",
            '[{"app_id": "wx1",\n "app_secret": }]',
            "accounts_file a.json line 2: not valid",
        ),
        ("a.json", '{"app_id": "wx1"}', "accounts_file a.json: must hold a JSON list"),
        ("a.json", '[{"app_id": "wx1", "secret": "s"}]', "item 0: unknown key(s) secret"),
        ("a.txt", "wx1", "accounts_file: a.txt is neither .json nor .csv"),
        ("a.csv", "app_id\n", "accounts_file a.csv: holds no account (a truncated export?)"),
        ("a.json", "[]", "accounts_file a.json: holds no account (a truncated export?)"),
    ],
)
def test_a_bad_accounts_file_gives_one_line_naming_where_before_any_call(
    emu: WeChatEmulator, tmp_path: Path, name: str, text: str, error: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    out = run_tap(base(emu, accounts_file=str(path)), tmp_path)
    assert out.exit_code == 1
    assert error in out.stderr
    assert "Traceback" not in out.stderr
    assert emu.calls == []


def test_accounts_in_the_environment_that_differ_only_in_case_are_refused_before_any_call(
    emu: WeChatEmulator, tmp_path: Path
) -> None:
    first, second = list(APPS)[:2]
    accounts = [
        {"app_id": first, "app_secret": APPS[first]},
        {"app_id": second, "app_secret": APPS[second]},
        {"app_id": first.upper(), "app_secret": APPS[first]},
    ]
    env = {"TAP_WECHAT_SHARE_ACCOUNTS": json.dumps(accounts)}
    out = run_tap(base(emu), tmp_path, extra_args=("--config", "ENV"), env=env)
    assert out.exit_code == 1
    assert (
        f"accounts[2]: app_id {first.upper()} and accounts[0]: app_id {first} differ only in case"
    ) in out.stderr.strip().splitlines()[-1]
    assert emu.calls == []


def test_a_missing_accounts_file_is_named(emu: WeChatEmulator, tmp_path: Path) -> None:
    out = run_tap(base(emu, accounts_file="nowhere/accounts.csv"), tmp_path)
    assert out.exit_code == 1
    assert "accounts_file: nowhere/accounts.csv does not exist; check the path" in out.stderr


# Hundreds of accounts ------------------------------------------------------------------------


def test_hundreds_of_accounts_each_contiguous_in_day_order_exact_with_state_at_stream_ends(
    emu: WeChatEmulator,
) -> None:
    config = base(emu, accounts=ready(emu), max_concurrent_requests=8)
    config["state_message_interval"] = 3600  # nothing is due within the run: STATE at stream ends
    out = sync(config)
    assert out.exit_code == 0
    assert len(out.states) <= 4  # one at the end of each of the four streams
    for stream in ("share_day", "share_hour"):
        records = out.records(stream)
        order = [r["app_id"] for r in records]
        # Contiguous per account, accounts in the order given.
        runs = [a for i, a in enumerate(order) if i == 0 or a != order[i - 1]]
        assert runs == [a for a in APPS if a in set(order)]
        for app_id in APPS:
            got = [r for r in records if r["app_id"] == app_id]
            assert got == sorted(got, key=lambda r: (r["ref_date"], r.get("ref_hour", 0)))
            assert bookmark(out.final_state, stream, app_id) == "2026-11-02"
        assert sorted(key_of(r) for r in out.records("share_hour")) == sorted(
            key_of(r) for a in APPS for r in hourly_rows(emu, "2026-11-01", "2026-11-02", a)
        )
    assert len(emu.calls_to(HOURLY)) == 2 * MANY
    assert len(emu.calls_to(DAILY)) == MANY


def test_requests_in_flight_across_accounts_reach_the_setting_and_never_pass_it(
    emu: WeChatEmulator,
) -> None:
    emu.latency = 0.03
    accounts = [{"app_id": a, "app_secret": APPS[a]} for a in list(APPS)[:40]]
    out = sync(base(emu, accounts=accounts, max_concurrent_requests=6, end_date="2026-11-01"))
    assert out.exit_code == 0
    calls = emu.calls
    assert max_overlap(calls) == 6  # datacube and token requests alike
    assert len(emu.calls_to(STABLE)) == 40  # one per account and run
    # The next accounts' tokens were fetched while earlier accounts' windows were in flight.
    first_hourly = min(c.started for c in emu.calls_to(HOURLY))
    assert any(c.started < first_hourly for c in emu.calls_to(DAILY))


def test_one_at_a_time_means_one_request_at_a_time(emu: WeChatEmulator) -> None:
    emu.latency = 0.01
    accounts = [{"app_id": a, "app_secret": APPS[a]} for a in list(APPS)[:10]]
    out = sync(base(emu, accounts=accounts, max_concurrent_requests=1))
    assert out.exit_code == 0
    assert max_overlap(emu.calls) == 1


@pytest.mark.boundary
def test_killed_with_hundreds_of_accounts_then_resumed_loses_no_row_and_rereads_no_day(
    emu: WeChatEmulator, tmp_path: Path
) -> None:
    emu.latency = 0.002
    accounts = ready(emu, 200)
    config = base(emu, accounts=accounts, lookback_days=0, state_message_interval=0.05)
    first = killed_after_states(config, tmp_path, 3)
    last_state = next(m["value"] for m in reversed(first) if m["type"] == "STATE")
    emu.reset_calls()
    resumed = sync(config, copy.deepcopy(last_state))
    assert resumed.exit_code == 0
    merged = {key_of(r): r for r in [m["record"] for m in first if m["type"] == "RECORD"]}
    merged |= {key_of(r): r for r in resumed.records()}
    expected = [
        r
        for a, _ in [(x["app_id"], 0) for x in accounts]
        for r in hourly_rows(emu, "2026-11-01", "2026-11-02", a)
    ]
    assert {k for k in merged if k[2] is not None} == {key_of(r) for r in expected}
    # No day up to an account's bookmark in the last STATE is asked again.
    for call in emu.calls_to(HOURLY):
        assert call.app_id is not None
        mark = bookmark(last_state, "share_hour", call.app_id)
        assert mark is None or (call.begin_date or "") > mark


# The constant-time state lookup against the SDK's own -----------------------------------------


STATES: list[dict[str, t.Any]] = [
    {},
    {"bookmarks": {}},
    {"bookmarks": {"s": {}}},
    {"bookmarks": {"s": {"replication_key_value": "2026-11-01"}}},
    {
        "bookmarks": {
            "s": {
                "partitions": [
                    {"context": {"app_id": "a"}, "replication_key_value": "2026-11-01"},
                    {"context": {"app_id": "b", "x": 1}},
                    {"context": {"app_id": "c"}, "replication_key": None},
                ]
            },
            "other": {"partitions": [{"context": {"app_id": "a"}}]},
        }
    },
]
CONTEXTS: list[dict[str, t.Any] | None] = [
    None,
    {"app_id": "a"},
    {"app_id": "b", "x": 1},
    {"x": 1, "app_id": "b"},
    {"app_id": "c"},
    {"app_id": "new"},
    {"app_id": "new"},
    {"app_id": ["unhashable"]},
]


@pytest.mark.parametrize("state", STATES)
def test_the_indexed_state_lookup_gives_what_the_sdk_gives_byte_for_byte(
    state: dict[str, t.Any],
) -> None:
    ours_state, sdk_state = copy.deepcopy(state), copy.deepcopy(state)
    ours = IndexedStateManager(stream_name="s", tap_state=ours_state)
    sdk = StreamStateManager(stream_name="s", tap_state=t.cast("TapState", sdk_state))
    for context in CONTEXTS:
        mine, theirs = ours.get_context_state(context), sdk.get_context_state(context)
        assert json.dumps(mine) == json.dumps(theirs)
        mine["touched"] = theirs["touched"] = str(context)  # the very dict in the state
        assert json.dumps(ours_state) == json.dumps(sdk_state)
    # A partition appended behind its back (as the SDK's helpers do) is found too.
    ours_state["bookmarks"]["s"]["partitions"].append({"context": {"app_id": "late"}, "v": 1})
    sdk_state["bookmarks"]["s"]["partitions"].append({"context": {"app_id": "late"}, "v": 1})
    assert ours.get_context_state({"app_id": "late"}) == sdk.get_context_state({"app_id": "late"})
    assert json.dumps(ours_state) == json.dumps(sdk_state)


def test_a_new_list_of_partitions_of_the_same_length_is_looked_up_anew() -> None:
    def state(*app_ids: str) -> dict[str, t.Any]:
        partitions = [{"context": {"app_id": a}, "replication_key_value": a} for a in app_ids]
        return {"bookmarks": {"s": {"partitions": partitions}}}

    tap_state = state("a", "b")
    manager = IndexedStateManager(stream_name="s", tap_state=tap_state)
    assert manager.find_context_state({"app_id": "a"}) == {
        "context": {"app_id": "a"},
        "replication_key_value": "a",
    }
    tap_state["bookmarks"]["s"] = state("c", "d")["bookmarks"]["s"]  # as a reloaded state
    assert manager.find_context_state({"app_id": "a"}) is None
    assert manager.find_context_state({"app_id": "c"}) == {
        "context": {"app_id": "c"},
        "replication_key_value": "c",
    }


def test_duplicate_partitions_are_refused_like_the_sdk_does_when_a_bookmark_is_read() -> None:
    state = {"bookmarks": {"s": {"partitions": [{"context": {"app_id": "a"}}] * 2}}}
    ours = IndexedStateManager(stream_name="s", tap_state=copy.deepcopy(state))
    sdk = StreamStateManager(stream_name="s", tap_state=t.cast("TapState", copy.deepcopy(state)))
    refusals = []
    for lookup in (ours.find_context_state, sdk.get_context_state):
        with pytest.raises(ValueError, match="duplicate entries for partition") as raised:
            lookup({"app_id": "a"})
        refusals.append((type(raised.value), str(raised.value)))
    assert refusals[0] == refusals[1]
    # Those of other accounts are no obstacle (the SDK scans only for the one looked up).
    assert ours.find_context_state({"app_id": "b"}) is None


def paced(config: dict[str, t.Any], state: dict[str, t.Any] | None = None) -> list[str]:
    """Run share_hour in this process with STATE pacing's clock stopped; return the output lines.

    On a stopped clock no STATE is due by time: what is left is the rule by output, exactly.
    """
    catalog = TapWeChatShare(config=config).catalog_dict
    for stream in catalog["streams"]:
        for item in stream["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["selected"] = stream["tap_stream_id"] == "share_hour"
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(buffer):
        patch.setattr(Run, "clock", staticmethod(lambda: 0.0))
        tap = TapWeChatShare(config=config, state=copy.deepcopy(state or {}), catalog=catalog)
        tap.sync_all()
    lines = buffer.getvalue().splitlines(keepends=True)
    check_messages([json.loads(line) for line in lines], state)
    return lines


def check_state_pacing(lines: list[str]) -> None:
    """The bounds of Run.state_due with no STATE by time, in bytes: for gaps and in total."""
    others = sum(len(line) for line in lines if not line.startswith('{"type":"STATE"'))
    sizes = [len(line) for line in lines if line.startswith('{"type":"STATE"')]
    assert sizes, "no STATE at all"
    # After a STATE of size S larger than STATE_FLOOR, the next is due by output once the other
    # messages since add up to 4 x S, so within that plus one window's records (a few KB).
    gap = previous = 0
    for line in lines:
        if line.startswith('{"type":"STATE"'):
            bound = (1 - STATE_SHARE) / STATE_SHARE * previous + 20_000
            assert gap <= bound, f"{gap} bytes without STATE after one of {previous}"
            gap, previous = 0, len(line)
        else:
            gap += len(line)
    # Those due by output add up to at most a quarter of the others, plus the final state
    # (and the STATE that ends the stream).
    large = sum(
        size for size, before in zip(sizes[1:], sizes, strict=False) if before > STATE_FLOOR
    )
    assert large <= others / 4 + 2 * sizes[-1]


def test_a_daily_run_over_existing_bookmarks_writes_state_all_the_way_through(
    emu: WeChatEmulator,
) -> None:
    # Every account has a bookmark: the state does not grow during the run. The budget this
    # replaces (10x the latest STATE + 1 MiB) stopped paced STATE early: the last 2 MB of
    # records had no STATE until the stream's end.
    accounts = ready(emu)
    state = {
        "bookmarks": {
            stream: {
                "partitions": [
                    {
                        "context": {"app_id": a["app_id"]},
                        "replication_key": "ref_date",
                        "replication_key_value": "2026-11-26",
                    }
                    for a in accounts
                ]
            }
            for stream in ("share_hour",)
        }
    }
    config = base(emu, accounts=accounts, end_date="2026-11-27", lookback_days=0)
    lines = paced(config | {"state_message_interval": 0}, state)
    check_state_pacing(lines)
    records = [json.loads(line) for line in lines if line.startswith('{"type":"RECORD"')]
    assert len(records) > 10_000  # a day x 300 accounts


def test_a_fresh_run_writes_state_within_both_bounds(emu: WeChatEmulator) -> None:
    # A STATE after every window were it not for the pacing: each holds every account so far.
    check_state_pacing(paced(base(emu, accounts=ready(emu), state_message_interval=0)))
