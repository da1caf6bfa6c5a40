"""The client against a real (emulated) server: a whole try is bounded, and a stop ends it all."""

from __future__ import annotations

import datetime as dt
import threading
import time
import typing as t

import backoff
import pytest

from tap_wechat_share import client as client_module
from tap_wechat_share.authenticators import ReadyTokenAuthenticator, StableTokenAuthenticator
from tap_wechat_share.client import FatalError, StopRequestedError, WeChatClient
from tests.conftest import APP_ID, APP_SECRET
from tests.emulator import HOURLY_PATH, STABLE_TOKEN_PATH, Fault

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tests.emulator import Call, WeChatEmulator

DAY = {"begin_date": "2026-11-02", "end_date": "2026-11-02"}


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        time.sleep(0.025)
    raise AssertionError(f"waited in vain for {what}")


def _calls(emulator: WeChatEmulator, outcome: str | None = None) -> list[Call]:
    return [c for c in emulator.calls_to(HOURLY_PATH) if outcome is None or c.outcome == outcome]


class _Post:
    """``client.post`` run in a thread, so that the test can stop it while it is in flight."""

    def __init__(self, client: WeChatClient, token: str) -> None:
        self.error: BaseException | None = None
        self.body: dict[str, t.Any] | None = None
        self._thread = threading.Thread(target=self._run, args=(client, token), daemon=True)
        self._thread.start()

    def _run(self, client: WeChatClient, token: str) -> None:
        try:
            self.body = client.post(
                HOURLY_PATH,
                DAY,
                authenticator=ReadyTokenAuthenticator(APP_ID, token),
                what="share_hour 2026-11-02",
                required="list",
            )
        except BaseException as exc:  # noqa: BLE001 - kept for the test's assertions
            self.error = exc

    def ended_within(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()


@pytest.mark.parametrize("kind", ["trickle", "trickle_body"])
def test_a_trickling_answer_ends_the_try_at_request_timeout(
    emulator: WeChatEmulator, kind: str
) -> None:
    # The answer is a few kilobytes at one byte per 0.2 s: about ten minutes per try if each
    # byte restarted the timer, as a per-read socket timeout does.
    emulator.add_fault(Fault(kind, path=HOURLY_PATH, delay=0.2, times=-1))
    client = WeChatClient(emulator.url, timeout=1, max_tries=2, backoff_factor=0.01)
    post = _Post(client, emulator.issue_token(APP_ID))
    assert post.ended_within(60), "a trickling answer kept the try alive"
    assert isinstance(post.error, FatalError)
    assert str(post.error) == (
        "share_hour 2026-11-02: gave up after 2 tries; last error: no complete answer from "
        f"{emulator.url.removeprefix('http://')} within request_timeout (1 s)"
    )
    assert len(_calls(emulator)) == 2
    assert emulator.wait_idle(10)
    assert {c.outcome for c in _calls(emulator)} == {"aborted"}


def test_a_trickling_answer_is_retried_and_the_next_try_succeeds(
    emulator: WeChatEmulator,
) -> None:
    emulator.add_fault(Fault("trickle_body", path=HOURLY_PATH, delay=0.2))
    client = WeChatClient(emulator.url, timeout=1, max_tries=2, backoff_factor=0.01)
    post = _Post(client, emulator.issue_token(APP_ID))
    assert post.ended_within(60)
    assert post.error is None
    assert post.body is not None
    assert post.body["list"] == emulator.hourly_rows(APP_ID, dt.date(2026, 11, 2))
    assert emulator.wait_idle(10)
    assert [c.outcome for c in _calls(emulator)] == ["aborted", "ok"]


def test_a_stop_abandons_a_hanging_request(emulator: WeChatEmulator) -> None:
    emulator.add_fault(Fault("delay", path=HOURLY_PATH, delay=30))
    client = WeChatClient(emulator.url, timeout=60, max_tries=5)
    post = _Post(client, emulator.issue_token(APP_ID))
    _wait_for(lambda: len(_calls(emulator)) == 1, "the request to arrive")
    client.stop_event.set()
    assert post.ended_within(10), "the stop did not end the request"
    assert isinstance(post.error, StopRequestedError)
    assert str(post.error) == "share_hour 2026-11-02: abandoned, the run is stopping"
    assert len(_calls(emulator)) == 1  # no new try once stopping


def test_a_stop_ends_the_backoff_wait(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.add_fault(Fault("http", path=HOURLY_PATH, status=502))
    client = WeChatClient(emulator.url, timeout=10, max_tries=5, backoff_factor=600)
    # Full jitter picks a wait in [0, 600 s); make it the longest.
    waits: list[float] = []

    def longest(value: float) -> float:
        waits.append(value)
        return value

    monkeypatch.setattr(backoff, "full_jitter", longest)
    post = _Post(client, emulator.issue_token(APP_ID))
    _wait_for(lambda: bool(waits), "the first backoff")
    client.stop_event.set()
    assert post.ended_within(10), "the stop did not end the backoff wait"
    assert waits == [600]
    assert isinstance(post.error, StopRequestedError)
    assert str(post.error) == "share_hour 2026-11-02: abandoned, the run is stopping"
    assert len(_calls(emulator)) == 1


def test_a_stop_ends_the_wait_for_the_next_minute(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "seconds_to_next_minute", lambda: 600.0)
    emulator.add_fault(
        Fault("errcode", path=HOURLY_PATH, errcode=45011, errmsg="api minute-quota reach limit")
    )
    client = WeChatClient(emulator.url, timeout=10)
    post = _Post(client, emulator.issue_token(APP_ID))
    _wait_for(lambda: len(_calls(emulator, "errcode 45011")) == 1, "the 45011 answer")
    client.stop_event.set()
    assert post.ended_within(10), "the stop did not end the minute wait"
    assert isinstance(post.error, StopRequestedError)
    assert str(post.error) == "share_hour 2026-11-02: abandoned, the run is stopping"
    assert len(_calls(emulator)) == 1


def test_no_try_starts_once_stopping(emulator: WeChatEmulator) -> None:
    stop = threading.Event()
    stop.set()
    client = WeChatClient(emulator.url, stop_event=stop)
    with pytest.raises(StopRequestedError):
        client.post(
            HOURLY_PATH,
            DAY,
            authenticator=ReadyTokenAuthenticator(APP_ID, emulator.issue_token(APP_ID)),
        )
    assert emulator.calls == []


@pytest.mark.parametrize("kind", ["trickle", "trickle_body"])
def test_a_patient_client_gets_the_whole_trickled_answer(
    emulator: WeChatEmulator, kind: str
) -> None:
    # The emulator's trickle is a real, complete HTTP answer: only its pace is odd.
    emulator.add_fault(Fault(kind, path=STABLE_TOKEN_PATH, delay=0.002))
    client = WeChatClient(emulator.url, timeout=60, max_tries=1)
    token = StableTokenAuthenticator(APP_ID, APP_SECRET, client).token()
    assert emulator.wait_idle(10)
    assert [c.outcome for c in emulator.calls_to(STABLE_TOKEN_PATH)] == ["ok"]
    # The same stable token as a second, untroubled caller gets.
    assert StableTokenAuthenticator(APP_ID, APP_SECRET, client).token() == token


def test_the_watchdog_thread_ends_when_the_client_is_idle_and_comes_back_for_the_next_try(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module._Watchdog, "idle_seconds", 0.05)
    # The thread sleeps until the last try's deadline before it sees that it is idle.
    client = WeChatClient(emulator.url, timeout=1)
    token = emulator.issue_token(APP_ID)

    def watchdogs() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "wechat-try-watchdog"}

    earlier = watchdogs()  # other clients' (other tests'), which end on their own
    for _ in range(2):
        post = _Post(client, token)
        assert post.ended_within(10)
        assert post.error is None
        _wait_for(lambda: not watchdogs() - earlier, "the idle watchdog thread to end")
    assert len(_calls(emulator, "ok")) == 2


def test_a_trickling_answer_through_an_http_proxy_ends_the_try_at_request_timeout(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator is the proxy too: it answers the absolute-URL requests a proxy receives.
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, emulator.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    emulator.add_fault(Fault("trickle", path=HOURLY_PATH, delay=0.2, times=-1))
    client = WeChatClient("http://wechat-api.invalid", timeout=1, max_tries=2, backoff_factor=0.01)
    assert client.session.proxies["http"] == emulator.url
    post = _Post(client, emulator.issue_token(APP_ID))
    assert post.ended_within(60), "a trickling answer through the proxy kept the try alive"
    assert isinstance(post.error, FatalError)
    assert "no complete answer from wechat-api.invalid:80 within request_timeout (1 s)" in str(
        post.error
    )
    assert len(_calls(emulator)) == 2


def test_backoff_doubles_from_backoff_factor_between_tries(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []

    def longest(value: float) -> float:  # full jitter at its top: the whole interval
        waits.append(value)
        return value

    monkeypatch.setattr(backoff, "full_jitter", longest)
    emulator.add_fault(Fault("http", path=HOURLY_PATH, status=502, times=3))
    client = WeChatClient(emulator.url, timeout=10, max_tries=4, backoff_factor=0.001)
    post = _Post(client, emulator.issue_token(APP_ID))
    assert post.ended_within(30)
    assert post.error is None
    assert waits == [0.001, 0.002, 0.004]
    assert [c.outcome for c in _calls(emulator)] == ["http 502"] * 3 + ["ok"]
    assert {c.user_agent for c in _calls(emulator)} == {"tap-wechat-share"}
