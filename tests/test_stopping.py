"""Stopped by a signal, or cut off by its target: the output stays whole Singer messages.

Every test runs the real console script in a process of its own against the emulator, and
signals it or closes its stdout, as Kubernetes, Docker, a person at a terminal or a dying target
would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import pytest

from tests.conftest import TAP_EXECUTABLE, TODAY, hourly_rows, key_of
from tests.emulator import Fault, WeChatEmulator

# Process-boundary tests: scripts/test runs them on every Python the package supports.
pytestmark = pytest.mark.boundary

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
HANG = 120.0
"""A request that hangs this long: far longer than any stop may take."""


class Tap:
    """The tap in a process of its own, with its stdout read by a thread (slowly, if asked)."""

    def __init__(
        self, config: dict[str, t.Any], tmp_path: Path, *, read_pause: float = 0.0
    ) -> None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [TAP_EXECUTABLE, "--config", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "TAP_WECHAT_SHARE_LOGLEVEL": "INFO"},
        )
        self.read_pause = read_pause
        self.output = bytearray()
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(4096):  # type: ignore[attr-defined]
            self.output += chunk
            if self.read_pause:
                time.sleep(self.read_pause)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    def wait_for(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None, "the tap ended before it got there"
            assert time.monotonic() < deadline, f"{text!r} did not appear"
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, list[dict[str, t.Any]], str]:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        self._errors.join(timeout)
        lines = bytes(self.output).decode().splitlines()
        # Whole messages only: every line is one JSON object.
        messages = [json.loads(line) for line in lines]
        return code, messages, self.stderr.decode()


APPS = {f"wx{n:016d}": f"secret-{n:02d}-0123456789abcdef" for n in range(1, 4)}


def config_for(emulator: WeChatEmulator, **more: t.Any) -> dict[str, t.Any]:
    return {
        "accounts": [
            {"app_id": app_id, "access_token": emulator.issue_token(app_id)} for app_id in APPS
        ],
        "start_date": "2026-09-01",
        "end_date": "2026-11-20",
        "api_url": emulator.url,
        "state_message_interval": 0,
        "max_tries": 2,
        **more,
    }


def check_whole_and_complete(emulator: WeChatEmulator, messages: list[dict[str, t.Any]]) -> None:
    """The output ends with a STATE, and every day that STATE names was emitted in full, once."""
    assert messages, "nothing was written"
    assert messages[-1]["type"] == "STATE"
    final = messages[-1]["value"]
    records = [
        m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "share_hour"
    ]
    keys = [key_of(r) for r in records]
    assert len(keys) == len(set(keys)), "a record was written twice"
    for partition in final["bookmarks"].get("share_hour", {}).get("partitions", []):
        app_id, mark = partition["context"]["app_id"], partition.get("replication_key_value")
        if mark is None:
            continue
        got = [r for r in records if r["app_id"] == app_id and r["ref_date"] <= mark]
        assert got == hourly_rows(emulator, "2026-09-01", mark, app_id), (app_id, mark)


@pytest.fixture
def emu3() -> t.Iterator[WeChatEmulator]:
    with WeChatEmulator(APPS, today=TODAY, latency=0.01) as emu:
        yield emu


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_the_target_reads_slowly_leaves_whole_messages_ending_with_state(
    emu3: WeChatEmulator, tmp_path: Path, signum: int, code: int
) -> None:
    # A slow reader: the pipe is full most of the time, so the signal lands mid-write.
    tap = Tap(config_for(emu3), tmp_path, read_pause=0.02)
    tap.wait_for(b'"stream":"share_hour"')
    time.sleep(0.3)
    tap.process.send_signal(signum)
    exit_code, messages, stderr = tap.finish()
    assert exit_code == code, stderr
    check_whole_and_complete(emu3, messages)
    assert f"Stopped by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr


def test_a_signal_stops_a_run_whose_requests_hang_and_names_failed_accounts(
    emu3: WeChatEmulator, tmp_path: Path
) -> None:
    bad = next(iter(APPS))
    config = config_for(emu3)
    config["accounts"][0]["access_token"] = "not-a-token-of-the-emulator"
    for day in ("2026-10-10", "2026-10-11"):
        emu3.add_fault(Fault("delay", path=HOURLY, day=day, delay=HANG, times=-1))
    tap = Tap(config, tmp_path)
    tap.wait_for(b'"2026-10-09"')
    time.sleep(0.5)  # the requests of 2026-10-10 are now hanging
    signalled = time.monotonic()
    tap.process.send_signal(signal.SIGTERM)
    exit_code, messages, stderr = tap.finish(timeout=HANG / 2)
    # Far less than the hang: the run did not wait for the hanging requests.
    assert time.monotonic() - signalled < HANG / 4
    assert exit_code == 143
    check_whole_and_complete(emu3, messages)
    lines = stderr.strip().splitlines()
    assert "1 of 3 accounts failed" in "\n".join(lines[-4:])
    assert bad in "\n".join(lines[-4:])
    assert "Stopped by SIGTERM" in lines[-1]


def wait_until_blocked_writing(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until the process's main thread is blocked writing to its full stdout pipe.

    Read from the kernel (the thread's wait channel), not guessed from a delay: a slow start
    (a busy machine) must not make the signal arrive before the tap has written anything.
    """
    wchan = Path(f"/proc/{process.pid}/wchan")
    deadline = time.monotonic() + timeout
    while "pipe_write" not in wchan.read_text():
        assert process.poll() is None, "the tap ended before its output filled the pipe"
        assert time.monotonic() < deadline, f"not blocked writing after {timeout} s"
        time.sleep(0.02)


def test_a_second_signal_ends_the_run_at_once(emu3: WeChatEmulator, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_for(emu3)))
    # Nobody reads stdout: the first stop waits for its last write, a second signal does not.
    process = subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_blocked_writing(process)
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 143
    finally:
        process.kill()
        process.wait()


def test_a_target_that_stops_reading_ends_the_run_with_one_line(
    emu3: WeChatEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_for(emu3)))
    process = subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # the target died
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr
    assert "Exception ignored" not in stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .endswith(
            "The target stopped reading the tap's output (its stdin closed): stopping. Its last "
            "STATE says what it loaded; see the target's own log for why it stopped"
        )
    )
    # It ended at once: far from every day of every account read.
    assert len(emu3.calls_to(HOURLY)) < 3 * 81
