"""The token command as a real process: timeout, process group, children, stdin, stop, and
the environment it runs in."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest

from tap_wechat_share.accounts import AccountEntry, make_accounts
from tap_wechat_share.authenticators import CommandTokenAuthenticator
from tap_wechat_share.client import FatalError, StopRequestedError, WeChatClient
from tap_wechat_share.redact import REDACTED, redact_text
from tests.conftest import APP_ID, APP_ID_2, run_tap, two_accounts

# Process-boundary tests: scripts/test runs them on every Python the package supports.
pytestmark = pytest.mark.boundary

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.emulator import WeChatEmulator

TOKEN = "token-from-the-command-0123456789"


def _live_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies count as gone: on this machine's
    init, orphans are never reaped, so ``os.killpg(pgid, 0)`` would see them for ever)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in {"Z", "X"}


def _all_gone(pgid: int, *pids: int) -> bool:
    """True once neither group ``pgid`` nor any of ``pids`` runs (waits for SIGKILL to land)."""
    for _ in range(100):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            group_gone = True
        else:
            group_gone = not _live_members(pgid)
        if group_gone and not any(_running(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _read_pids(path: Path) -> list[int]:
    """The pids a command wrote to ``path``, one a line (waits until it wrote two)."""
    for _ in range(200):
        if path.exists():
            pids = [int(line) for line in path.read_text().split()]
            if len(pids) >= 2:
                return pids
        time.sleep(0.05)
    raise AssertionError("the command did not write its pids")


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Process groups a test leaves behind; killed at its end whatever happened."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_a_command_that_runs_too_long_is_killed_with_its_children(
    tmp_path: Path, leftovers: list[int]
) -> None:
    pids = tmp_path / "pids"
    # The child outlives the shell: only killing the whole group ends it.
    command = f"echo $$ > {pids}; sleep 120 & echo $! >> {pids}; sleep 60"
    authenticator = CommandTokenAuthenticator(APP_ID, command, timeout=1)
    with pytest.raises(FatalError) as caught:
        authenticator.token()
    shell, child = _read_pids(pids)
    leftovers.append(shell)
    assert str(caught.value) == (
        f"access_token_command for {APP_ID} did not finish within 1 s; check the command, "
        "or raise access_token_command_timeout"
    )
    assert _all_gone(shell, shell, child)


def test_the_token_is_read_when_the_shell_exits_whatever_its_children_hold(
    tmp_path: Path, leftovers: list[int]
) -> None:
    # The background child keeps stdout and stderr open for a minute: waiting for the end of
    # the output would run into the timeout.
    pids = tmp_path / "pids"
    command = (
        f"echo $$ > {pids}; echo {TOKEN}; echo 'asked the service' >&2; "
        f"sleep 60 & echo $! >> {pids}"
    )
    authenticator = CommandTokenAuthenticator(APP_ID, command, timeout=10)
    try:
        assert authenticator.token() == TOKEN
    finally:
        leftovers.append(_read_pids(pids)[0])


def test_the_command_reads_an_empty_stdin(leftovers: list[int]) -> None:
    # Give this process a stdin that never ends: a command inheriting it would wait for ever.
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        authenticator = CommandTokenAuthenticator(
            APP_ID, f"read answer; echo {TOKEN}${{answer}}", timeout=5
        )
        assert authenticator.token() == TOKEN
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    del leftovers


def test_a_stop_kills_a_running_command(tmp_path: Path, leftovers: list[int]) -> None:
    pids = tmp_path / "pids"
    stop = threading.Event()
    command = f"echo $$ > {pids}; sleep 30 & echo $! >> {pids}; wait"
    authenticator = CommandTokenAuthenticator(APP_ID, command, timeout=60, stop_event=stop)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            authenticator.token()
        except BaseException as exc:  # noqa: BLE001 - kept for the assertion below
            errors.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    shell, child = _read_pids(pids)
    leftovers.append(shell)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], StopRequestedError)
    assert str(errors[0]) == f"{APP_ID} access_token_command: abandoned, the run is stopping"
    assert _all_gone(shell, shell, child)
    # A stop is not a failure of the source: nothing is remembered as its answer.
    assert authenticator._failure is None


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("echo oops >&2; exit 3", "failed with exit code 3; its stderr is in the log above"),
        ("true", "printed nothing; it must print the token only"),
        ("echo two words", "printed more than one word; it must print the token only"),
    ],
)
def test_bad_commands_are_clear_errors(command: str, message: str) -> None:
    with pytest.raises(FatalError, match=message):
        CommandTokenAuthenticator(APP_ID, command, timeout=10).token()


def test_stderr_is_logged_redacted_and_stdout_never(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # A byte that is not UTF-8 is shown as U+FFFD rather than failing the token.
    command = (
        f"echo 'from the service: access_token={TOKEN}' >&2; printf 'odd \\377\\n' >&2; "
        f"echo {TOKEN}"
    )
    authenticator = CommandTokenAuthenticator(APP_ID, command, timeout=10)
    assert authenticator.token() == TOKEN
    assert [r.getMessage() for r in caplog.records if r.name.startswith("tap_wechat_share")] == [
        f"{APP_ID} access_token_command: from the service: access_token=<redacted>",
        f"{APP_ID} access_token_command: odd \ufffd",
    ]
    assert TOKEN not in caplog.text


def test_the_printed_token_is_redacted_wherever_it_appears_later() -> None:
    token = f"printed-{uuid.uuid4().hex}"  # new on every run: the registry is per process
    assert CommandTokenAuthenticator(APP_ID, f"printf '%s\\377' {token}", timeout=10).token() == (
        f"{token}\ufffd"
    )
    assert redact_text(f"a {token}\ufffd in plain text") == f"a {REDACTED} in plain text"


def test_a_command_is_not_started_once_the_run_is_stopping(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    marker = tmp_path / "ran"
    authenticator = CommandTokenAuthenticator(
        APP_ID, f"touch {marker}", timeout=10, stop_event=stop
    )
    with pytest.raises(StopRequestedError) as raised:
        authenticator.token()
    assert str(raised.value) == f"{APP_ID} access_token_command: abandoned, the run is stopping"
    assert not marker.exists()


def test_the_command_runs_in_the_environment_it_is_given() -> None:
    env = {"PATH": os.environ["PATH"], "WECHAT_APP_ID": APP_ID}
    authenticator = CommandTokenAuthenticator(
        APP_ID, 'echo "token-for-$WECHAT_APP_ID"', env, timeout=10
    )
    assert authenticator.token() == f"token-for-{APP_ID}"


def test_a_large_stderr_does_not_block_the_command() -> None:
    # More than a pipe holds (64 KiB): the command would block if nothing read while it runs.
    command = f"head -c 200000 /dev/zero | tr '\\0' 'x' >&2; echo {TOKEN}"
    authenticator = CommandTokenAuthenticator(APP_ID, command, timeout=10)
    assert authenticator.token() == TOKEN


def test_what_a_command_leaves_running_ends_with_it_in_a_real_run(
    emulator: WeChatEmulator, tmp_path: Path, leftovers: list[int]
) -> None:
    # Each account's command starts a background sleep and prints the account's token: after
    # the run, no sleep is left (one per account stayed behind, exit 0).
    pids = tmp_path / "pids"
    accounts = [
        {
            "app_id": app_id,
            "access_token_command": (
                f"sleep 123 & echo $! >> {pids}; echo {emulator.issue_token(app_id)}"
            ),
        }
        for app_id in (APP_ID, APP_ID_2)
    ]
    config = two_accounts(emulator) | {"accounts": accounts, "end_date": "2026-11-01"}
    out = run_tap(config, tmp_path)
    children = [int(line) for line in pids.read_text().split()]
    leftovers.extend(os.getpgid(pid) for pid in children if _running(pid))
    assert out.exit_code == 0
    assert len(children) == 2
    assert _all_gone(children[0], *children)


def test_accounts_share_one_environment_and_each_command_gets_its_own_app_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAP_TEST_MARK", "shared")
    config = {"access_token_command": 'echo "t-$WECHAT_APP_ID-$TAP_TEST_MARK"'}
    entries = [AccountEntry(f"wx{n}", None, None, f"accounts[{n}]") for n in range(3)]
    entries.append(AccountEntry("wx9", "access_token_command", 'echo "own-$WECHAT_APP_ID"', "x"))
    accounts = make_accounts(config, entries, WeChatClient("http://127.0.0.1:9"))
    authenticators = [
        t.cast("CommandTokenAuthenticator", a.authenticator) for a in accounts.values()
    ]
    assert all(a.env is authenticators[0].env for a in authenticators)  # one mapping, not four
    assert "WECHAT_APP_ID" not in (authenticators[0].env or {})
    assert [a.token() for a in authenticators] == [
        "t-wx0-shared",
        "t-wx1-shared",
        "t-wx2-shared",
        "own-wx9",
    ]
