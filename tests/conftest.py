"""Shared fixtures: a started WeChat emulator, and ways to run the tap against it.

``sync`` runs the tap in this process (fast, for logic); ``run_tap`` runs the real
``tap-wechat-share`` console script in a subprocess (for exit codes, stderr and DEBUG logs).
Both check what every run must satisfy (:func:`check_messages`): records valid against their
stream's SCHEMA message, keys unique per stream, every row of a day before the STATE naming it.

The clock is frozen where the tap reads it (``pendulum.now`` in ``tap_wechat_share.dates``) at
:data:`NOW`, 10:00 on :data:`TODAY` in China, for every test in this process.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pendulum
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
NOW = pendulum.datetime(2026, 11, 29, 10, 0, tz="Asia/Shanghai")
"""The frozen clock of in-process tests: 10:00 on TODAY in China, so the latest published day is
TODAY - 1, the emulator's last day with data."""


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
        if isinstance(partition, dict) and partition["context"] == {"app_id": app_id}:
            return t.cast("str | None", partition.get("replication_key_value"))
    return None


def parse_messages(stdout: str) -> list[dict[str, t.Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def check_records(messages: list[dict[str, t.Any]]) -> None:
    """Check every RECORD against its stream's SCHEMA message, and keys unique per stream.

    The tap's own guard, not the SDK template's: each record follows a SCHEMA message of its
    stream, validates against it (with formats, so ``ref_date`` must be a YYYY-MM-DD date), has
    no field the schema lacks, and no two records of a stream share a primary key in one run.
    """
    validators: dict[str, t.Any] = {}
    key_properties: dict[str, list[str]] = {}
    seen: dict[str, set[tuple[t.Any, ...]]] = {}
    for message in messages:
        stream = message.get("stream", "")
        if message["type"] == "SCHEMA":
            schema = dict(message["schema"])
            # A catalog may drop a property and leave it in "required": not the records' fault.
            schema["required"] = [
                name for name in schema.get("required", []) if name in schema["properties"]
            ]
            validators[stream] = jsonschema.Draft7Validator(
                schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
            )
            key_properties[stream] = list(message["key_properties"])
            assert key_properties[stream], f"{stream}: SCHEMA without key_properties"
        elif message["type"] == "RECORD":
            record = message["record"]
            assert stream in validators, f"a {stream} RECORD before its SCHEMA"
            errors = [error.message for error in validators[stream].iter_errors(record)]
            assert not errors, f"{stream} record {record} is not valid: {errors}"
            extra = set(record) - set(validators[stream].schema["properties"])
            assert not extra, f"{stream} record {record} has fields not in its schema: {extra}"
            key = tuple(record[name] for name in key_properties[stream])
            assert key not in seen.setdefault(stream, set()), f"{stream}: key {key} twice"
            seen[stream].add(key)


def _bookmarks(state: dict[str, t.Any]) -> dict[tuple[str, str], str]:
    """(stream, app_id) -> bookmark, for every partition with one."""
    marks: dict[tuple[str, str], str] = {}
    for stream, stream_state in (state.get("bookmarks") or {}).items():
        for partition in stream_state.get("partitions", []):
            if not isinstance(partition, dict):  # a hand-edited state's odd item, kept as is
                continue
            value = partition.get("replication_key_value")
            if value:
                marks[stream, partition["context"]["app_id"]] = str(value)
    return marks


def check_state_order(
    messages: list[dict[str, t.Any]], initial_state: dict[str, t.Any] | None = None
) -> None:
    """Check that every row of a day comes before any STATE that names that day.

    A STATE names a day of an account's stream when its bookmark there is that day or later: a
    run killed after it and resumed from it would not read that day again, so each of the day's
    rows must already be out. Days up to the bookmark of ``initial_state`` (the state the run
    started from) are exempt: their rows were delivered by an earlier run, and a lookback reads
    them again after a STATE that still carries the old bookmark. Also checks that the run's
    last STATE naming an account's stream comes after that stream's last record of a day not
    delivered before, so the final bookmarks cover every record. It does not assume one STATE
    per window: only order.
    """
    delivered = _bookmarks(initial_state or {})
    named: dict[tuple[str, str], str] = {}
    last_state: dict[tuple[str, str], int] = {}
    last_record: dict[tuple[str, str], int] = {}
    for index, message in enumerate(messages):
        if message["type"] == "STATE":
            for partition, mark in _bookmarks(message["value"]).items():
                named[partition] = max(mark, named.get(partition, ""))
                last_state[partition] = index
        elif message["type"] == "RECORD":
            record = message["record"]
            partition = (message["stream"], record["app_id"])
            day = record["ref_date"]
            if day <= delivered.get(partition, ""):
                continue
            mark = named.get(partition, "")
            assert day > mark, f"a {partition} row of {day} came after a STATE naming {mark}"
            last_record[partition] = index
    for partition, index in last_record.items():
        if partition in last_state:  # a stream the run bookmarks (not FULL_TABLE)
            assert index < last_state[partition], f"{partition}: records after the last STATE"


def check_messages(
    messages: list[dict[str, t.Any]], initial_state: dict[str, t.Any] | None = None
) -> None:
    """What every run must satisfy: :func:`check_records` and :func:`check_state_order`."""
    check_records(messages)
    check_state_order(messages, initial_state)


def sync(
    config: dict[str, t.Any],
    state: dict[str, t.Any] | None = None,
    catalog: dict[str, t.Any] | None = None,
) -> TapOutput:
    """Run the tap in this process; a failed account shows as exit_code 1.

    Its messages are checked with :func:`check_messages`.
    """
    initial_state = copy.deepcopy(state or {})
    buffer = io.StringIO()
    exit_code = 0
    with redirect_stdout(buffer):
        # A copy: the SDK updates the state it is given in place, and a test's state may be a
        # module-level parametrize value that a second run in this process would then see.
        tap = TapWeChatShare(
            config=config,
            state=copy.deepcopy(initial_state),
            catalog=copy.deepcopy(catalog),
            validate_config=True,
        )
        try:
            tap.sync_all()
        except SystemExit as exc:
            exit_code = int(exc.code or 0)
    out = TapOutput(parse_messages(buffer.getvalue()), exit_code=exit_code)
    check_messages(out.messages, initial_state)
    return out


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
    out = TapOutput(
        parse_messages(completed.stdout) if completed.stdout.startswith("{") else [],
        stderr=completed.stderr,
        exit_code=completed.returncode,
        stdout=completed.stdout,
    )
    check_messages(out.messages, state)
    return out


def killed_after_states(
    config: dict[str, t.Any], tmp_path: Path, states_wanted: int
) -> list[dict[str, t.Any]]:
    """Run the console script, kill -9 it once it wrote ``states_wanted`` STATE messages.

    Returns:
        The messages it wrote up to the last of those STATE messages.
    """
    config_path = tmp_path / "killed-config.json"
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        states = 0
        while states < states_wanted:
            line = process.stdout.readline()
            assert line, "the tap ended before it was killed"
            lines.append(line)
            states += line.startswith('{"type":"STATE"')
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    return [json.loads(line) for line in lines]


def freeze_clock(monkeypatch: pytest.MonkeyPatch, instant: pendulum.DateTime) -> None:
    """Make the tap's clock (``pendulum.now`` where ``tap_wechat_share.dates`` reads it) stand
    at ``instant``."""

    def now(tz: str | None = None) -> pendulum.DateTime:
        return instant.in_tz(tz or pendulum.tz.get_local_timezone())  # as pendulum.now does

    monkeypatch.setattr(pendulum, "now", now)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that run a process (``process``), and keep each end-to-end module together.

    A mutant lives in the test process only; the console script in a subprocess runs the
    installed code, so such a test cannot catch a mutant and only costs time there.

    With pytest-xdist (``scripts/test`` runs ``-n 3 --dist loadgroup``), every test of a module
    that uses PostgreSQL runs on one worker, so that its module- and session-scoped fixtures (a
    server, a Meltano project with its plugins installed) are made once, not once per worker.
    """
    end_to_end = {item.path for item in items if "postgres" in getattr(item, "fixturenames", ())}
    for item in items:
        code = getattr(getattr(item, "function", None), "__code__", None)
        if code is not None and {"run_tap", "subprocess", "TAP_EXECUTABLE"} & set(code.co_names):
            item.add_marker(pytest.mark.process)
        if item.path in end_to_end:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> pendulum.DateTime:
    """Every test in this process runs at :data:`NOW` (a test may freeze another instant)."""
    freeze_clock(monkeypatch, NOW)
    return NOW


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


def two_accounts(emulator: WeChatEmulator, **settings: t.Any) -> dict[str, t.Any]:
    """APP_ID and APP_ID_2 with their secrets against the emulator, 2026-11-01 to 11-06."""
    return {
        "accounts": [
            {"app_id": APP_ID, "app_secret": APP_SECRET},
            {"app_id": APP_ID_2, "app_secret": APP_SECRET_2},
        ],
        "start_date": "2026-11-01",
        "end_date": "2026-11-06",
        "api_url": emulator.url,
        "max_tries": 2,
        **settings,
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


def biz_rows(
    emu: WeChatEmulator, first: str, last: str, app_id: str = APP_ID
) -> list[dict[str, t.Any]]:
    """The emulator's getbizsummary rows for first..last (final figures), as the tap's records."""

    def records(app: str, day: dt.date) -> list[dict[str, int | str]]:
        return [
            {
                "ref_date": row["ref_date"],
                "share_user": t.cast("dict[str, int]", row["detail"])["share_user"],
            }
            for row in emu.biz_rows(app, day)
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


def days(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last`` (both included), as YYYY-MM-DD."""
    begin, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(begin + dt.timedelta(days=n)).isoformat() for n in range((end - begin).days + 1)]


def key_of(record: dict[str, t.Any]) -> tuple[t.Any, ...]:
    """A record's identity, for comparing sets of rows."""
    return tuple(
        record.get(field) for field in ("app_id", "ref_date", "ref_hour", "share_scene", "msgid")
    )
