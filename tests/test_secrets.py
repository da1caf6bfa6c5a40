"""Secrets never appear in stdout, stderr, state, records or exception text, at DEBUG level."""

from __future__ import annotations

import logging
import sys
import typing as t

import pytest
import requests

from tap_wechat_share.authenticators import ReadyTokenAuthenticator
from tap_wechat_share.client import FatalError, WeChatClient
from tap_wechat_share.redact import REDACTED, install_log_redaction, redact_text, register_secret
from tests.conftest import APP_ID, APP_SECRET, run_tap
from tests.emulator import Fault

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.emulator import WeChatEmulator

HOURLY = "/datacube/getusersharehour"
STABLE = "/cgi-bin/stable_token"
FAULTS = (
    Fault("reset", path=HOURLY, day="2026-11-02"),
    Fault("http", path=HOURLY, day="2026-11-03", status=502),
    Fault("html", path=HOURLY, day="2026-11-04"),
    Fault("errcode", path=HOURLY, day="2026-11-05", errcode=-1),
    Fault("rotate", path=HOURLY, day="2026-11-06"),
    Fault("http", path=HOURLY, day="2026-11-07", status=429),
    Fault("delay", path=HOURLY, day="2026-11-08", delay=2.5),
)


def secrets_seen(emu: WeChatEmulator) -> set[str]:
    return {APP_SECRET} | {c.token for c in emu.calls if c.token}


def assert_no_secret(text: str, secrets: set[str]) -> None:
    for secret in secrets:
        assert secret not in text, "a secret leaked"


def test_no_secret_in_any_output_at_debug_level_across_faults(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path
) -> None:
    for fault in FAULTS:
        emulator.add_fault(fault)
    out = run_tap(config | {"request_timeout": 1, "max_tries": 4}, tmp_path, log_level="DEBUG")
    assert out.exit_code == 0, out.stderr[-2000:]
    secrets = secrets_seen(emulator)
    assert len(secrets) >= 3  # the secret and two stable tokens (one rotated)
    # The faults really happened, and urllib3 did log the requests (with the URL) at DEBUG.
    assert {c.outcome for c in emulator.calls_to(HOURLY)} >= {
        "reset",
        "http 502",
        "html",
        "errcode -1",
    }
    assert "access_token=<redacted>" in out.stderr
    assert_no_secret(out.stdout, secrets)
    assert_no_secret(out.stderr, secrets)


def test_no_secret_when_a_ready_token_is_refused(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path
) -> None:
    token = emulator.issue_token(APP_ID)
    emulator.rotate_token(APP_ID)
    del config["app_secret"]
    out = run_tap(config | {"access_token": token}, tmp_path, log_level="DEBUG")
    assert out.exit_code == 1
    assert "invalid or expired" in out.stderr
    assert_no_secret(out.stdout + out.stderr, {token})


def test_no_secret_when_retries_are_exhausted_on_connection_errors(tmp_path: Path) -> None:
    # Nothing listens on this port: every try fails with a connection error quoting the URL.
    token = "ready-token-0123456789-abcdefghij"
    config = {
        "app_id": APP_ID,
        "access_token": token,
        "start_date": "2026-11-01",
        "end_date": "2026-11-01",
        "api_url": "http://127.0.0.1:9",
        "max_tries": 2,
    }
    out = run_tap(config, tmp_path, log_level="DEBUG")
    assert out.exit_code == 75  # the run's only account: WeChat cannot be reached
    assert "gave up after 2 tries" in out.stderr
    assert "2026-11-01" in out.stderr
    assert_no_secret(out.stdout + out.stderr, {token})


def test_redact_text_scrubs_token_shapes_and_registered_secrets() -> None:
    register_secret("registered-secret-value")
    text = (
        "POST /datacube/getusersharehour?access_token=ABC.def-123&x=1 "
        '{"access_token": "tok-in-json", "secret": "sec-in-json"} '
        "{'app_secret': 'sec-in-repr'} and registered-secret-value"
    )
    redacted = redact_text(text)
    for secret in (
        "ABC.def-123",
        "tok-in-json",
        "sec-in-json",
        "sec-in-repr",
        "registered-secret-value",
    ):
        assert secret not in redacted
    assert redacted.count(REDACTED) == 5


def test_log_records_are_redacted_whoever_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("another-secret-for-logs")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3.connectionpool").debug(
        '"POST %s HTTP/1.1" 200', "/x?access_token=urllib3-token-abc"
    )
    try:
        raise ValueError("boom another-secret-for-logs")  # noqa: TRY301
    except ValueError:
        logging.getLogger("any").exception("failed")
    assert "urllib3-token-abc" not in caplog.text
    assert "another-secret-for-logs" not in caplog.text
    assert "access_token=<redacted>" in caplog.text


