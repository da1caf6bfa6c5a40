"""The HTTP client on its own: what it says about faults, and its errcode and minute rules."""

from __future__ import annotations

import logging
import re

import pytest
import responses

from tap_wechat_share.client import (
    ApiError,
    FatalError,
    RetriableError,
    WeChatClient,
    raise_for_errcode,
    seconds_to_next_minute,
)

URL = "http://127.0.0.1:9"
HOURLY = "/datacube/getusersharehour"


@responses.activate
def test_an_http_fault_without_a_content_type_is_named_with_its_body_excerpt() -> None:
    responses.add(
        responses.POST, URL + HOURLY, status=502, body="  bad\n  gateway  ", content_type=None
    )
    client = WeChatClient(URL, max_tries=1)
    with pytest.raises(FatalError) as caught:
        client.post(HOURLY, {}, what="share_hour 2026-11-02")
    assert str(caught.value) == (
        "share_hour 2026-11-02: gave up after 1 tries; last error: HTTP 502, unknown type: "
        "'bad gateway'"
    )


@responses.activate
def test_a_long_body_is_cut_to_120_characters_in_the_message() -> None:
    body = "x" * 119 + "yz"
    responses.add(responses.POST, URL + HOURLY, status=503, body=body, content_type="text/plain")
    # Without `what`, the message names the path.
    with pytest.raises(
        FatalError,
        match=r"^/datacube/getusersharehour: gave up after 1 tries; "
        r"last error: HTTP 503, text/plain: 'x{119}y'$",
    ):
        WeChatClient(URL, max_tries=1).post(HOURLY, {})


@pytest.mark.parametrize("errcode", ["abc", "", [1], {"code": 1}])
def test_an_unreadable_errcode_is_a_transient_fault_that_quotes_it(errcode: object) -> None:
    with pytest.raises(RetriableError) as caught:
        raise_for_errcode({"errcode": errcode, "errmsg": "?"})
    assert str(caught.value) == f"unreadable errcode {str(errcode)[:20]!r} in WeChat's answer"


def test_an_errcode_without_errmsg_is_named_with_an_empty_one() -> None:
    with pytest.raises(ApiError) as caught:
        raise_for_errcode({"errcode": 45009})
    assert str(caught.value) == "errcode 45009: "


@pytest.mark.parametrize("body", [{}, {"errcode": 0}, {"errcode": None}, {"list": []}])
def test_no_errcode_or_errcode_0_is_no_error(body: dict[str, object]) -> None:
    raise_for_errcode(body)


def test_seconds_to_next_minute_reads_the_clock_by_default() -> None:
    # Whatever the time: more than 1 s (the margin), at most a minute and 1 s.
    assert 1.0 < seconds_to_next_minute() <= 61.0


def test_a_connection_error_is_retried_and_named() -> None:
    client = WeChatClient(URL, max_tries=2, backoff_factor=0.0)
    with pytest.raises(FatalError) as caught:
        client.post(HOURLY, {}, what="share_hour x")
    assert str(caught.value) == (
        "share_hour x: gave up after 2 tries; last error: could not connect to 127.0.0.1:9 "
        "(connection refused)"
    )


@responses.activate
def test_http_500_is_retried_like_any_5xx() -> None:
    responses.add(responses.POST, URL + HOURLY, status=500, body="oops", content_type="text/plain")
    responses.add(responses.POST, URL + HOURLY, json={"list": []})
    client = WeChatClient(URL, max_tries=2, backoff_factor=0.0)
    assert client.post(HOURLY, {}, required="list") == {"list": []}


@responses.activate
def test_an_unexpected_status_stops_at_once_naming_it() -> None:
    responses.add(responses.POST, URL + HOURLY, status=404, body="nope", content_type="text/plain")
    with pytest.raises(FatalError) as caught:
        WeChatClient(URL, max_tries=3).post(HOURLY, {}, what="x")
    assert str(caught.value) == "unexpected answer (HTTP 404, text/plain: 'nope'); check api_url"
    assert len(responses.calls) == 1


@responses.activate
def test_a_page_instead_of_json_is_retried_and_named() -> None:
    responses.add(
        responses.POST,
        URL + HOURLY,
        status=200,
        body="<html>login</html>",
        content_type="text/html",
    )
    with pytest.raises(FatalError) as caught:
        WeChatClient(URL, max_tries=2, backoff_factor=0.0).post(HOURLY, {}, what="x")
    assert str(caught.value) == (
        "x: gave up after 2 tries; last error: answer is not JSON "
        "(HTTP 200, text/html: '<html>login</html>')"
    )
    assert len(responses.calls) == 2


@responses.activate
def test_each_answer_is_logged_at_debug_with_its_status_and_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tap_wechat_share.client")
    responses.add(responses.POST, URL + HOURLY, json={"list": []})
    WeChatClient(URL).post(HOURLY, {}, what="share_hour 2026-11-02")
    [line] = [r.getMessage() for r in caplog.records if r.name == "tap_wechat_share.client"]
    assert re.fullmatch(r"share_hour 2026-11-02: HTTP 200 in \d+\.\d{3} s", line), line
