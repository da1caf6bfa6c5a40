"""Many accounts in one run, tokens from a command, and one failing account not stopping others."""

from __future__ import annotations

import json
import logging
import shlex
import sys
import typing as t

import pytest

from tests.conftest import APP_ID, TODAY, bookmark, hourly_rows, run_tap, sync
from tests.emulator import Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
STABLE = "/cgi-bin/stable_token"
ARTICLE = "/datacube/getarticleshare"
APPS = {
    "wxaaaa000000000001": "secret-a-0123456789abcdef",
    "wxbbbb000000000002": "secret-b-0123456789abcdef",
    "wxcccc000000000003": "secret-c-0123456789abcdef",
    "wxdddd000000000004": "secret-d-0123456789abcdef",
}
A, B, C, D = APPS


@pytest.fixture
def emu4() -> Iterator[WeChatEmulator]:
    with WeChatEmulator(APPS, today=TODAY) as emu:
        yield emu


def token_service_command(emu: WeChatEmulator, app_id: str, tmp_path: Path) -> str:
    """A central-token-service stand-in: asks the emulator's stable_token, prints the token."""
    script = tmp_path / f"token_service_{app_id}.py"
    script.write_text(
        "import json, sys, urllib.request\n"
        f"body = json.dumps({{'grant_type': 'client_credential', 'appid': {app_id!r},"
        f" 'secret': {APPS[app_id]!r}, 'force_refresh': False}}).encode()\n"
        f"answer = urllib.request.urlopen({emu.url + STABLE!r}, body).read()\n"
        "print('token service: handing out a token', file=sys.stderr)\n"
        "print(json.loads(answer)['access_token'])\n"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def four_accounts(emu: WeChatEmulator, tmp_path: Path) -> list[dict[str, str]]:
    return [
        {"app_id": A, "app_secret": APPS[A]},
        {"app_id": B, "access_token": emu.issue_token(B)},
        {"app_id": C, "access_token_command": token_service_command(emu, C, tmp_path)},
        {"app_id": D, "app_secret": "a-wrong-secret-for-d"},
    ]


def test_four_accounts_three_load_one_fails_named_at_the_end_then_each_resumes(
    emu4: WeChatEmulator, tmp_path: Path
) -> None:
    config: dict[str, t.Any] = {
        "accounts": four_accounts(emu4, tmp_path),
        "start_date": "2026-11-01",
        "end_date": "2026-11-06",
        "api_url": emu4.url,
    }
    out = run_tap(config, tmp_path)
    assert out.exit_code == 1
    for app_id in (A, B, C):
        got = [r for r in out.records("share_hour") if r["app_id"] == app_id]
        assert got == hourly_rows(emu4, "2026-11-01", "2026-11-06", app_id)
        assert bookmark(out.final_state, "share_hour", app_id) == "2026-11-06"
        assert bookmark(out.final_state, "share_day", app_id) == "2026-11-06"
    assert not [r for r in out.records() if r["app_id"] == D]
    assert bookmark(out.final_state, "share_hour", D) is None
    last_lines = out.stderr.strip().splitlines()[-2:]
    assert "1 of 4 accounts failed" in last_lines[0]
    assert D in last_lines[1]
    assert "errcode 40125" in last_lines[1]
    # One token call per account (A, D directly; C through its command), none for B.
    assert sorted(c.app_id or "" for c in emu4.calls_to(STABLE)) == [A, C, D]
    assert emu4.calls_to("/cgi-bin/token") == []
    assert "token service: handing out a token" in out.stderr

    # Second run, later end date, lookback 1: each account resumes from its own bookmark.
    emu4.reset_calls()
    state = out.final_state
    config["accounts"][3]["app_secret"] = APPS[D]  # fixed
    config |= {"end_date": "2026-11-08", "lookback_days": 1}
    again = run_tap(config, tmp_path, state=state)
    assert again.exit_code == 0, again.stderr[-1500:]
    firsts: dict[str | None, str] = {}
    for call in emu4.calls_to(HOURLY):
        firsts[call.app_id] = min(firsts.get(call.app_id, "9999"), call.begin_date or "")
    assert firsts == {A: "2026-11-06", B: "2026-11-06", C: "2026-11-06", D: "2026-11-01"}
    for app_id in APPS:
        assert bookmark(again.final_state, "share_hour", app_id) == "2026-11-08"


def test_token_command_runs_again_once_after_a_refusal(
    emu4: WeChatEmulator, tmp_path: Path
) -> None:
    emu4.add_fault(Fault("rotate", path=HOURLY, day="2026-11-03", app_id=C))
    config = {
        "app_id": C,
        "access_token_command": token_service_command(emu4, C, tmp_path),
        "start_date": "2026-11-01",
        "end_date": "2026-11-05",
        "api_url": emu4.url,
        "max_concurrent_requests": 1,
    }
    out = sync(config)
    assert out.exit_code == 0
    assert len(emu4.calls_to(STABLE)) == 2  # the command ran twice
    assert out.records("share_hour") == hourly_rows(emu4, "2026-11-01", "2026-11-05", C)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("echo 'no token here' >&2; exit 3", "failed with exit code 3"),
        ("true", "printed nothing"),
        ("echo two words", "printed more than one word"),
    ],
)
def test_failing_token_command_is_a_clear_error_and_others_go_on(
    emu4: WeChatEmulator, tmp_path: Path, command: str, message: str
) -> None:
    config = {
        "accounts": [
            {"app_id": C, "access_token_command": command},
            {"app_id": A, "app_secret": APPS[A]},
        ],
        "start_date": "2026-11-01",
        "end_date": "2026-11-02",
        "api_url": emu4.url,
    }
    out = run_tap(config, tmp_path)
    assert out.exit_code == 1
    assert message in out.stderr.strip().splitlines()[-1]
    assert out.records("share_hour") == hourly_rows(emu4, "2026-11-01", "2026-11-02", A)
    assert "two words" not in out.stderr.replace("printed more than one word", "")