def test_client_errors_never_quote_the_token() -> None:
    client = WeChatClient("http://127.0.0.1:9", max_tries=1, timeout=1)
    with pytest.raises(FatalError) as caught:
        client.post(
            HOURLY, {}, authenticator=ReadyTokenAuthenticator(APP_ID, "token-in-the-query-string")
        )
    assert "token-in-the-query-string" not in str(caught.value)


def test_what_a_token_command_prints_is_never_logged(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(emulator.issue_token(APP_ID) + "\n")
    del config["app_secret"]
    config["access_token_command"] = f"echo 'asking the token service' >&2; cat {token_file}"
    emulator.add_fault(Fault("reset", path=HOURLY, day="2026-11-03"))
    out = run_tap(config, tmp_path, log_level="DEBUG")
    assert out.exit_code == 0, out.stderr[-2000:]
    assert "asking the token service" in out.stderr
    assert_no_secret(out.stdout + out.stderr, {token_file.read_text().strip()})


@pytest.mark.parametrize("source", ["app_secret", "access_token_command"])
def test_tokens_obtained_at_run_time_are_redacted_even_in_plain_text(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path, source: str
) -> None:
    """A token the tap obtains is registered as a secret: redacted where no pattern finds it.

    WeChat's errmsg quotes the token as bare words (no ``access_token=``, no JSON key), and a
    token command echoes it on its standard error; only the run's registry of secrets can
    catch those. The run is a fresh process, so the tap knows the token only from its source.
    """
    if source == "app_secret":
        # The stable token is the same for every caller while it is valid: the tap gets this one.
        answer = requests.post(
            emulator.url + STABLE,
            json={"grant_type": "client_credential", "appid": APP_ID, "secret": APP_SECRET},
            timeout=10,
        )
        token = answer.json()["access_token"]
    else:
        token = emulator.issue_token(APP_ID)
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        del config["app_secret"]
        config["access_token_command"] = (
            f"echo handing out $(cat {token_file}) >&2; cat {token_file}"
        )
    emulator.add_fault(
        Fault("errcode", path=HOURLY, day="2026-11-02", errcode=-1, errmsg=f"busy for {token}")
    )
    out = run_tap(config | {"end_date": "2026-11-03"}, tmp_path, log_level="DEBUG")
    assert out.exit_code == 0, out.stderr[-2000:]
    assert "errcode -1: busy for <redacted>" in out.stderr  # the errmsg was logged, redacted
    if source == "access_token_command":
        assert "handing out <redacted>" in out.stderr
    assert_no_secret(out.stdout + out.stderr, {token})


@pytest.fixture
def fresh_redaction() -> Iterator[logging.Logger]:
    """The redacting record factory installed anew over logging's own.

    It is installed once per process (by the first tap), so a test that needs the code as it is
    now, not as it was then, installs it again; the earlier factory comes back afterwards.
    """
    saved = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    install_log_redaction()
    yield logging.getLogger("tests.redaction")
    logging.setLogRecordFactory(saved)


def test_the_record_factory_renders_and_scrubs_message_exception_and_stack_once(
    fresh_redaction: logging.Logger,
) -> None:
    factory = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is factory  # installed once, not wrapped again
    register_secret("secret-in-a-record-123")

    def make(
        msg: str, args: tuple[object, ...] = (), exc_info: t.Any = None, sinfo: str | None = None
    ) -> logging.LogRecord:
        return fresh_redaction.makeRecord(
            "tests.redaction", logging.INFO, "f.py", 1, msg, args, exc_info, sinfo=sinfo
        )

    record = make("POST %s took %d ms", ("/x?access_token=abc123def", 5))
    assert (record.msg, record.args) == ("POST /x?access_token=<redacted> took 5 ms", None)
    assert record.getMessage() == "POST /x?access_token=<redacted> took 5 ms"
    # A format its arguments do not fit is kept as written (scrubbed), not raised.
    record = make("100%s %d secret-in-a-record-123", ("x",))
    assert (record.msg, record.args) == ("100%s %d <redacted>", None)
    try:
        raise ValueError("boom secret-in-a-record-123")  # noqa: TRY301
    except ValueError:
        record = make("failed", exc_info=sys.exc_info())
    assert record.exc_info is None
    assert record.exc_text is not None
    assert record.exc_text.startswith("Traceback (most recent call last):\n")
    assert record.exc_text.endswith("\nValueError: boom <redacted>")
    record = make("no error", exc_info=(None, None, None))
    assert (record.exc_info, record.exc_text) == ((None, None, None), None)
    record = make("with stack", sinfo="Stack (most recent call last):\n  ?access_token=abc123def")
    assert record.stack_info == "Stack (most recent call last):\n  ?access_token=<redacted>"
    assert make("plain").stack_info is None
