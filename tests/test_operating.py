"""Operating it at scale: progress lines, a quiet log, the summary, and a quick stop when WeChat
cannot be reached (issue 19); signals before the run begins and the last line of wrong settings
(issue 18, item 12)."""

from __future__ import annotations

import datetime as dt
import errno
import http.server
import itertools
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import typing as t

import pytest
import requests
import urllib3

from tap_wechat_share import report
from tap_wechat_share.client import (
    UNREACHABLE,
    UNREACHABLE_AFTER_SECONDS,
    NetworkCircuit,
    UnreachableError,
    WeChatClient,
    describe_network_fault,
)
from tap_wechat_share.report import Report, duration, estimate, progress_line
from tap_wechat_share.run import Run
from tests.conftest import (
    APP_ID,
    APP_ID_2,
    TAP_EXECUTABLE,
    TODAY,
    TapOutput,
    run_tap,
    sync,
    two_accounts,
)
from tests.emulator import Fault, WeChatEmulator

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
APPS = {f"wx{n:016d}": f"secret-of-{n:05d}-0123456789" for n in range(1, 301)}
ONE_DAY = {"start_date": "2026-11-01", "end_date": "2026-11-01"}
INTERNAL = ("_Watched", "HTTPConnection", "HTTPSConnection", "urllib3", "Max retries")
SDK_SYNC_LINES = ("Beginning sync", "Starting incremental sync")


class Line(t.NamedTuple):
    """One line of the tap's log on stderr (the SDK's console format)."""

    at: dt.datetime
    level: str
    logger: str
    message: str


def log_lines(stderr: str) -> list[Line]:
    lines = []
    for text in stderr.splitlines():
        parts = text.split(" | ", 3)
        assert len(parts) == 4, f"not a log line: {text!r}"
        at = dt.datetime.strptime(parts[0], "%Y-%m-%d %H:%M:%S,%f")  # noqa: DTZ007 - as logged
        lines.append(Line(at, parts[1].strip(), parts[2].strip(), parts[3]))
    return lines


def ready_accounts(emu: WeChatEmulator, count: int) -> list[dict[str, str]]:
    return [{"app_id": a, "access_token": emu.issue_token(a)} for a in list(APPS)[:count]]


# Progress lines -----------------------------------------------------------------------------------


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_run(clock: Clock) -> Run:
    run = Run(
        client=WeChatClient("http://127.0.0.1:9"),
        accounts={},
        first_day=TODAY,
        last_day=TODAY,
        latest=TODAY,
        lookback_days=0,
        state_interval=5,
    )
    run.clock = clock  # type: ignore[method-assign]
    return run


def test_a_stream_gets_one_progress_line_per_interval_whatever_the_number_of_windows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    run = a_run(clock)
    counts = run.begin_stream("share_hour", HOURLY, requests=180_000)
    lines = Report(run, logging.getLogger("test-report"), interval=30)
    caplog.set_level(logging.INFO, "test-report")
    for _ in range(2000):  # a window every 0.05 s: 100 s in all
        clock.now += 0.05
        counts.requests_done += 1
        lines.tick()
    assert len(caplog.records) == 3  # at 30, 60 and 90 s
    lines.stream_done("share_hour")
    assert caplog.records[-1].getMessage().endswith(", done")
    assert len(caplog.records) == 4


def test_the_progress_line_reads_as_the_issue_shows_it() -> None:
    clock = Clock()
    run = a_run(clock)
    counts = run.begin_stream("share_hour", HOURLY, requests=180_000)
    counts.accounts = 10_000
    counts.accounts_done, counts.accounts_failed = 1200, 3
    counts.requests_done, counts.records = 21_400, 2_940_112
    clock.now += 370
    assert progress_line("share_hour", counts, clock.now) == (
        "share_hour: 1,200 of 10,000 accounts, 3 failed, 21,400 of 180,000 requests, "
        "2,940,112 records, 6 min 10 s, about 46 min left"  # 370 s x 158,600 / 21,400
    )
    run.end_stream("share_hour")
    assert progress_line("share_hour", counts, clock.now + 99).endswith("6 min 10 s, done")