def test_many_accounts_state_resumes_each_partition(emu4: WeChatEmulator) -> None:
    accounts = [{"app_id": app, "app_secret": secret} for app, secret in APPS.items()]
    state = {
        "bookmarks": {
            "share_hour": {
                "partitions": [
                    {
                        "context": {"app_id": A},
                        "replication_key": "ref_date",
                        "replication_key_value": "2026-11-02",
                    },
                    {
                        "context": {"app_id": B},
                        "replication_key": "ref_date",
                        "replication_key_value": "2026-11-04",
                    },
                ]
            }
        }
    }
    config = {
        "accounts": accounts,
        "start_date": "2026-11-01",
        "end_date": "2026-11-05",
        "api_url": emu4.url,
    }
    out = sync(config | {"lookback_days": 0}, state)
    assert out.exit_code == 0
    days: dict[str, set[str]] = {}
    for call in emu4.calls_to(HOURLY):
        days.setdefault(call.app_id or "", set()).add(call.begin_date or "")
    assert days[A] == {"2026-11-03", "2026-11-04", "2026-11-05"}
    assert days[B] == {"2026-11-05"}
    assert days[C] == days[D] == {f"2026-11-0{d}" for d in range(1, 6)}
    # Every stream (4) of every account (4).
    assert json.dumps(out.final_state).count('"replication_key_value": "2026-11-05"') == 16


def test_top_level_credentials_with_accounts_are_refused(
    emu4: WeChatEmulator, tmp_path: Path
) -> None:
    config = {
        "app_id": A,
        "access_token_command": "echo x",
        "accounts": [{"app_id": B, "app_secret": APPS[B]}],
        "start_date": "2026-11-01",
        "api_url": emu4.url,
    }
    out = run_tap(config, tmp_path)
    assert out.exit_code == 1
    assert "accounts is given, so app_id must not be" in out.stderr
    assert emu4.calls == []


def test_an_account_that_failed_in_one_stream_is_not_read_in_the_next(
    emu4: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # A fails at its first datacube call, whichever stream runs first; B is unaffected.
    for path in (HOURLY, DAILY, ARTICLE):
        emu4.add_fault(Fault("errcode", path=path, app_id=A, errcode=48001, times=-1))
    config = {
        "accounts": [
            {"app_id": A, "app_secret": APPS[A]},
            {"app_id": B, "app_secret": APPS[B]},
        ],
        "start_date": "2026-11-01",
        "end_date": "2026-11-03",
        "api_url": emu4.url,
        "max_concurrent_requests": 1,
    }
    out = sync(config)
    assert out.exit_code == 1
    calls_for_a = [c for c in emu4.calls if c.app_id == A and c.path.startswith("/datacube/")]
    assert len(calls_for_a) == 1, [(c.path, c.begin_date) for c in calls_for_a]
    assert not [r for r in out.records() if r["app_id"] == A]
    # B is read in both streams, the one A was skipped in included.
    assert out.records("share_hour") == hourly_rows(emu4, "2026-11-01", "2026-11-03", B)
    for stream in ("share_hour", "share_day"):
        assert bookmark(out.final_state, stream, B) == "2026-11-03"
    assert "1 of 2 accounts failed" in caplog.text
    why = (
        f"{A} article_share 2026-11-01: errcode 48001: system error; the account may not call "
        "datacube: it must be a certified (认证) Official Account, and a third-party platform "
        "needs permission set 7"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"{A} failed in article_share: {why}",
        "1 of 2 accounts failed; the others were read and their state written:",
        f"  {why}",
    ]


def test_an_account_s_own_token_command_comes_before_the_top_level_one(
    emu4: WeChatEmulator, tmp_path: Path
) -> None:
    own, shared = tmp_path / "own.json", tmp_path / "shared.json"
    own.write_text(json.dumps({A: emu4.issue_token(A)}))
    shared.write_text(json.dumps({B: emu4.issue_token(B)}))  # no token for A here
    read = (
        f'{sys.executable} -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])"'
    )
    config = {
        "accounts": [{"app_id": A, "access_token_command": f"{read} {own} {A}"}, {"app_id": B}],
        "access_token_command": f'{read} {shared} "$WECHAT_APP_ID"',
        "start_date": "2026-11-01",
        "end_date": "2026-11-02",
        "api_url": emu4.url,
    }
    out = sync(config)
    assert out.exit_code == 0
    for app_id in (A, B):
        got = [r for r in out.records("share_hour") if r["app_id"] == app_id]
        assert got == hourly_rows(emu4, "2026-11-01", "2026-11-02", app_id)
    assert emu4.calls_to("/cgi-bin/stable_token") == []


def test_access_token_command_timeout_ends_a_slow_command_and_its_account(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = {
        "app_id": APP_ID,
        "access_token_command": "sleep 30",
        "access_token_command_timeout": 0.3,
        "start_date": "2026-11-01",
        "end_date": "2026-11-02",
        "api_url": emulator.url,
    }
    out = sync(config)
    assert out.exit_code == 1
    assert out.records() == []
    why = (
        f"access_token_command for {APP_ID} did not finish within 0.3 s; check the command, or "
        "raise access_token_command_timeout"
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[-1] == f"The account failed: {why}"
    assert errors[0].startswith(f"{APP_ID} failed in article_share: ")
    assert errors[0].endswith(why)
