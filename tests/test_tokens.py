"""Token sources as SDK authenticators: lifetime, renewal after a refusal, one fetch for many
callers, and the token in the query string of each request the client sends."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import typing as t
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tap_wechat_share import authenticators
from tap_wechat_share.authenticators import (
    AccessTokenAuthenticator,
    ReadyTokenAuthenticator,
    StableTokenAuthenticator,
)
from tap_wechat_share.client import (
    FatalError,
    StopRequestedError,
    TokenRejectedError,
    WeChatClient,
)
from tests.conftest import APP_ID, APP_SECRET
from tests.emulator import HOURLY_PATH, STABLE_TOKEN_PATH, Fault

if t.TYPE_CHECKING:
    from tests.emulator import WeChatEmulator

REFUSAL = TokenRejectedError(40001, "invalid credential")
DAY = {"begin_date": "2026-11-02", "end_date": "2026-11-02"}


class CountingAuthenticator(AccessTokenAuthenticator):
    """Hands out token-1, token-2, ... each living ``lifetime`` seconds."""

    def __init__(self, lifetime: float | None) -> None:
        super().__init__("wxcount")
        self.lifetime = lifetime

    def _fetch(self) -> tuple[str, float | None]:
        return f"token-{self.fetches + 1}", self.lifetime


def test_a_token_is_renewed_five_minutes_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(authenticators, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    authenticator = CountingAuthenticator(lifetime=7200)
    assert authenticator.token() == "token-1"
    clock[0] += 7200 - 301
    assert authenticator.token() == "token-1"
    clock[0] += 2
    assert authenticator.token() == "token-2"
    assert authenticator.fetches == 2


def test_a_stable_token_is_asked_again_five_minutes_before_its_expires_in(
    emulator: WeChatEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(authenticators, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, WeChatClient(emulator.url))
    authenticator.token()
    clock[0] += 7200 - 301  # the emulator's expires_in is 7200, as WeChat's
    authenticator.token()
    assert len(emulator.calls_to(STABLE_TOKEN_PATH)) == 1
    clock[0] += 2
    authenticator.token()
    assert len(emulator.calls_to(STABLE_TOKEN_PATH)) == 2


def test_a_token_without_a_lifetime_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(authenticators, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    authenticator = CountingAuthenticator(lifetime=None)
    authenticator.token()
    clock[0] += 10**9
    assert authenticator.token() == "token-1"


def test_simultaneous_refusals_of_one_token_renew_it_once() -> None:
    authenticator = CountingAuthenticator(lifetime=None)
    refused = authenticator.token()
    barrier = threading.Barrier(8)

    def refuse() -> None:
        barrier.wait()
        authenticator.renew(refused, REFUSAL)

    threads = [threading.Thread(target=refuse) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert authenticator.token() == "token-2"
    assert authenticator.fetches == 2
    authenticator.renew("token-2", REFUSAL)  # a later refusal of the new token renews again
    assert authenticator.token() == "token-3"


def test_a_ready_token_cannot_be_renewed(caplog: pytest.LogCaptureFixture) -> None:
    authenticator = ReadyTokenAuthenticator(APP_ID, "ready-token-abcdef")
    assert authenticator.token() == "ready-token-abcdef"
    with pytest.raises(FatalError) as raised:
        authenticator.renew("ready-token-abcdef", REFUSAL)
    assert str(raised.value) == (
        f"the access_token given for {APP_ID} is invalid or expired (errcode 40001: invalid "
        "credential; the access token is invalid or expired; check app_id/app_secret, or give a "
        "fresh token); give a fresh one, or use app_secret or access_token_command so the tap "
        "can renew it"
    )
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            (
                f"{APP_ID}: WeChat refused the access token (errcode 40001: invalid credential); "
                "getting it anew from the access_token setting"
            ),
        )
    ]


def test_stable_token_asks_without_force_refresh_and_once_for_many_callers(
    emulator: WeChatEmulator,
) -> None:
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, WeChatClient(emulator.url))
    tokens = set()
    threads = [threading.Thread(target=lambda: tokens.add(authenticator.token())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 1
    calls = emulator.calls_to("/cgi-bin/stable_token")
    assert len(calls) == 1
    assert calls[0].outcome == "ok"
    assert calls[0].user_agent == "tap-wechat-share"
    assert calls[0].body == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": APP_SECRET,
        "force_refresh": False,
    }
    # The emulator hands the same stable token to a second caller (force_refresh false).
    assert (
        StableTokenAuthenticator(APP_ID, APP_SECRET, WeChatClient(emulator.url)).token() in tokens
    )


def test_a_failed_stable_token_fetch_is_not_repeated(emulator: WeChatEmulator) -> None:
    authenticator = StableTokenAuthenticator(
        APP_ID, "a-wrong-secret-123", WeChatClient(emulator.url)
    )
    for _ in range(3):
        with pytest.raises(FatalError, match="errcode 40125"):
            authenticator.token()
    assert len(emulator.calls_to("/cgi-bin/stable_token")) == 1


def test_an_authenticator_puts_the_token_in_the_query_string() -> None:
    authenticator = ReadyTokenAuthenticator(APP_ID, "ready-token-abcdef")
    request = requests.Request(
        "POST", "http://127.0.0.1:9/datacube/getusershare?x=1", json={}
    ).prepare()
    authenticated = authenticator(request)
    assert parse_qs(urlsplit(authenticated.url or "").query) == {
        "x": ["1"],
        "access_token": ["ready-token-abcdef"],
    }


def test_the_client_sends_the_authenticators_token(emulator: WeChatEmulator) -> None:
    client = WeChatClient(emulator.url)
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, client)
    body = client.post(HOURLY_PATH, DAY, authenticator=authenticator, required="list")
    assert body["list"] == emulator.hourly_rows(APP_ID, dt.date(2026, 11, 2))
    (call,) = emulator.calls_to(HOURLY_PATH)
    assert call.token == authenticator.token()
    assert call.app_id == APP_ID


def test_simultaneous_refusals_against_the_emulator_renew_the_token_once(
    emulator: WeChatEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = WeChatClient(emulator.url)
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, client)
    first = authenticator.token()
    # Another service force-refreshes: every request in flight carries a token now refused.
    emulator.rotate_token(APP_ID)
    emulator.latency = 0.5  # the refusals come back while the other requests are on their way
    barrier = threading.Barrier(6)
    bodies: list[dict[str, t.Any]] = []

    def post() -> None:
        barrier.wait()
        bodies.append(client.post(HOURLY_PATH, DAY, authenticator=authenticator, what="day"))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(bodies) == 6
    calls = emulator.calls_to(HOURLY_PATH)
    refused = [c for c in calls if c.outcome == "errcode 40001"]
    assert len(refused) == 6
    assert {c.token for c in refused} == {first}
    assert [c.outcome for c in emulator.calls_to(STABLE_TOKEN_PATH)] == ["ok", "ok"]  # one renewal
    assert authenticator.fetches == 2
    assert {c.token for c in calls if c.outcome == "ok"} == {authenticator.token()} - {first}
    assert caplog.text.count("WeChat refused the access token") == 1
    for secret in (first, authenticator.token(), APP_SECRET):
        assert secret not in caplog.text


def test_a_second_refusal_right_after_renewing_stops_the_account(
    emulator: WeChatEmulator,
) -> None:
    emulator.add_fault(Fault("errcode", path=HOURLY_PATH, errcode=40001, times=2))
    client = WeChatClient(emulator.url)
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, client)
    with pytest.raises(FatalError) as caught:
        client.post(HOURLY_PATH, DAY, authenticator=authenticator, what="share_hour 2026-11-02")
    assert str(caught.value) == (
        "share_hour 2026-11-02: WeChat refused the token again right after it was renewed "
        "(errcode 40001: system error; the access token is invalid or expired; check "
        "app_id/app_secret, or give a fresh token)"
    )
    assert len(emulator.calls_to(HOURLY_PATH)) == 2
    assert len(emulator.calls_to(STABLE_TOKEN_PATH)) == 2


def test_a_refused_ready_token_stops_the_account_without_a_second_try(
    emulator: WeChatEmulator,
) -> None:
    emulator.add_fault(Fault("rotate", path=HOURLY_PATH))
    client = WeChatClient(emulator.url)
    authenticator = ReadyTokenAuthenticator(APP_ID, emulator.issue_token(APP_ID))
    with pytest.raises(FatalError, match=f"the access_token given for {APP_ID} is invalid"):
        client.post(HOURLY_PATH, DAY, authenticator=authenticator)
    assert len(emulator.calls_to(HOURLY_PATH)) == 1


def test_an_errcode_that_stops_the_account_names_what_was_asked(
    emulator: WeChatEmulator,
) -> None:
    emulator.add_fault(Fault("errcode", path=HOURLY_PATH, errcode=48001, errmsg="api unauthorized"))
    client = WeChatClient(emulator.url)
    authenticator = ReadyTokenAuthenticator(APP_ID, emulator.issue_token(APP_ID))
    with pytest.raises(FatalError, match=r"^share_hour 2026-11-02: errcode 48001: api unauth"):
        client.post(HOURLY_PATH, DAY, authenticator=authenticator, what="share_hour 2026-11-02")


def test_a_stop_during_a_stable_token_fetch_is_not_remembered_as_a_failure(
    emulator: WeChatEmulator,
) -> None:
    emulator.add_fault(Fault("delay", path=STABLE_TOKEN_PATH, delay=30))
    client = WeChatClient(emulator.url)
    authenticator = StableTokenAuthenticator(APP_ID, APP_SECRET, client)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            authenticator.token()
        except BaseException as exc:  # noqa: BLE001 - kept for the assertions
            errors.append(exc)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    for _ in range(400):
        if emulator.calls_to(STABLE_TOKEN_PATH):
            break
        time.sleep(0.025)
    client.stop_event.set()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], StopRequestedError)
    assert authenticator._failure is None