@pytest.mark.parametrize(
    ("seconds", "words", "rough"),
    [
        (0.4, "0 s", "a few seconds"),
        (14.4, "14 s", "a few seconds"),
        (42, "42 s", "about 40 s"),
        (370, "6 min 10 s", "about 6 min"),
        (7500, "2 h 5 min", "about 2 h 5 min"),
    ],
)
def test_durations_in_words(seconds: float, words: str, rough: str) -> None:
    assert duration(seconds) == words
    assert estimate(seconds) == rough


def test_the_interval_may_be_set_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(report.PROGRESS_INTERVAL_VARIABLE, "0.5")
    assert report.progress_interval() == 0.5
    for wrong in ("soon", "0", "-3"):
        monkeypatch.setenv(report.PROGRESS_INTERVAL_VARIABLE, wrong)
        assert report.progress_interval() == report.PROGRESS_INTERVAL


@pytest.fixture(scope="module")
def many() -> Iterator[WeChatEmulator]:
    with WeChatEmulator(APPS, today=TODAY) as emu:
        yield emu


def test_300_accounts_progress_lines_a_quiet_log_and_the_summary_last(
    many: WeChatEmulator, tmp_path: Path
) -> None:
    many.latency = 0.02  # a stream of 300 requests, 8 in flight, takes 0.75 s or more
    config = {"accounts": ready_accounts(many, 300), "api_url": many.url, **ONE_DAY}
    try:
        out = run_tap(config, tmp_path, env={report.PROGRESS_INTERVAL_VARIABLE: "0.3"})
    finally:
        many.latency = 0.0
    assert out.exit_code == 0, out.stderr[-3000:]
    lines = log_lines(out.stderr)
    streams = ("article_share", "biz_share", "share_day", "share_hour")
    progress = re.compile(
        r"^(\w+): ([\d,]+) of 300 accounts, 0 failed, ([\d,]+) of 300 requests, "
        r"[\d,]+ records, \d+ s(, (a few seconds|about \d+ s) left|, done)$"
    )
    for stream in streams:
        mine = [
            line
            for line in lines
            if (m := progress.match(line.message)) and m.group(1) == stream and line.level == "INFO"
        ]
        during = [line for line in mine if not line.message.endswith(", done")]
        assert during, f"{stream}: no progress line while it was read"
        assert mine[-1].message.startswith(f"{stream}: 300 of 300 accounts")
        assert mine[-1].message.endswith(", done")
        # Never two lines of a stream within the interval (the log's own times).
        gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(during)]
        assert all(gap >= 0.29 for gap in gaps), gaps
    # The SDK's lines per account are not at INFO above 10 accounts; nor the tap's.
    sdk = [line for line in lines if line.message.startswith(SDK_SYNC_LINES)]
    assert len(sdk) <= 12, sdk
    # (The SDK's METRIC lines, one per stream, name the last account in their tags.)
    per_account = [
        line
        for line in lines
        if line.level == "INFO" and "wx0000" in line.message and line.logger != "singer_sdk.metrics"
    ]
    assert not per_account
    # The summary is the last thing logged.
    at = max(i for i, line in enumerate(lines) if line.message == "Summary of the run:")
    summary = [line.message for line in lines[at + 1 :]]
    assert [re.sub(r"\d+ s$", "N s", line) for line in summary] == [
        f"  {stream}: 300 of 300 accounts read, 0 failed; 300 requests (0 retries); "
        f"{len(out.records(stream)):,} records; N s"
        for stream in streams
    ]


def test_the_urllib3_chain_is_a_debug_line_without_this_tap_s_class_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "tap_wechat_share.client")
    client = WeChatClient(f"http://127.0.0.1:{refused_port()}", max_tries=2, backoff_factor=0.0)
    with pytest.raises(Exception, match=r"\(connection refused\)$"):
        client.post(HOURLY, {}, what="share_hour x")
    chain = [r for r in caplog.records if "Max retries exceeded" in r.getMessage()]
    assert chain
    assert {r.levelname for r in chain} == {"DEBUG"}
    assert "HTTPConnectionPool(host='127.0.0.1'" in chain[0].getMessage()
    assert "_Watched" not in caplog.text


def _chain(outer: BaseException, *inner: BaseException) -> BaseException:
    """``outer`` raised from ``inner[0]``, raised from ``inner[1]``..., as urllib3 chains them."""
    for upper, lower in itertools.pairwise((outer, *inner)):
        upper.__cause__ = lower
    return outer


