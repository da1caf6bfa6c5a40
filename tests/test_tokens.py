"""Token sources on their own: lifetime, renewal after a refusal, one fetch for many callers."""

from __future__ import annotations

import threading
import typing as t
from types import SimpleNamespace

import pytest

from tap_wechat_share import auth
from tap_wechat_share.auth import ReadyTokenProvider, StableTokenProvider, TokenProvider
from tap_wechat_share.client import FatalError, TokenRejectedError, WeChatClient
from tests.conftest import APP_ID, APP_SECRET

if t.TYPE_CHECKING:
    from tests.emulator import WeChatEmulator

REFUSAL = TokenRejectedError(40001, "invalid credential")


class CountingProvider(TokenProvider):
    """Hands out token-1, token-2, ... each living ``lifetime`` seconds."""

    def __init__(self, lifetime: float | None) -> None:
        super().__init__("wxcount")
        self.lifetime = lifetime

    def _fetch(self) -> tuple[str, float | None]:
        return f"token-{self.fetches + 1}", self.lifetime


def test_a_token_is_renewed_five_minutes_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    provider = CountingProvider(lifetime=7200)
    assert provider.token() == "token-1"
    clock[0] += 7200 - 301
    assert provider.token() == "token-1"
    clock[0] += 2
    assert provider.token() == "token-2"
    assert provider.fetches == 2


def test_a_token_without_a_lifetime_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    provider = CountingProvider(lifetime=None)
    provider.token()
    clock[0] += 10**9
    assert provider.token() == "token-1"


def test_simultaneous_refusals_of_one_token_renew_it_once() -> None:
    provider = CountingProvider(lifetime=None)
    refused = provider.token()
    barrier = threading.Barrier(8)

    def refuse() -> None:
        barrier.wait()
        provider.renew(refused, REFUSAL)

    threads = [threading.Thread(target=refuse) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert provider.token() == "token-2"
    assert provider.fetches == 2
    provider.renew("token-2", REFUSAL)  # a later refusal of the new token renews again
    assert provider.token() == "token-3"


def test_a_ready_token_cannot_be_renewed() -> None:
    provider = ReadyTokenProvider(APP_ID, "ready-token-abcdef")
    assert provider.token() == "ready-token-abcdef"
    with pytest.raises(FatalError, match="invalid or expired"):
        provider.renew("ready-token-abcdef", REFUSAL)


def test_stable_token_asks_without_force_refresh_and_once_for_many_callers(
    emulator: WeChatEmulator,
) -> None:
    provider = StableTokenProvider(APP_ID, APP_SECRET, WeChatClient(emulator.url))
    tokens = set()
    threads = [threading.Thread(target=lambda: tokens.add(provider.token())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 1
    calls = emulator.calls_to("/cgi-bin/stable_token")
    assert len(calls) == 1
    assert calls[0].outcome == "ok"
    # The emulator hands the same stable token to a second caller (force_refresh false).
    assert StableTokenProvider(APP_ID, APP_SECRET, WeChatClient(emulator.url)).token() in tokens


def test_a_failed_stable_token_fetch_is_not_repeated(emulator: WeChatEmulator) -> None:
    provider = StableTokenProvider(APP_ID, "a-wrong-secret-123", WeChatClient(emulator.url))
    for _ in range(3):
        with pytest.raises(FatalError, match="errcode 40125"):
            provider.token()
    assert len(emulator.calls_to("/cgi-bin/stable_token")) == 1
