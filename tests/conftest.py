"""Shared fixtures: a started WeChat emulator, and ways to run the tap against it.

``sync`` runs the tap in this process (fast, for logic); ``run_tap`` runs the real
``tap-wechat-share`` console script in a subprocess (for exit codes, stderr and DEBUG logs).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tap_wechat_share.tap import TapWeChatShare
from tests.emulator import WeChatEmulator

if t.TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
TAP_EXECUTABLE = str(Path(sys.executable).with_name("tap-wechat-share"))

APP_ID = "wx1111111111111111"
APP_SECRET = "secret-of-app-one-0123456789abcdef"
APP_ID_2 = "wx2222222222222222"
APP_SECRET_2 = "secret-of-app-two-0123456789abcdef"
TODAY = dt.date(2026, 11, 29)


@dataclass
class TapOutput:
    """What one run of the tap wrote."""

    messages: list[dict[str, t.Any]]
    stderr: str = ""
    exit_code: int = 0
    stdout: str = field(default="", repr=False)

    def records(self, stream: str | None = None) -> list[dict[str, t.Any]]:
        return [
            m["record"]
            for m in self.messages
            if m["type"] == "RECORD" and (stream is None or m["stream"] == stream)
        ]

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, t.Any]:
        return self.states[-1]


def bookmark(state: dict[str, t.Any], stream: str, app_id: str = APP_ID) -> str | None:
    """The bookmark of ``app_id`` in ``stream`` in a state, or None."""
    for partition in state.get("bookmarks", {}).get(stream, {}).get("partitions", []):
        if partition["context"] == {"app_id": app_id}:
            return t.cast("str | None", partition.get("replication_key_value"))
    return None


def parse_messages(stdout: str) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def sync(config: dict[str, t.Any], state: dict[str, t.Any] | None = None) -> TapOutput:
    """Run the tap in this process; a failed account shows as exit_code 1."""
    buffer = io.StringIO()
    exit_code = 0
    with redirect_stdout(buffer):
        tap = TapWeChatShare(config=config, state=state or {}, validate_config=True)
        try:
            tap.sync_all()
        except SystemExit as exc:
            exit_code = int(exc.code or 0)
    return TapOutput(parse_messages(buffer.getvalue()), exit_code=exit_code)


def run_tap(
    config: dict[str, t.Any],
    tmp_path: Path,
    state: dict[str, t.Any] | None = None,
    *,
    log_level: str = "INFO",
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> TapOutput:
    """Run the ``tap-wechat-share`` console script in a subprocess."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    args = [TAP_EXECUTABLE, "--config", str(config_path), *extra_args]
    if state is not None:
        state_path = tmp_path / "state.json"
        state_path.write_text(json.dumps(state))
        args += ["--state", str(state_path)]
    process_env = {**os.environ, "TAP_WECHAT_SHARE_LOGLEVEL": log_level, **(env or {})}
    completed = subprocess.run(
        args, capture_output=True, text=True, env=process_env, timeout=300, check=False
    )
    return TapOutput(
        parse_messages(completed.stdout) if completed.stdout.startswith("{") else [],
        stderr=completed.stderr,
        exit_code=completed.returncode,
        stdout=completed.stdout,
    )


@pytest.fixture
def emulator() -> Iterator[WeChatEmulator]:
    """A started emulator knowing two apps, whose 'today' is TODAY (China)."""
    with WeChatEmulator({APP_ID: APP_SECRET, APP_ID_2: APP_SECRET_2}, today=TODAY) as emu:
        yield emu


@pytest.fixture
def config(emulator: WeChatEmulator) -> dict[str, t.Any]:
    """A single-account config against the emulator, over ten published days."""
    return {
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "start_date": "2026-11-01",
        "end_date": "2026-11-10",
        "api_url": emulator.url,
        "max_tries": 3,
    }


def hourly_rows(
    emu: WeChatEmulator, first: str, last: str, app_id: str = APP_ID
) -> list[dict[str, t.Any]]:
    """The emulator's hourly rows for first..last, as the tap's records."""
    return _expected(emu.hourly_rows, first, last, app_id)


def daily_rows(
    emu: WeChatEmulator, first: str, last: str, app_id: str = APP_ID
) -> list[dict[str, t.Any]]:
    """The emulator's daily rows for first..last, as the tap's records."""
    return _expected(emu.daily_rows, first, last, app_id)


def article_rows(
    emu: WeChatEmulator, first: str, last: str, app_id: str = APP_ID
) -> list[dict[str, t.Any]]:
    """The emulator's getarticleshare rows for first..last (final figures), as the tap's records."""

    def records(app: str, day: dt.date) -> list[dict[str, int | str]]:
        return [
            {
                "ref_date": row["ref_date"],
                "msgid": row["msgid"],
                "share_user": t.cast("dict[str, int]", row["detail"])["share_user"],
            }
            for row in emu.article_rows(app, day)
        ]

    return _expected(records, first, last, app_id)


def _expected(
    rows_of: t.Callable[[str, dt.date], list[dict[str, int | str]]],
    first: str,
    last: str,
    app_id: str,
) -> list[dict[str, t.Any]]:
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    out: list[dict[str, t.Any]] = []
    while day <= end:
        out.extend({"app_id": app_id, **row} for row in rows_of(app_id, day))
        day += dt.timedelta(days=1)
    return out


def key_of(record: dict[str, t.Any]) -> tuple[t.Any, ...]:
    """A record's identity, for comparing sets of rows."""
    return tuple(
        record.get(field) for field in ("app_id", "ref_date", "ref_hour", "share_scene", "msgid")
    )