def test_a_name_that_does_not_resolve_and_a_failing_proxy_in_words() -> None:
    connection = urllib3.connection.HTTPSConnection("api.weixin.qq.com", 443)
    gai = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    dns = requests.exceptions.ConnectionError(
        _chain(
            urllib3.exceptions.MaxRetryError(None, "/x"),  # type: ignore[arg-type]
            urllib3.exceptions.NameResolutionError("api.weixin.qq.com", connection, gai),
            gai,
        )
    )
    url = "https://api.weixin.qq.com/datacube/getusersharehour?access_token=x"
    assert str(describe_network_fault(dns, url, 30)) == (
        "could not connect to api.weixin.qq.com:443 (the name does not resolve: Name or service "
        "not known)"
    )
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    proxy = requests.exceptions.ProxyError(
        _chain(
            urllib3.exceptions.MaxRetryError(None, "/x"),  # type: ignore[arg-type]
            urllib3.exceptions.ProxyError("Unable to connect to proxy", refused),
            refused,
        )
    )
    assert str(describe_network_fault(proxy, url, 30)) == (
        "could not connect to api.weixin.qq.com:443 through the proxy (connection refused)"
    )


# A quiet log above 10 accounts, unchanged up to 10 --------------------------------------------


@pytest.mark.parametrize(("accounts", "quiet"), [(10, False), (11, True)])
def test_the_sdks_lines_per_account_stay_at_info_up_to_10_accounts(
    many: WeChatEmulator,
    caplog: pytest.LogCaptureFixture,
    accounts: int,
    quiet: bool,  # noqa: FBT001
) -> None:
    caplog.set_level(logging.INFO)
    config = {"accounts": ready_accounts(many, accounts), "api_url": many.url, **ONE_DAY}
    assert sync(config).exit_code == 0
    starting = [
        r
        for r in caplog.records
        if r.levelno == logging.INFO and r.getMessage().startswith("Starting incremental sync")
    ]
    assert len(starting) == (0 if quiet else 4 * accounts)  # four streams


