"""The client reads proxies and CA settings from the environment once, as requests would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tap_wechat_share.client import WeChatClient

if TYPE_CHECKING:
    import pytest


def test_proxy_settings_from_the_environment_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal.example:3128")
    monkeypatch.setenv("NO_PROXY", "")
    client = WeChatClient("https://api.weixin.qq.com")
    assert client.session.proxies["https"] == "http://proxy.internal.example:3128"
    assert client.session.trust_env is False


def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = WeChatClient("http://127.0.0.1:8765")
    assert "http" not in client.session.proxies


def test_a_ca_bundle_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    client = WeChatClient("https://api.weixin.qq.com")
    assert client.session.verify == "/etc/ssl/certs/ca-certificates.crt"
