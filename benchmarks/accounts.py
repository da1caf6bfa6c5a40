"""Many-accounts benchmark: the tap with thousands of accounts against the local WeChat emulator.

Run it from the repository's root::

    .venv/bin/python benchmarks/accounts.py            # --help: counts, latency, --quick

It prints a markdown table of figures with their targets, and exits 1 if a target is missed
(2 if a run fails). Everything runs on 127.0.0.1; nothing else is contacted. How it measures:

- The emulator (``tests/emulator.py``) serves from a separate process (this script's
  ``emulator`` subcommand), so that its CPU time is nobody's in the figures; it issues a ready
  token per account, and they are given to the tap in an ``accounts_file`` (JSON), as a platform
  with thousands of accounts would. Nagle's algorithm is off on its sockets (as in
  ``benchmarks/backfill.py``).
- The tap is the real ``tap-wechat-share`` console script in a subprocess with every stream
  selected. Its CPU time (user + system) and peak memory (``ru_maxrss``) are that process's own,
  from ``os.wait4``; its stdout is read by this script, which counts the bytes of STATE
  messages and keeps the last one (the final state).
- Scaling, at no latency, 2 days per account, ``max_concurrent_requests`` at its default: CPU per
  account (the run's whole CPU time / accounts; the marginal cost between the smallest and the
  largest count is shown too), peak memory, and the bytes of STATE written against the size of
  the final state.
- A resumed run of the largest count, over the final state of its run above (a state of
  constant size), reading two new days (``lookback_days`` 0). For it and the largest fresh run:
  the longest gap between two STATE messages, in seconds (as this script reads them) and in
  records, and STATE's share of everything the tap wrote.
- A daily run at ``--latency`` (100 ms) per datacube call: ``--daily-accounts`` accounts x 4 days
  (the default lookback) with 32 requests in flight, against the floor (calls x latency / 32);
  and with 1 in flight, on ``--sequential-accounts`` accounts (a run of 2,000 accounts one request
  at a time would take its floor of calls x latency, 1,000 s), against its own floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = Path(__file__).resolve().parent.parent
TAP = str(Path(sys.executable).with_name("tap-wechat-share"))
DAYS = ("2026-11-01", "2026-11-02")
DAILY_DAYS = ("2026-11-01", "2026-11-04")
RESUMED_DAYS = ("2026-11-01", "2026-11-04")
"""Over the final state of the run of DAYS, with lookback_days 0: 11-03 and 11-04 are new."""


def app_id(number: int) -> str:
    """The benchmark's made-up AppID number ``number``."""
    return f"wx{number:016d}"


def serve_emulator() -> int:
    """Serve the emulator until stdin closes; answer one line per command line on stdin.

    Commands: ``accounts N PATH`` (issues a ready token for N accounts, writes them to PATH as an
    accounts_file, answers ``ok``); ``latency SECONDS``; ``calls`` (answers the number of
    datacube calls since the last ``calls``, once none is pending).

    Returns:
        The exit status.
    """
    sys.path.insert(0, str(ROOT))
    from tests import emulator as emulator_module  # noqa: PLC0415

    emulator_module._Handler.disable_nagle_algorithm = True  # noqa: SLF001
    with emulator_module.WeChatEmulator({}) as emulator:
        print(emulator.url, flush=True)
        for line in sys.stdin:
            command, *arguments = line.split()
            if command == "accounts":
                count, path = int(arguments[0]), arguments[1]
                accounts = [
                    {"app_id": app_id(n), "access_token": emulator.issue_token(app_id(n))}
                    for n in range(count)
                ]
                Path(path).write_text(json.dumps(accounts))
                reply = "ok"
            elif command == "latency":
                emulator.latency = float(arguments[0])
                reply = "ok"
            elif command == "calls":
                emulator.wait_idle()
                reply = str(sum(call.path.startswith("/datacube/") for call in emulator.calls))
                emulator.reset_calls()
            else:
                reply = f"unknown command {command!r}"
            print(reply, flush=True)
    return 0