def test_above_10_accounts_the_sdks_lines_per_account_are_debug_lines(
    many: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = {"accounts": ready_accounts(many, 11), "api_url": many.url, **ONE_DAY}
    assert sync(config).exit_code == 0
    starting = [r for r in caplog.records if r.getMessage().startswith("Starting incremental")]
    assert len(starting) == 4 * 11  # four streams
    assert {r.levelname for r in starting} == {"DEBUG"}


def test_a_retired_endpoint_ends_its_stream_with_the_requests_it_made(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.retire(HOURLY)
    caplog.set_level(logging.INFO)
    out = sync(two_accounts(emulator))
    assert out.exit_code == 1
    done = [m for r in caplog.records if (m := r.getMessage()).endswith(", done")]
    assert "share_hour: 2 of 2 accounts, 0 failed, 1 of 1 requests, 0 records, 0 s, done" in done
    assert (
        "  share_hour: stopped for every account: WeChat retired its endpoint (see below); "
        "1 request (0 retries); 0 records; 0 s"
    ) in caplog.text


# The summary -----------------------------------------------------------------------------------


def test_when_every_account_fails_the_summary_says_so(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.add_fault(Fault("errcode", errcode=48001, errmsg="api unauthorized", times=-1))
    out = sync(two_accounts(emulator))
    assert out.exit_code == 1
    assert "All 2 accounts failed; the state holds what each read before it failed:" in (
        caplog.text
    )
    assert "the others were read" not in caplog.text


def test_the_summary_counts_each_streams_accounts_requests_and_records(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # One request at a time: the second account's share_hour stops at its third day, exactly.
    emulator.add_fault(
        Fault("errcode", path=HOURLY, app_id=APP_ID_2, day="2026-11-03", errcode=48001)
    )
    caplog.set_level(logging.INFO)
    out = sync(two_accounts(emulator, max_concurrent_requests=1))
    assert out.exit_code == 1
    messages = [r.getMessage() for r in caplog.records]
    at = messages.index("Summary of the run:")
    requests = {"article_share": 12, "biz_share": 12, "share_day": 2, "share_hour": 9}
    summary = {
        line.split(":")[0].strip(): re.sub(r"\d+ s$", "N s", line) for line in messages[at + 1 :]
    }
    for stream, made in requests.items():
        accounts = (
            "1 of 2 accounts read, 1 failed"
            if stream == "share_hour"
            else ("2 of 2 accounts read, 0 failed")
        )
        assert summary[stream] == (
            f"  {stream}: {accounts}; {made} requests (0 retries); "
            f"{len(out.records(stream)):,} records; N s"
        )
    reason = next(m for m in messages if m.startswith(f"{APP_ID_2} failed in share_hour: "))
    assert reason.endswith(
        "errcode 48001: system error; the account may not call datacube: "
        "it must be a certified (认证) Official Account, and a third-party "
        "platform needs permission set 7"
    )
    assert messages[-2:] == [
        "1 of 2 accounts failed; the others were read and their state written:",
        "  " + reason.split("failed in share_hour: ", 1)[1],
    ]


def test_the_summary_counts_accounts_not_reached_apart_from_failed_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = a_run(Clock())
    counts = run.begin_stream("share_hour", HOURLY, requests=10)
    counts.accounts, counts.accounts_done, counts.records = 5, 3, 42
    counts.accounts_failed, counts.accounts_unreached = 2, 1
    counts.requests_done = 4
    caplog.set_level(logging.INFO, "test-report")
    Report(run, logging.getLogger("test-report")).summary(["share_hour"], unreached=True)
    assert [r.getMessage() for r in caplog.records] == [
        "Summary of the run:",
        (
            "  share_hour: 1 of 5 accounts read, 1 failed, 3 not reached; 4 requests "
            "(0 retries); 42 records; 0 s; stopped before its end"
        ),
    ]


def test_no_worker_thread_logs_after_the_summary(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The first account stops on its first day, while its next days are being retried
    # (HTTP 502, with backoff) on worker threads; the second account is read meanwhile.
    emulator.add_fault(
        Fault("errcode", path=HOURLY, app_id=APP_ID, day="2026-11-01", errcode=48001)
    )
    emulator.add_fault(Fault("http", path=HOURLY, app_id=APP_ID, status=502, times=-1))
    caplog.set_level(logging.INFO)
    earlier = set(threading.enumerate())  # an earlier test's may still be ending
    out = sync(two_accounts(emulator, max_tries=5, max_concurrent_requests=8))
    assert out.exit_code == 1
    # Whatever the workers would still log comes before they end.
    deadline = time.monotonic() + 60
    while any(t.name.startswith("wechat-request") for t in set(threading.enumerate()) - earlier):
        assert time.monotonic() < deadline, "a worker thread still runs"
        time.sleep(0.05)
    messages = [r.getMessage() for r in caplog.records]
    at = messages.index("Summary of the run:")
    after = caplog.records[at:]
    assert {r.threadName for r in after} == {threading.main_thread().name}
    assert after[-1].getMessage().startswith(f"  {APP_ID}")
    assert any("retrying in" in m for m in messages[:at])  # the retries were under way


# WeChat cannot be reached ------------------------------------------------------------------------


def test_the_circuit_opens_on_network_faults_of_3_accounts_and_no_answer_for_a_while() -> None:
    clock = Clock()
    stop = threading.Event()
    circuit = NetworkCircuit(stop, clock=clock)
    circuit.accounts_total = 100
    circuit.fault("a", "could not connect to h:443 (connection refused)")
    circuit.fault("b", "could not connect to h:443 (connection refused)")
    clock.now += UNREACHABLE_AFTER_SECONDS + 1
    circuit.fault("b", "could not connect to h:443 (connection refused)")
    assert not circuit.is_open  # two accounts: one account's trouble does not stop the others
    circuit.answered()  # an answer, even an errcode, ends the streak
    circuit.fault("c", "x")
    circuit.fault("d", "x")
    circuit.fault("e", "could not connect to h:443 (connection refused)")
    assert not circuit.is_open  # three accounts, but no answer for only a moment
    assert not stop.is_set()
    clock.now += UNREACHABLE_AFTER_SECONDS
    assert circuit.check()
    assert circuit.reason == "could not connect to h:443 (connection refused)"
    assert circuit.retry_later
    assert stop.is_set()  # every request and wait in flight ends


def test_a_run_out_of_accounts_in_a_streak_counts_as_unreachable() -> None:
    clock = Clock()
    circuit = NetworkCircuit(threading.Event(), clock=clock)
    circuit.accounts_total = 2
    circuit.fault("a", "x")
    assert not circuit.check(final=True)  # one of two accounts
    circuit.fault("b", "x")
    assert not circuit.check()
    assert circuit.check(final=True)


def test_errcodes_answered_do_not_count_as_network_faults(emulator: WeChatEmulator) -> None:
    emulator.add_fault(Fault("errcode", errcode=-1, times=-1))
    client = WeChatClient(emulator.url, max_tries=2, backoff_factor=0.0)
    clock = Clock()
    client.circuit = NetworkCircuit(client.stop_event, clock=clock)
    client.circuit.fault("a", "x")
    client.circuit.fault("b", "x")
    client.circuit.fault("c", "x")
    with pytest.raises(Exception, match="gave up after 2 tries"):
        client.post(HOURLY, {}, what="share_hour d", account="d")
    clock.now += UNREACHABLE_AFTER_SECONDS + 1
    assert not client.circuit.check()  # WeChat answered (errcode -1): it can be reached


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_unreachable_ending(stderr: str, messages: list[dict[str, t.Any]], fault: str) -> None:
    lines = log_lines(stderr)
    last = lines[-1]
    assert last.level == "ERROR"
    assert last.message.startswith(f"{UNREACHABLE}: {fault}"), last.message
    assert "nothing was lost" in last.message
    assert "Run again later" in last.message
    assert messages, "no output"
    assert messages[-1]["type"] == "STATE"
    # Accounts not reached are counted, not listed one by one.
    assert "accounts failed" not in stderr
    assert " not reached; " in stderr
    for name in INTERNAL:
        assert name not in stderr


class Timed(t.NamedTuple):
    """A run of the console script, and how long it took."""

    out: TapOutput
    seconds: float


def _timed(config: dict[str, t.Any], tmp_path: Path) -> Timed:
    started = time.monotonic()
    out = run_tap(config, tmp_path)
    return Timed(out, time.monotonic() - started)


@pytest.fixture(scope="module")
def unreachable_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, t.Any]:
    """Both of the issue's unreachable cases, run at the same time (each mostly waits).

    200 accounts against a refused port, with the defaults; 100 accounts against a host that
    accepts connections (the kernel does) and never answers, with ``request_timeout: 3``.
    """
    port = refused_port()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        configs: dict[str, dict[str, t.Any]] = {
            "refused": {
                "accounts": [{"app_id": a, "access_token": f"t-{a}"} for a in list(APPS)[:200]],
                "api_url": f"http://127.0.0.1:{port}",
                **ONE_DAY,
            },
            "silent": {
                "accounts": [{"app_id": a, "access_token": f"t-{a}"} for a in list(APPS)[:100]],
                "api_url": f"http://{host}",
                "request_timeout": 3,
                **ONE_DAY,
            },
        }
        results: dict[str, t.Any] = {"port": port, "host": host}
        threads = [
            threading.Thread(
                target=lambda name=name: results.__setitem__(
                    name, _timed(configs[name], tmp_path_factory.mktemp(name))
                )
            )
            for name in configs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for name in configs:
        timed = results[name]
        print(
            f"\n[unreachable] {name}: {timed.seconds:.1f} s, exit {timed.out.exit_code}, "
            f"{len(timed.out.stderr.splitlines())} log lines"
        )
    return results


@pytest.mark.process
def test_200_accounts_against_a_refused_port_stop_within_90_s_in_60_lines(
    unreachable_runs: dict[str, t.Any],
) -> None:
    out, seconds = unreachable_runs["refused"]
    port = unreachable_runs["port"]
    assert out.exit_code == 75, out.stderr[-3000:]
    assert seconds < 90
    assert len(out.stderr.splitlines()) <= 60
    check_unreachable_ending(
        out.stderr, out.messages, f"could not connect to 127.0.0.1:{port} (connection refused)"
    )


@pytest.mark.process
def test_100_accounts_against_a_host_that_never_answers_stop_within_150_s(
    unreachable_runs: dict[str, t.Any],
) -> None:
    out, seconds = unreachable_runs["silent"]
    host = unreachable_runs["host"]
    assert out.exit_code == 75, out.stderr[-3000:]
    assert seconds < 150
    last = log_lines(out.stderr)[-1].message
    assert (
        f"no complete answer from {host} within request_timeout (3 s)" in last
        or f"could not connect to {host} (no answer within request_timeout, 3 s)" in last
    ), last
    check_unreachable_ending(out.stderr, out.messages, "")


# An untrusted certificate ----------------------------------------------------------------------


@pytest.fixture
def self_signed_https(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """An HTTPS server on loopback with a certificate made now, trusted by nobody."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    handshakes: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"list": []}')

    class Server(http.server.ThreadingHTTPServer):
        def get_request(self) -> tuple[socket.socket, t.Any]:
            sock, address = super().get_request()
            handshakes.append(1)
            return sock, address

    server = Server(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", handshakes
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_is_named_and_not_retried(
    self_signed_https: tuple[str, list[int]],
) -> None:
    url, handshakes = self_signed_https
    host = url.removeprefix("https://")
    client = WeChatClient(url, max_tries=5, backoff_factor=0.0)
    with pytest.raises(UnreachableError):
        client.post(HOURLY, {}, what="share_hour x", account="x")
    assert client.circuit.reason == (
        f"the TLS certificate of {host} is not trusted (self-signed certificate): set "
        "REQUESTS_CA_BUNDLE to your CA bundle"
    )
    assert not client.circuit.retry_later
    assert len(handshakes) == 1  # not retried


def test_a_run_against_an_untrusted_certificate_stops_in_one_line(
    self_signed_https: tuple[str, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = self_signed_https
    accounts = [{"app_id": a, "access_token": f"token-{a}"} for a in list(APPS)[:20]]
    out = sync({"accounts": accounts, "api_url": url, **ONE_DAY})
    assert out.exit_code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors[-1].startswith("Stopped: the TLS certificate of 127.0.0.1:")
    assert "set REQUESTS_CA_BUNDLE to your CA bundle" in errors[-1]
    assert UNREACHABLE not in caplog.text  # a scheduler must not retry it: it needs a fix
    assert not [m for m in errors if " failed in " in m]
    for name in INTERNAL:
        assert name not in caplog.text


# Issue 18, item 12: a signal before the run begins; the last line of wrong settings -------------


def _caught_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_right_after_the_start_ends_the_process_with_its_exit_code(
    tmp_path: Path, signum: int, code: int
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"app_id": APP_ID, "access_token": "x", **ONE_DAY}))
    process = subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TAP_WECHAT_SHARE_LOGLEVEL": "INFO"},
    )
    try:
        both = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
        deadline = time.monotonic() + 30
        while _caught_signals(process.pid) & both != both:
            assert time.monotonic() < deadline, "the process never handled the signals"
            time.sleep(0.002)
        # The SDK writes its first line before it installs its own handler: none yet.
        assert os.get_blocking(process.stderr.fileno())  # type: ignore[union-attr]
        os.set_blocking(process.stderr.fileno(), False)  # type: ignore[union-attr]
        assert process.stderr.read() is None  # type: ignore[union-attr]
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code
    assert b"Traceback" not in stderr
    assert stdout == b""
    name = signal.Signals(signum).name
    assert stderr.decode().strip().splitlines()[-1] == (
        f"Stopped by {name} before the run began: nothing was read"
    )


def test_wrong_settings_end_on_the_reason_in_words_under_structured_logging(
    tmp_path: Path,
) -> None:
    """As `meltano config test` shows it: the last line, with Meltano's JSON log records."""
    log_config = tmp_path / "logging.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"f": {"()": "singer_sdk.logging.StructuredFormatter"}},
                "handlers": {
                    "console": {
                        "class": "logging.StreamHandler",
                        "formatter": "f",
                        "stream": "ext://sys.stderr",
                    }
                },
                "root": {"handlers": ["console"], "level": "INFO"},
            }
        )
    )
    config = {"app_id": APP_ID, "access_token": "x", "start_date": "2026-11-01"}
    out = run_tap(
        {**config, "lookback_days": -1},
        tmp_path,
        env={"SINGER_SDK_LOG_CONFIG": str(log_config)},
    )
    assert out.exit_code == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1] == "lookback_days: -1 is not allowed; give a whole number of at least 0"
    assert json.loads(lines[-2])["message"] == lines[-1]  # the log record, for log parsers


def test_wrong_settings_are_not_repeated_in_the_console_format(tmp_path: Path) -> None:
    config = {"app_id": APP_ID, "access_token": "x", "start_date": "2026-11-01"}
    out = run_tap({**config, "lookback_days": -1}, tmp_path)
    assert out.exit_code == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].endswith(
        "| lookback_days: -1 is not allowed; give a whole number of at least 0"
    )
    assert sum("lookback_days: -1" in line for line in lines) == 1
