"""Backfill benchmark: the tap against the local WeChat emulator, and against a plain loop.

Run it from the repository's root::

    .venv/bin/python benchmarks/backfill.py

It prints a markdown table of figures with their targets, and exits 1 if a target is missed
(2 if a run fails). Everything runs on 127.0.0.1; nothing else is contacted. How it measures:

- The emulator (``tests/emulator.py``) serves from a separate process, so that its CPU time is
  nobody's in the figures. That process is this script (``emulator`` subcommand): it takes
  commands on its stdin to change the injected latency and to report the calls it received.
  The emulator turns Nagle's algorithm off on its sockets (``TCP_NODELAY``, as nginx's
  ``tcp_nodelay`` does in front of WeChat): otherwise every answer, written as two sends
  (headers, then body), would wait about 40 ms for the client's delayed ACK, and "100 ms of
  latency" would be 140 ms.
- The tap is the real ``tap-wechat-share`` console script in a subprocess, with a config file and
  a catalog that selects ``share_hour`` only. Its stdout goes to a pipe that is counted, then
  discarded. Its CPU time (user + system) and peak memory (``ru_maxrss``) are that process's own,
  from ``os.wait4``.
- The floor is a plain loop (``floor`` subcommand, a subprocess measured the same way):
  ``requests.Session`` and ``json``, one POST per day with the token of one ``stable_token``
  call, and the same Singer messages as the tap (SCHEMA, a RECORD per row with
  ``time_extracted``, a STATE after each day, a final STATE), each ``json.dumps``-ed and written
  to stdout. Before anything is timed, the two outputs over the small range are compared message
  by message (``time_extracted`` aside), and must be equal.
- The children run with Python's defaults whatever the calling shell sets: stdout buffered (no
  ``PYTHONUNBUFFERED``) and bytecode cached, in a directory of the benchmark's own
  (``PYTHONPYCACHEPREFIX``, no ``PYTHONDONTWRITEBYTECODE``). Some sandboxes and Docker images set
  both; then every line written is a system call, and every start compiles the SDK and its
  dependencies from source (about 1 s of CPU). ``--as-is-env`` keeps the environment as it is.

Figures (times: the best of ``--repeat`` runs; calls and peak memory: the most of them):

- wall time of a ``--wall-days`` backfill at ``--latency`` seconds per datacube call, with 1 and
  with 8 requests in flight, and the speedup; the calls the emulator received in those runs,
  against the minimum (one per day, one ``stable_token``);
- CPU time per row, tap against floor, at no latency, ``max_concurrent_requests`` at its default
  (and, for information, at 1). Per row is the marginal cost: (CPU of the large run - CPU of the
  small run) / (rows of the large run - rows of the small run), for the tap and the floor alike,
  so that the fixed cost of a run (start-up, the token call) counts for neither; that fixed cost
  and the plain total CPU / rows are printed as well;
- peak memory of the tap for the small and the large range.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import typing as t
from collections import Counter
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
TAP = Path(sys.executable).with_name("tap-wechat-share")
APP_ID = "wxbench000000000001"
APP_SECRET = "benchmark-secret-0123456789abcdef"  # noqa: S105 - the emulator's made-up secret
STREAM = "share_hour"
HOURLY_PATH = "/datacube/getusersharehour"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 - a path
TIMEOUT = 30.0

TARGET_SPEEDUP = 5.0
TARGET_CPU_RATIO = 2.0
AIM_CPU_RATIO = 1.5
TARGET_MEMORY_GROWTH = 1.10


# --------------------------------------------------------------------------- emulator process


def serve_emulator() -> int:
    """Serve the emulator until stdin closes; answer one line per command line on stdin.

    Commands: ``latency SECONDS`` (answers ``ok``); ``calls`` (answers a JSON object of calls per
    path since the last ``calls``, once no call is pending).

    Returns:
        The exit status.
    """
    # Imported here: the floor runs this file too, and must import no more than a plain loop.
    from tests import emulator as emulator_module  # noqa: PLC0415

    # See the module docstring: no 40 ms delayed-ACK stall on every answer.
    emulator_module._Handler.disable_nagle_algorithm = True  # noqa: SLF001
    with emulator_module.WeChatEmulator({APP_ID: APP_SECRET}) as emulator:
        print(emulator.url, flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "latency":
                emulator.latency = float(argument)
                reply = "ok"
            elif command == "calls":
                emulator.wait_idle()
                reply = json.dumps(Counter(call.path for call in emulator.calls))
                emulator.reset_calls()
            else:
                reply = f"unknown command {command!r}"
            print(reply, flush=True)
    return 0


class Emulator:
    """The emulator in its own process (this script's ``emulator`` subcommand)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """Start the process and read the URL it serves on."""
        self._process = subprocess.Popen(
            [sys.executable, __file__, "emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.url = self._reply()

    def _reply(self) -> str:
        assert self._process.stdout is not None  # noqa: S101 - set by Popen
        line = self._process.stdout.readline().strip()
        if not line:
            msg = "the emulator process ended"
            raise RuntimeError(msg)
        return line

    def _command(self, command: str) -> str:
        assert self._process.stdin is not None  # noqa: S101 - set by Popen
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._reply()

    def set_latency(self, seconds: float) -> None:
        """Seconds added to every datacube answer from now on."""
        self._command(f"latency {seconds}")

    def take_calls(self) -> Counter[str]:
        """Calls per path since the last time, once none is pending."""
        return Counter(json.loads(self._command("calls")))

    def stop(self) -> None:
        """Close its stdin, and wait for it to end."""
        assert self._process.stdin is not None  # noqa: S101 - set by Popen
        self._process.stdin.close()
        self._process.wait(timeout=10)


# --------------------------------------------------------------------------- the floor


def plain_loop(url: str, first: dt.date, last: dt.date, schema_message: str) -> int:
    """Read ``share_hour`` day by day with requests + json, and write its Singer messages.

    Nothing is checked beyond what a plain loop does (a missing ``list`` ends it with a
    KeyError), and stdout is not flushed after each message.

    Returns:
        The exit status.
    """
    import requests  # noqa: PLC0415 - see serve_emulator

    session = requests.Session()
    answer = session.post(
        f"{url}{STABLE_TOKEN_PATH}",
        json={
            "grant_type": "client_credential",
            "appid": APP_ID,
            "secret": APP_SECRET,
            "force_refresh": False,
        },
        timeout=TIMEOUT,
    )
    params = {"access_token": answer.json()["access_token"]}
    out = sys.stdout
    out.write(schema_message + "\n")
    compact = (",", ":")
    partition: dict[str, t.Any] = {
        "context": {"app_id": APP_ID},
        "starting_replication_value": first.isoformat(),
        "replication_key": "ref_date",
        "replication_key_value": None,
    }
    state = {"type": "STATE", "value": {"bookmarks": {STREAM: {"partitions": [partition]}}}}
    day = first
    while day <= last:
        iso = day.isoformat()
        answer = session.post(
            f"{url}{HOURLY_PATH}",
            params=params,
            json={"begin_date": iso, "end_date": iso},
            timeout=TIMEOUT,
        )
        extracted = dt.datetime.now(dt.timezone.utc).isoformat()
        for row in answer.json()["list"]:
            message = {
                "type": "RECORD",
                "stream": STREAM,
                "record": {"app_id": APP_ID, **row},
                "time_extracted": extracted,
            }
            out.write(json.dumps(message, separators=compact) + "\n")
        partition["replication_key_value"] = iso
        out.write(json.dumps(state, separators=compact) + "\n")
        day += dt.timedelta(days=1)
    del partition["starting_replication_value"]
    out.write(json.dumps(state, separators=compact) + "\n")
    return 0


# --------------------------------------------------------------------------- measuring


def child_env(cache: Path, *, as_is: bool) -> dict[str, str]:
    """The environment of the children: Python's defaults (see the module docstring).

    Args:
        cache: Where the children keep bytecode.
        as_is: Keep this process's environment unchanged instead.

    Returns:
        The environment.
    """
    if as_is:
        return dict(os.environ)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    }
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured run of a child process."""

    wall: float
    """Seconds from start to exit."""
    cpu: float
    """User + system CPU seconds of the child."""
    maxrss_mib: float
    """Peak resident memory of the child."""
    records: int
    states: int


class Bench:
    """The runs of one benchmark: environment, configs, catalog and command lines."""

    def __init__(self, workdir: Path, last: dt.date, *, as_is_env: bool) -> None:
        """Start the emulator, discover the catalog once and keep ``share_hour`` only."""
        self.workdir = workdir
        self.last = last
        self.env = child_env(workdir / "pycache", as_is=as_is_env)
        self.emulator = Emulator(self.env)
        self.catalog = workdir / "catalog.json"
        discover = [str(TAP), "--config", str(self.config(1, None)), "--discover"]
        catalog = json.loads(self.output(discover))
        catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == STREAM]
        for metadata in catalog["streams"][0]["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = True
        self.catalog.write_text(json.dumps(catalog))
        entry = catalog["streams"][0]
        self.schema_message = json.dumps(
            {
                "type": "SCHEMA",
                "stream": STREAM,
                "schema": entry["schema"],
                "key_properties": entry["key_properties"],
                "bookmark_properties": ["ref_date"],
            },
            separators=(",", ":"),
        )

    def first(self, days: int) -> dt.date:
        """The first day of a backfill of ``days`` days ending on the last day."""
        return self.last - dt.timedelta(days=days - 1)

    def config(self, days: int, in_flight: int | None) -> Path:
        """A config file for ``days`` days (``in_flight`` None: the default)."""
        config: dict[str, t.Any] = {
            "app_id": APP_ID,
            "app_secret": APP_SECRET,
            "start_date": self.first(days).isoformat(),
            "end_date": self.last.isoformat(),
            "api_url": self.emulator.url,
            # A STATE after every day, as the plain loop writes (the default paces them by time).
            "state_message_interval": 0,
        }
        if in_flight is not None:
            config["max_concurrent_requests"] = in_flight
        path = self.workdir / f"config-{days}-{in_flight}.json"
        path.write_text(json.dumps(config))
        return path

    def tap_args(self, days: int, in_flight: int | None = None) -> list[str]:
        """The tap's command line for ``days`` days (``in_flight`` None: the default)."""
        config = self.config(days, in_flight)
        return [str(TAP), "--config", str(config), "--catalog", str(self.catalog)]

    def floor_args(self, days: int) -> list[str]:
        """The plain loop's command line for ``days`` days."""
        return [
            sys.executable,
            __file__,
            "floor",
            self.emulator.url,
            self.first(days).isoformat(),
            self.last.isoformat(),
            self.schema_message,
        ]

    def output(self, args: Sequence[str]) -> bytes:
        """Run ``args`` and return its stdout.

        Raises:
            RuntimeError: If it ends non-zero (its stderr's tail is in the message).
        """
        completed = subprocess.run(
            args, capture_output=True, timeout=300, env=self.env, check=False
        )
        if completed.returncode != 0:
            tail = completed.stderr.decode(errors="replace").splitlines()[-15:]
            msg = f"{shlex.join(args)} ended with {completed.returncode}:\n" + "\n".join(tail)
            raise RuntimeError(msg)
        return completed.stdout

    def measure(self, args: Sequence[str]) -> Run:
        """Run ``args`` with stdout counted and discarded, and measure it.

        Raises:
            RuntimeError: If it ends non-zero (its stderr's tail is in the message).
        """
        stderr_path = self.workdir / "stderr.txt"
        records = states = 0
        with stderr_path.open("wb") as stderr:
            started = time.perf_counter()
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, env=self.env)
            assert process.stdout is not None  # noqa: S101 - set by Popen
            for line in process.stdout:
                if line.startswith(b'{"type":"RECORD"'):
                    records += 1
                elif line.startswith(b'{"type":"STATE"'):
                    states += 1
            # wait4: this child's own resource usage (the emulator is a child too).
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            tail = stderr_path.read_text(errors="replace").splitlines()[-15:]
            msg = f"{shlex.join(args)} ended with {process.returncode}:\n" + "\n".join(tail)
            raise RuntimeError(msg)
        return Run(
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            maxrss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
            records=records,
            states=states,
        )

    def tap(self, days: int, in_flight: int | None = None) -> Run:
        """One measured run of the tap."""
        return self.measure(self.tap_args(days, in_flight))

    def floor(self, days: int) -> Run:
        """One measured run of the plain loop."""
        return self.measure(self.floor_args(days))

    def messages(self, args: Sequence[str]) -> list[dict[str, t.Any]]:
        """Run ``args`` and return the messages it wrote, without ``time_extracted``."""
        messages = [json.loads(line) for line in self.output(args).splitlines() if line.strip()]
        for message in messages:
            message.pop("time_extracted", None)
        return messages

    def stop(self) -> None:
        """Stop the emulator."""
        self.emulator.stop()


def best(runs: Sequence[Run], key: Callable[[Run], float]) -> Run:
    """The run with the smallest ``key``, after checking that all emitted the same.

    Raises:
        RuntimeError: If the runs emitted different numbers of messages.
    """
    if len({(run.records, run.states) for run in runs}) != 1:
        msg = f"runs of the same measurement emitted different messages: {runs}"
        raise RuntimeError(msg)
    return min(runs, key=key)


# --------------------------------------------------------------------------- report


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of the results table."""

    measure: str
    result: str
    target: str = ""
    passed: bool | None = None

    def cells(self) -> tuple[str, str, str, str]:
        """The line's cells: measure, result, target, verdict."""
        verdict = "" if self.passed is None else ("PASS" if self.passed else "**FAIL**")
        return self.measure, self.result, self.target, verdict


def table(lines: Sequence[Line]) -> str:
    """A markdown table of ``lines``."""
    rows = [("Measure", "Result", "Target", ""), ("---", "---", "---", "---")]
    rows += [line.cells() for line in lines]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def progress(text: str) -> None:
    """A progress line, on stderr so that stdout is the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def verify_floor(bench: Bench, days: int) -> None:
    """The plain loop and the tap must emit the same messages (``time_extracted`` aside).

    Raises:
        RuntimeError: If they differ.
    """
    tap = bench.messages(bench.tap_args(days))
    floor = bench.messages(bench.floor_args(days))
    if tap != floor:
        differing = next(
            (i for i, (a, b) in enumerate(zip(tap, floor, strict=False)) if a != b),
            min(len(tap), len(floor)),
        )
        msg = (
            f"the plain loop does not emit what the tap emits ({len(floor)} against "
            f"{len(tap)} messages; first difference at message {differing})"
        )
        raise RuntimeError(msg)
    progress(f"the plain loop emits the tap's {len(tap)} messages over {days} days")


def wall_lines(bench: Bench, days: int, latency: float, repeat: int) -> list[Line]:
    """Wall time with 1 and 8 requests in flight, and the calls made."""
    bench.emulator.set_latency(latency)
    bench.emulator.take_calls()  # forget the calls of earlier runs
    lines: list[Line] = []
    walls: dict[int, Run] = {}
    minimum = days + 1
    for in_flight in (1, 8):
        runs: list[Run] = []
        calls: list[Counter[str]] = []
        for attempt in range(1, repeat + 1):
            progress(f"{days} days at {latency * 1000:.0f} ms, {in_flight} in flight ({attempt})")
            runs.append(bench.tap(days, in_flight))
            calls.append(bench.emulator.take_calls())
        walls[in_flight] = best(runs, key=lambda run: run.wall)
        most = max(calls, key=lambda counts: counts.total())
        datacube, token = most[HOURLY_PATH], most[STABLE_TOKEN_PATH]
        lines.append(
            Line(
                f"Calls, {in_flight} in flight (the most of {repeat} runs)",
                f"{most.total()} ({datacube} datacube + {token} stable_token)",
                f"the minimum, {minimum} ({days} + 1)",
                most.total() == minimum and datacube == days and token == 1,
            )
        )
    bench.emulator.set_latency(0.0)
    one, eight = walls[1], walls[8]
    speedup = one.wall / eight.wall
    per_call = f"{latency * 1000:.0f} ms/call"
    lines[:0] = [
        Line(
            f"Wall, {days} days at {per_call}, 1 in flight",
            f"{one.wall:.2f} s ({one.records:,} rows)",
        ),
        Line(f"Wall, {days} days at {per_call}, 8 in flight", f"{eight.wall:.2f} s"),
        Line(
            "Speedup, 8 against 1 in flight",
            f"{speedup:.1f}x",
            f">= {TARGET_SPEEDUP:.0f}x",
            speedup >= TARGET_SPEEDUP,
        ),
    ]
    return lines


def cpu_memory_lines(bench: Bench, small: int, large: int, repeat: int) -> list[Line]:
    """CPU per row against the floor, and peak memory, at no latency."""
    kinds: dict[str, Callable[[int], Run]] = {
        "tap": bench.tap,
        "tap, 1 in flight": lambda days: bench.tap(days, 1),
        "floor": bench.floor,
    }
    runs: dict[tuple[str, int], list[Run]] = {}
    for attempt in range(1, repeat + 1):
        for days in (small, large):
            progress(f"CPU and memory, {days} days, tap (default, 1) and plain loop ({attempt})")
            for kind, run in kinds.items():
                runs.setdefault((kind, days), []).append(run(days))
    fastest = {key: best(found, key=lambda run: run.cpu) for key, found in runs.items()}
    if len({fastest[kind, large].records for kind in kinds}) != 1:
        msg = "the tap and the plain loop emitted different numbers of rows"
        raise RuntimeError(msg)
    rows = fastest["tap", large].records - fastest["tap", small].records
    if rows <= 0:
        msg = f"{large} days gave no more rows than {small}: give more --large-days"
        raise RuntimeError(msg)

    def per_row(kind: str) -> float:
        return (fastest[kind, large].cpu - fastest[kind, small].cpu) / rows

    def fixed(kind: str) -> float:
        return fastest[kind, small].cpu - per_row(kind) * fastest[kind, small].records

    def total(kind: str) -> float:
        return fastest[kind, large].cpu / fastest[kind, large].records

    ratio = per_row("tap") / per_row("floor")
    sequential = per_row("tap, 1 in flight") / per_row("floor")
    peak = {days: max(run.maxrss_mib for run in runs["tap", days]) for days in (small, large)}
    growth = peak[large] / peak[small]
    aim = "aim met" if ratio <= AIM_CPU_RATIO else f"aim {AIM_CPU_RATIO}x missed"
    return [
        Line(
            f"CPU per row, tap ({small} to {large} days: {rows:,} rows)",
            f"{per_row('tap') * 1e6:.1f} µs",
        ),
        Line("CPU per row, plain requests + json loop", f"{per_row('floor') * 1e6:.1f} µs"),
        Line(
            "CPU per row, tap / plain loop",
            f"{ratio:.2f}x ({aim})",
            f"<= {TARGET_CPU_RATIO:.0f}x, aim {AIM_CPU_RATIO}x",
            ratio <= TARGET_CPU_RATIO,
        ),
        Line(
            "CPU per row, tap with 1 in flight / plain loop",
            f"{per_row('tap, 1 in flight') * 1e6:.1f} µs ({sequential:.2f}x)",
        ),
        Line(
            "Fixed CPU of a run (start-up, token call), tap / plain loop",
            f"{fixed('tap'):.2f} s / {fixed('floor'):.2f} s",
        ),
        Line(
            f"Total CPU / rows at {large} days, tap / plain loop",
            f"{total('tap') * 1e6:.1f} µs / {total('floor') * 1e6:.1f} µs "
            f"({total('tap') / total('floor'):.2f}x)",
        ),
        Line(f"Peak memory (RSS), tap, {small} days", f"{peak[small]:.1f} MiB"),
        Line(
            f"Peak memory (RSS), tap, {large} days",
            f"{peak[large]:.1f} MiB ({(growth - 1) * 100:+.1f}%)",
            f"within {(TARGET_MEMORY_GROWTH - 1) * 100:.0f}% of {small} days",
            growth <= TARGET_MEMORY_GROWTH,
        ),
    ]


def run(options: argparse.Namespace) -> int:
    """Run the whole benchmark and print its report.

    Returns:
        0 if every target is met, 1 if not, 2 if a run failed.
    """
    started = time.perf_counter()
    # A day WeChat has published at any hour: the day before yesterday, China time.
    last = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date() - dt.timedelta(days=2)
    lines: list[Line] = []
    with tempfile.TemporaryDirectory(prefix="backfill-bench-") as workdir:
        try:
            bench = Bench(Path(workdir), last, as_is_env=options.as_is_env)
        except RuntimeError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        try:
            verify_floor(bench, options.small_days)
            progress(f"warming the emulator's data for {options.large_days} days")
            bench.floor(options.large_days)
            if not options.skip_wall:
                lines += wall_lines(bench, options.wall_days, options.latency, options.repeat)
            lines += cpu_memory_lines(bench, options.small_days, options.large_days, options.repeat)
        except RuntimeError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        finally:
            bench.stop()
    command = shlex.join([".venv/bin/python", "benchmarks/backfill.py", *sys.argv[1:]])
    environment = "environment as is" if options.as_is_env else "Python's default environment"
    print(
        f"`{command}`: {os.cpu_count()} CPUs, Python {platform.python_version()}, {environment}, "
        f"best of {options.repeat} runs, {time.perf_counter() - started:.0f} s in all\n"
    )
    print(table(lines))
    return 0 if all(line.passed is not False for line in lines) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the benchmark, or one of its child processes.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", maxsplit=1)[0])
    parser.add_argument("--wall-days", type=int, default=180, help="days of the wall-time runs")
    parser.add_argument(
        "--latency", type=float, default=0.1, help="seconds per datacube call, wall-time runs"
    )
    parser.add_argument("--small-days", type=int, default=30, help="days of the small runs")
    parser.add_argument("--large-days", type=int, default=1095, help="days of the large runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--skip-wall", action="store_true", help="no wall-time runs")
    parser.add_argument(
        "--as-is-env",
        action="store_true",
        help="run the children in this environment, PYTHONUNBUFFERED etc. included",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("emulator", help="(internal) serve the emulator")
    floor = commands.add_parser("floor", help="(internal) the plain loop")
    floor.add_argument("url")
    floor.add_argument("first", type=dt.date.fromisoformat)
    floor.add_argument("last", type=dt.date.fromisoformat)
    floor.add_argument("schema_message")
    options = parser.parse_args(argv)
    if options.command == "emulator":
        return serve_emulator()
    if options.command == "floor":
        return plain_loop(options.url, options.first, options.last, options.schema_message)
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