class Emulator:
    """The emulator in its own process (this script's ``emulator`` subcommand)."""

    def __init__(self) -> None:
        """Start the process and read the URL it serves on."""
        self._process = subprocess.Popen(
            [sys.executable, __file__, "emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.url = self.command("")

    def command(self, text: str) -> str:
        """Send a command (nothing: just read), return the answer line."""
        assert self._process.stdin is not None  # noqa: S101 - set by Popen
        assert self._process.stdout is not None  # noqa: S101 - set by Popen
        if text:
            self._process.stdin.write(text + "\n")
            self._process.stdin.flush()
        line = self._process.stdout.readline().strip()
        if not line:
            msg = "the emulator process ended"
            raise RuntimeError(msg)
        return line

    def stop(self) -> None:
        """Close its stdin, and wait for it to end."""
        assert self._process.stdin is not None  # noqa: S101 - set by Popen
        self._process.stdin.close()
        self._process.wait(timeout=30)


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured run of the tap."""

    accounts: int
    wall: float
    cpu: float
    maxrss_mib: float
    state_bytes: int
    final_state_bytes: int
    states: int
    calls: int
    total_bytes: int
    """Everything the tap wrote to stdout."""
    gap_seconds: float
    """The longest time between two STATE messages (as this script read them)."""
    gap_records: int
    """The most RECORD messages between two STATE messages."""
    final_state: bytes
    """The last STATE message's line."""

    def state_share(self) -> float:
        """STATE messages' bytes as a fraction of everything written."""
        return self.state_bytes / self.total_bytes


def run_tap(  # noqa: PLR0913 - what varies between the benchmark's runs
    emulator: Emulator,
    workdir: Path,
    accounts: int,
    days: tuple[str, str],
    in_flight: int | None,
    *,
    state: bytes | None = None,
    lookback_days: int | None = None,
) -> Run:
    """Run the tap over ``accounts`` accounts and ``days``, and measure it.

    Args:
        emulator: The emulator process.
        workdir: Where the accounts file, config, state and stderr go.
        accounts: How many accounts.
        days: The first and last day.
        in_flight: ``max_concurrent_requests`` (None: its default).
        state: A STATE message's line whose value the run resumes from (None: a fresh run).
        lookback_days: ``lookback_days`` (None: its default).

    Raises:
        RuntimeError: If it ends non-zero (its stderr's tail is in the message).
    """
    accounts_file = workdir / f"accounts-{accounts}.json"
    if not accounts_file.exists():
        emulator.command(f"accounts {accounts} {accounts_file}")
    config: dict[str, t.Any] = {
        "accounts_file": str(accounts_file),
        "start_date": days[0],
        "end_date": days[1],
        "api_url": emulator.url,
    }
    if in_flight is not None:
        config["max_concurrent_requests"] = in_flight
    if lookback_days is not None:
        config["lookback_days"] = lookback_days
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    arguments = [TAP, "--config", str(config_path)]
    if state is not None:
        state_path = workdir / "state.json"
        state_path.write_text(json.dumps(json.loads(state)["value"]))
        arguments += ["--state", str(state_path)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["TAP_WECHAT_SHARE_LOGLEVEL"] = "WARNING"
    stderr_path = workdir / "stderr.txt"
    state_bytes = states = total_bytes = records = gap_records = 0
    gap_seconds = 0.0
    last_state = b""
    with stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=stderr, env=env)
        assert process.stdout is not None  # noqa: S101 - set by Popen
        state_at = None
        for line in process.stdout:
            total_bytes += len(line)
            if line.startswith(b'{"type":"STATE"'):
                now = time.perf_counter()
                if state_at is not None:
                    gap_seconds = max(gap_seconds, now - state_at)
                    gap_records = max(gap_records, records)
                state_at, records = now, 0
                states += 1
                state_bytes += len(line)
                last_state = line
            elif line.startswith(b'{"type":"RECORD"'):
                records += 1
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    if (code := os.waitstatus_to_exitcode(status)) != 0:
        tail = stderr_path.read_text(errors="replace").splitlines()[-15:]
        msg = f"the tap ended with {code}:\n" + "\n".join(tail)
        raise RuntimeError(msg)
    return Run(
        accounts=accounts,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_mib=usage.ru_maxrss / 1024,
        state_bytes=state_bytes,
        final_state_bytes=len(last_state),
        states=states,
        calls=int(emulator.command("calls")),
        total_bytes=total_bytes,
        gap_seconds=gap_seconds,
        gap_records=gap_records,
        final_state=last_state,
    )


def verdict(ok: bool) -> str:  # noqa: FBT001
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", default="100,1000,10000", help="account counts, no latency")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per datacube call")
    parser.add_argument("--daily-accounts", type=int, default=2000)
    parser.add_argument("--sequential-accounts", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if args.quick:
        counts, args.daily_accounts, args.sequential_accounts = [20, 200], 200, 10
    rows: list[tuple[str, str, str, str]] = []
    missed = False
    with tempfile.TemporaryDirectory(prefix="tap-wechat-bench-") as tmp:
        workdir = Path(tmp)
        emulator = Emulator()
        try:
            scaling = []
            for count in counts:
                print(f"... {count} accounts x 2 days, no latency", file=sys.stderr)
                scaling.append(run_tap(emulator, workdir, count, DAYS, None))
            print(f"... {counts[-1]} accounts resumed, 2 new days", file=sys.stderr)
            resumed = run_tap(
                emulator,
                workdir,
                counts[-1],
                RESUMED_DAYS,
                None,
                state=scaling[-1].final_state,
                lookback_days=0,
            )
            emulator.command(f"latency {args.latency}")
            print(f"... {args.daily_accounts} accounts x 4 days, 32 in flight", file=sys.stderr)
            daily = run_tap(emulator, workdir, args.daily_accounts, DAILY_DAYS, 32)
            print(f"... {args.sequential_accounts} accounts x 4 days, 1 in flight", file=sys.stderr)
            sequential = run_tap(emulator, workdir, args.sequential_accounts, DAILY_DAYS, 1)
        finally:
            emulator.stop()

    small, large = scaling[0], scaling[-1]
    per_small, per_large = small.cpu / small.accounts, large.cpu / large.accounts
    for run in scaling:
        ratio = run.state_bytes / run.final_state_bytes
        missed |= ratio > 20
        rows.append(
            (
                f"{run.accounts:,} accounts x 2 days: CPU, CPU per account, peak RSS",
                (
                    f"{run.cpu:.1f} s, {1000 * run.cpu / run.accounts:.1f} ms, "
                    f"{run.maxrss_mib:.0f} MiB (wall {run.wall:.1f} s, {run.calls:,} calls)"
                ),
                "",
                "",
            )
        )
        rows.append(
            (
                f"{run.accounts:,} accounts: STATE written / final state",
                (
                    f"{run.state_bytes:,} / {run.final_state_bytes:,} bytes = {ratio:.1f}x "
                    f"({run.states} STATE messages)"
                ),
                "<= 20x",
                verdict(ratio <= 20),
            )
        )
    for run, kind in ((large, "fresh"), (resumed, "resumed, 2 new days")):
        # Run.state_due's bound: max(state_message_interval, S / 256 KiB/s) plus one window
        # (a second here, generously: a window takes milliseconds at no latency).
        bound = max(5.0, run.final_state_bytes / (256 * 1024)) + 1
        missed |= run.gap_seconds > bound
        rows += [
            (
                f"{run.accounts:,} accounts, {kind}: longest gap between STATE messages",
                (
                    f"{run.gap_seconds:.1f} s, {run.gap_records:,} records ({run.states} STATE "
                    f"messages in {run.wall:.1f} s, {run.calls:,} calls)"
                ),
                f"<= {bound:.1f} s",
                verdict(run.gap_seconds <= bound),
            ),
            (
                f"{run.accounts:,} accounts, {kind}: STATE / everything written",
                (
                    f"{run.state_bytes:,} / {run.total_bytes:,} bytes = "
                    f"{100 * run.state_share():.1f}% ({run.state_bytes / run.final_state_bytes:.1f}"
                    "x the final state)"
                ),
                "",
                "",
            ),
        ]
    cpu_ratio = per_large / per_small
    marginal = (large.cpu - small.cpu) / (large.accounts - small.accounts)
    missed |= cpu_ratio > 1.3 or large.maxrss_mib > 150
    rows += [
        (
            f"CPU per account, {large.accounts:,} / {small.accounts:,} accounts",
            (
                f"{1000 * per_large:.1f} / {1000 * per_small:.1f} ms = {cpu_ratio:.2f}x "
                f"(marginal, {small.accounts:,} to {large.accounts:,}: {1000 * marginal:.1f} ms)"
            ),
            "<= 1.3x",
            verdict(cpu_ratio <= 1.3),
        ),
        (
            f"Peak RSS, {large.accounts:,} accounts",
            f"{large.maxrss_mib:.0f} MiB",
            "<= 150 MiB",
            verdict(large.maxrss_mib <= 150),
        ),
    ]
    floor = daily.calls * args.latency / 32
    missed |= daily.wall > 1.5 * floor
    seq_floor = sequential.calls * args.latency
    rows += [
        (
            f"{daily.accounts:,} accounts x 4 days at {1000 * args.latency:.0f} ms, 32 in flight",
            (
                f"{daily.wall:.1f} s, floor {floor:.1f} s ({daily.calls:,} calls): "
                f"{daily.wall / floor:.2f}x (CPU {daily.cpu:.1f} s)"
            ),
            "<= 1.5x floor",
            verdict(daily.wall <= 1.5 * floor),
        ),
        (
            (
                f"{sequential.accounts:,} accounts x 4 days at {1000 * args.latency:.0f} ms, "
                "1 in flight"
            ),
            (
                f"{sequential.wall:.1f} s, floor {seq_floor:.1f} s ({sequential.calls:,} calls): "
                f"{sequential.wall / seq_floor:.2f}x; {daily.accounts:,} accounts would take "
                f">= {daily.calls * args.latency:,.0f} s"
            ),
            "",
            "",
        ),
    ]
    print(
        f"On {platform.node() and 'this machine'}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}\n"
    )
    print("| Measure | Result | Target |  |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if missed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["emulator"]:
        sys.exit(serve_emulator())
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
