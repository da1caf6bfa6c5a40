"""A local emulator of the WeChat Official Account API endpoints the tap calls.

Standard library only, real HTTP on 127.0.0.1. It serves:

* ``POST /cgi-bin/stable_token``: the stable access token (same token while valid).
* ``GET /cgi-bin/token``: recorded and always refused with errcode 40164 (the tap must never
  call it).
* ``POST /datacube/getusersharehour`` and ``POST /datacube/getusershare``: deterministic, realistic
  share analytics, with WeChat's date rules (end_date at most yesterday, data from 2014-12-01 on,
  maximum span 1 and 7 days).
* ``POST /datacube/getarticleshare``: people who shared each published article per day (articles
  published on some days, shared over the following days), one day per request, data from
  2025-11-01 on, ``is_delay`` true for the latest day on demand (``delay_latest``) or for any
  day (``delayed_days``).
* ``POST /datacube/getbizsummary``: the account's daily overview of published content, one row
  per day (``detail.share_user``: at least the largest article's sharers that day, at most their
  sum; and figures the tap does not load: ``read_user``, ``like_user``, ...), one day per
  request, data from 2025-11-01 on, ``is_delay`` as getarticleshare's.

Any datacube endpoint can be retired (:meth:`WeChatEmulator.retire`): it then answers errcode
47009, as third-party code reports WeChat does for an endpoint taken offline.

Like WeChat, errors are HTTP 200 with ``{"errcode": N, "errmsg": "..."}``. Faults (errors, broken
proxies, connection resets, delays, bad rows, token rotation) can be injected with :class:`Fault`.
Every request is recorded as a :class:`Call`. The emulator never prints or logs tokens or secrets.

Run it on its own with::

    python tests/emulator.py --port 8765 --app wxdemo0000000001:emulator-demo-secret

Stopped (Ctrl-C, SIGTERM), it prints the calls it served per endpoint and app, with the days
answered and any day answered more than once (:func:`served_summary`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType, TracebackType
    from typing import Self

__all__ = [
    "ARTICLE_FIRST_DAY",
    "ARTICLE_PATH",
    "BIZ_PATH",
    "DAILY_PATH",
    "FAULT_KINDS",
    "FIRST_DAY",
    "HOURLY_PATH",
    "LEGACY_TOKEN_PATH",
    "STABLE_TOKEN_PATH",
    "Call",
    "Fault",
    "WeChatEmulator",
    "china_today",
    "main",
]

HOURLY_PATH = "/datacube/getusersharehour"
DAILY_PATH = "/datacube/getusershare"
ARTICLE_PATH = "/datacube/getarticleshare"
BIZ_PATH = "/datacube/getbizsummary"
_CGI_BIN = "/cgi-bin"
STABLE_TOKEN_PATH = f"{_CGI_BIN}/stable_token"
LEGACY_TOKEN_PATH = f"{_CGI_BIN}/token"
DATACUBE_PATHS = frozenset({HOURLY_PATH, DAILY_PATH, ARTICLE_PATH, BIZ_PATH})
KNOWN_PATHS = DATACUBE_PATHS | {STABLE_TOKEN_PATH, LEGACY_TOKEN_PATH}
MAX_SPAN_DAYS = {HOURLY_PATH: 1, DAILY_PATH: 7, ARTICLE_PATH: 1, BIZ_PATH: 1}
FIRST_DAY = dt.date(2014, 12, 1)
ARTICLE_FIRST_DAY = dt.date(2025, 11, 1)
"""getarticleshare's and getbizsummary's data begin on this day; earlier dates get errcode 61501."""
RETIRED_ERRCODE = 47009
TOKEN_EXPIRES_IN = 7200

# Faults that change how a call is answered (checked when the call arrives).
_ANSWER_FAULTS = frozenset({"errcode", "http", "html", "reset", "rotate", "no_list"})
# Faults that alter the rows of an otherwise successful datacube answer.
_DATA_FAULTS = frozenset(
    {
        "stray",
        "duplicate",
        "bad_hour",
        "negative",
        "missing_key",
        "odd_value",
        "digit_strings",
        "gbk",
    }
)
# Faults that change how the answer's bytes are sent: one byte every ``delay`` seconds, the whole
# answer (``trickle``) or only its body after whole headers (``trickle_body``).
_SEND_FAULTS = frozenset({"trickle", "trickle_body"})
FAULT_KINDS = frozenset({"delay"} | _ANSWER_FAULTS | _DATA_FAULTS | _SEND_FAULTS)
DEFAULT_TRICKLE_INTERVAL = 0.25

Row = dict[str, int | str]

_JSON_TYPE = "application/json; encoding=utf-8"  # what WeChat sends
_HTML_TYPE = "text/html"
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CHINA_OFFSET = dt.timezone(dt.timedelta(hours=8))

# Relative share activity per hour of the day (China time): quiet nights, lunch and evening peaks.
_HOUR_WEIGHTS: tuple[float, ...] = (
    0.06, 0.012, 0.006, 0.004, 0.004, 0.008, 0.05, 0.30,  # 00-07
    0.70, 0.85, 0.90, 1.00, 1.15, 0.95, 0.85, 0.85,  # 08-15
    0.90, 0.95, 1.00, 1.10, 1.30, 1.40, 1.00, 0.25,  # 16-23
)  # fmt: skip
# share_scene codes and their relative weight: 1 friends, 2 Moments, 255 other.
_SCENES: tuple[tuple[int, float], ...] = ((1, 1.0), (2, 0.55), (255, 0.12))
_EMPTY_DAY_ONE_IN = 6  # about one day in six has no shares at all
_MISSING_SCENE_BYTE = 40  # a scene is left out of an hour when its byte is below this (~16 %)
_CACHE_LIMIT = 200_000
_PUBLISH_ONE_IN = 3  # about one day in three has a publication
_SHARED_FOR_DAYS = 3  # an article is shared on its day and the two days after it
_MSG_DATA_ID_BASE = 2_247_480_000
_DELAYED_SHARE = 0.6  # a day that is not final yet shows about 60 % of its final sharers

_ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41002: "appid missing",
    41004: "appsecret missing",
    43002: "require POST method",
    47001: "data format error",
    61500: "date format error",
    61501: "date range error",
    RETIRED_ERRCODE: "this api is offline, please use the new api",
}


def china_today(now: dt.datetime | None = None) -> dt.date:
    """Return the date in China (Asia/Shanghai) at ``now`` (timezone-aware; default: the clock)."""
    try:
        zone: dt.tzinfo = ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:  # no tz database: China has had no DST since 1991
        zone = _CHINA_OFFSET
    return (now.astimezone(zone) if now else dt.datetime.now(zone)).date()


@dataclasses.dataclass(frozen=True)
class Fault:
    """A fault to inject into the emulator's answers.

    A fault applies to the first ``times`` calls it matches (``-1``: to every matching call),
    then it is used up. A call can be affected by at most one ``delay`` fault, one answering
    fault (``errcode``, ``http``, ``html``, ``reset``, ``rotate``, ``no_list``), one data
    fault (``stray``, ``duplicate``, ``bad_hour``, ``negative``, ``missing_key``, ``odd_value``,
    ``digit_strings``, ``gbk``: the answer encoded in GBK, not UTF-8, with a getarticleshare row
    whose msgid is ``文章_1``) and one sending
    fault (``trickle``: the whole answer, status line and headers included, is sent one byte
    every ``delay`` seconds; ``trickle_body``: the headers at once, then the body one byte every
    ``delay`` seconds); among faults of the same group the one added first wins. Data faults only
    match (and are only used up by) datacube calls that would otherwise succeed.

    Attributes:
        kind: One of :data:`FAULT_KINDS`.
        path: Only calls to this path (e.g. ``"/datacube/getusersharehour"``); None: any path.
        day: Only datacube calls whose ``begin_date`` is this ``YYYY-MM-DD``; None: any call.
        app_id: Only calls for this app (datacube: the app of the token; stable_token: the appid
            of the body); None: any app.
        times: How many matching calls the fault applies to; ``-1`` for ever.
        errcode: The errcode answered by an ``errcode`` fault.
        errmsg: The errmsg answered by an ``errcode`` fault.
        status: The HTTP status answered by an ``http`` fault.
        delay: Seconds a ``delay`` fault waits before answering normally; for ``trickle`` and
            ``trickle_body``, seconds between two bytes (0: :data:`DEFAULT_TRICKLE_INTERVAL`).
        value: The ``share_count`` of the row an ``odd_value`` fault appends (any JSON value).
    """

    kind: str
    path: str | None = None
    day: str | None = None
    app_id: str | None = None
    times: int = 1
    errcode: int = -1
    errmsg: str = "system error"
    status: int = 502
    delay: float = 0.0
    value: object = None

    def __post_init__(self) -> None:
        """Reject unknown kinds and meaningless counts."""
        if self.kind not in FAULT_KINDS:
            msg = f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}"
            raise ValueError(msg)
        if self.times != -1 and self.times < 1:
            msg = f"times must be -1 (for ever) or at least 1, not {self.times}"
            raise ValueError(msg)
        if self.delay < 0:
            msg = f"delay must not be negative, not {self.delay}"
            raise ValueError(msg)


@dataclasses.dataclass
class Call:
    """One HTTP request the emulator received (any path, failed ones included).

    Attributes:
        path: The request path without the query, e.g. ``"/datacube/getusersharehour"``.
        app_id: The app the call was for (from its token or its body), None if unknown.
        begin_date: The ``begin_date`` of the JSON body as received, None if absent.
        end_date: The ``end_date`` of the JSON body as received, None if absent.
        token: The ``access_token`` query parameter as received (left out of the repr).
        outcome: ``"ok"``, ``"ok <data fault kind>"``, ``"errcode <N>"``, ``"http <status>"``,
            ``"html"``, ``"no_list"``, ``"reset"``; ``"pending"`` while the call is being
            answered, ``"aborted"`` if the client was gone when the answer was written.
        started: ``time.monotonic()`` when the request arrived.
        finished: ``time.monotonic()`` when the answer was sent (NaN while pending).
        body: The JSON body as received (None if absent or not JSON; left out of the repr).
        user_agent: The request's User-Agent header, None if absent.
    """

    path: str
    app_id: str | None
    begin_date: str | None
    end_date: str | None
    token: str | None = dataclasses.field(repr=False)
    outcome: str
    started: float
    finished: float
    body: object = dataclasses.field(default=None, repr=False)
    user_agent: str | None = None


@dataclasses.dataclass
class _Armed:
    """A fault added to the emulator, with the number of uses left (-1: unlimited)."""

    fault: Fault
    left: int


@dataclasses.dataclass
class _Answer:
    """What to send back for one request."""

    status: int
    body: bytes
    content_type: str
    outcome: str
    reset: bool = False
    trickle: float = 0.0
    """Seconds between two bytes of the answer (0: sent at once)."""
    trickle_headers: bool = False
    """Whether the status line and headers trickle too."""


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=15).digest()


def _json_answer(payload: object, outcome: str = "ok") -> _Answer:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return _Answer(HTTPStatus.OK, body, _JSON_TYPE, outcome)


def _error(errcode: int, errmsg: str | None = None) -> _Answer:
    message = _ERRMSG.get(errcode, "system error") if errmsg is None else errmsg
    return _json_answer({"errcode": errcode, "errmsg": message}, f"errcode {errcode}")


def _html_error(status: int) -> _Answer:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = f"{status} {phrase}"
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    return _Answer(status, body, _HTML_TYPE, f"http {status}")


def _proxy_login_page() -> _Answer:
    body = (
        b"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Network login</title></head>"
        b"<body><h1>Please sign in to continue</h1>"
        b"<form method='post' action='/login'><input name='user'><input name='password' "
        b"type='password'><button>Sign in</button></form></body></html>\n"
    )
    return _Answer(HTTPStatus.OK, body, _HTML_TYPE, "html")


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


def _parse_date(value: object) -> dt.date | None:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


class WeChatEmulator:
    """A WeChat API emulator serving real HTTP on 127.0.0.1, in a background thread.

    Use it as a context manager (``with WeChatEmulator({...}) as emu:``) or call
    :meth:`start` and :meth:`stop`. Data is deterministic: the same ``seed``, app and day always
    give the same rows.

    Tokens: :meth:`issue_token` makes ready-made tokens (as a central token service holds);
    ``/cgi-bin/stable_token`` hands out one stable token per app, the same one until
    :meth:`rotate_token` or a call with ``force_refresh: true`` (which invalidates only the
    previous stable token, as stable tokens are isolated from others). Tokens never expire.

    Attributes:
        latency: Seconds added to every datacube answer (may be changed at any time).
        delay_latest: Whether getarticleshare and getbizsummary answers for yesterday say
            ``is_delay: true``, with provisional figures (about 60 % of the final ones); False:
            final figures.
        delayed_days: Other days they answer that way.
    """

    def __init__(
        self,
        apps: dict[str, str] | None = None,
        *,
        today: dt.date | None = None,
        latency: float = 0.0,
        seed: str = "wechat",
        port: int = 0,
    ) -> None:
        """Prepare an emulator (call :meth:`start` to serve).

        Args:
            apps: app_id -> app_secret of the apps ``stable_token`` knows.
            today: The China date the emulator believes is today; None: the real one, at each
                request (see :attr:`today`).
            latency: Seconds added to every datacube answer.
            seed: Seed of the generated data.
            port: Port to bind on 127.0.0.1; 0 picks a free one.
        """
        self._apps = dict(apps or {})
        self._today = today
        self.latency = latency
        self._seed = seed
        self._port = port
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._faults: list[_Armed] = []
        self._token_app: dict[str, str] = {}  # every token ever issued -> its app
        self._valid: set[str] = set()
        self._stable: dict[str, str] = {}  # app -> its current stable token
        self._cache: dict[tuple[str, dt.date], tuple[tuple[Row, ...], tuple[Row, ...]]] = {}
        self._app_scale: dict[str, float] = {}
        self._retired: set[str] = set()
        self.delay_latest = False
        self.delayed_days: set[dt.date] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind 127.0.0.1 and serve in a daemon thread.

        Returns:
            The emulator itself.

        Raises:
            RuntimeError: If it is already running.
        """
        if self._server is not None:
            msg = "the emulator is already running"
            raise RuntimeError(msg)
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="wechat-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (a no-op if not running)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown(connection)
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        """Start the emulator."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the emulator."""
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>`` (only while running)."""
        if self._server is None:
            msg = "the emulator is not running; call start() first"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        """The port it listens on (only while running)."""
        if self._server is None:
            msg = "the emulator is not running; call start() first"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def today(self) -> dt.date:
        """The China date the emulator believes is today; yesterday is the last day with data."""
        return self._today if self._today is not None else china_today()

    @today.setter
    def today(self, value: dt.date) -> None:
        self._today = value

    # ----------------------------------------------------------------- calls and faults

    @property
    def calls(self) -> list[Call]:
        """A snapshot (copies) of every call received so far, in arrival order."""
        with self._lock:
            return [dataclasses.replace(call) for call in self._calls]

    def calls_to(self, path: str) -> list[Call]:
        """A snapshot of the calls received for ``path``, in arrival order."""
        with self._lock:
            return [dataclasses.replace(call) for call in self._calls if call.path == path]

    def reset_calls(self) -> None:
        """Forget the calls received so far."""
        with self._lock:
            self._calls.clear()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no recorded call is still being answered.

        Returns:
            True if idle, False if ``timeout`` seconds passed first.
        """
        with self._idle:
            return self._idle.wait_for(
                lambda: all(call.outcome != "pending" for call in self._calls), timeout
            )

    def add_fault(self, fault: Fault) -> None:
        """Inject ``fault`` into the next matching call(s)."""
        with self._lock:
            self._faults.append(_Armed(fault, fault.times))

    def clear_faults(self) -> None:
        """Remove every fault, used up or not."""
        with self._lock:
            self._faults.clear()

    def retire(self, path: str) -> None:
        """Take datacube ``path`` offline: every call to it answers errcode 47009 from now on."""
        with self._lock:
            self._retired.add(path)

    # ----------------------------------------------------------------- tokens

    def issue_token(self, app_id: str) -> str:
        """Make a valid ready-made access token for ``app_id`` (as a central token service holds).

        It stays valid until :meth:`rotate_token` (``app_id`` need not be among ``apps``).
        """
        with self._lock:
            return self._new_token(app_id)

    def rotate_token(self, app_id: str) -> None:
        """Invalidate every token valid for ``app_id``, as if another service force-refreshed.

        The next ``stable_token`` call for the app returns a new token.
        """
        with self._lock:
            self._valid = {token for token in self._valid if self._token_app[token] != app_id}
            self._stable.pop(app_id, None)

    def _new_token(self, app_id: str) -> str:
        """Make and register a new valid token; the caller holds the lock."""
        token = secrets.token_urlsafe(96)
        while token in self._token_app:  # pragma: no cover - astronomically unlikely
            token = secrets.token_urlsafe(96)
        self._token_app[token] = app_id
        self._valid.add(token)
        return token

    # ----------------------------------------------------------------- data

    def hourly_rows(self, app_id: str, day: dt.date) -> list[Row]:
        """The exact rows ``getusersharehour`` serves for ``app_id`` and ``day`` (fresh copies)."""
        return [dict(row) for row in self._day_data(app_id, day)[0]]

    def daily_rows(self, app_id: str, day: dt.date) -> list[Row]:
        """The exact rows ``getusershare`` serves for ``app_id`` and ``day`` (fresh copies)."""
        return [dict(row) for row in self._day_data(app_id, day)[1]]

    def article_rows(self, app_id: str, day: dt.date, *, delayed: bool = False) -> list[Row]:
        """The exact rows ``getarticleshare`` serves for ``app_id`` and ``day`` (fresh copies).

        Articles are published on about one day in three (one to three articles a publication,
        ``msgid`` = msg_data_id, an underscore, the article's index from 1) and shared on their
        day and the two days after it, fewer people each day (so some days have no rows).
        ``delayed``: the figures served while the day is not final (:attr:`delay_latest`), about
        60 % of the final ones.
        """
        rows: list[dict[str, object]] = []
        for back in range(_SHARED_FOR_DAYS):
            published = day - dt.timedelta(days=back)
            publication = _digest(self._seed, app_id, "article", published.isoformat())
            if publication[0] % _PUBLISH_ONE_IN != 0:
                continue
            msg_data_id = _MSG_DATA_ID_BASE + published.toordinal() % 1_000_000
            for index in range(1, 2 + publication[1] % 3):
                peak = self._scale(app_id) * (20 + publication[1 + index] % 180) / index
                users = int(peak / (1 + 2 * back) * (0.8 + 0.4 * publication[5 + back] / 255))
                if delayed:
                    users = int(users * _DELAYED_SHARE)
                if users > 0:
                    rows.append(
                        {
                            "ref_date": day.isoformat(),
                            "msgid": f"{msg_data_id}_{index}",
                            "detail": {"share_user": users},
                        }
                    )
        return cast("list[Row]", sorted(rows, key=lambda row: str(row["msgid"])))

    def biz_rows(self, app_id: str, day: dt.date, *, delayed: bool = False) -> list[Row]:
        """The exact rows ``getbizsummary`` serves for ``app_id`` and ``day`` (fresh copies).

        One row a day. ``detail.share_user`` is consistent with :meth:`article_rows`: people who
        shared several articles count once, so it lies between the largest article's sharers
        and their sum (0 on a day without article shares). ``detail`` also holds figures the
        tap does not load (``read_user``, ``like_user``, ``zaikan_user``, ``comment_count``,
        ``send_page_count``). ``delayed``: the provisional figures (see :meth:`article_rows`).
        """
        sharers = [
            int(cast("dict[str, int]", row["detail"])["share_user"])
            for row in self.article_rows(app_id, day)
        ]
        noise = _digest(self._seed, app_id, "biz", day.isoformat())
        peak = max(sharers, default=0)
        users = peak + int((sum(sharers) - peak) * (0.3 + 0.6 * noise[0] / 255))
        reads = int(self._scale(app_id) * (150 + noise[1] * 4)) + 12 * users
        if delayed:
            users, reads = int(users * _DELAYED_SHARE), int(reads * _DELAYED_SHARE)
        detail = {
            "read_user": reads,
            "share_user": users,
            "like_user": reads * (1 + noise[2] % 5) // 100,
            "zaikan_user": reads * (noise[3] % 3) // 100,
            "comment_count": noise[4] % 9,
            "send_page_count": (noise[5] % 3) if sharers else 0,
        }
        return [cast("Row", {"ref_date": day.isoformat(), "detail": detail})]

    def _scale(self, app_id: str) -> float:
        scale = self._app_scale.get(app_id)
        if scale is None:
            scale = 0.5 + 3.5 * _digest(self._seed, app_id)[0] / 255
            self._app_scale[app_id] = scale
        return scale

    def _day_data(self, app_id: str, day: dt.date) -> tuple[tuple[Row, ...], tuple[Row, ...]]:
        key = (app_id, day)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        iso = day.isoformat()
        day_hash = _digest(self._seed, app_id, iso)
        hourly: list[Row] = []
        daily: list[Row] = []
        if day_hash[0] % _EMPTY_DAY_ONE_IN != 0:
            weekend = 1.25 if day.weekday() >= 5 else 1.0
            base = self._scale(app_id) * weekend * (4 + day_hash[1] % 28)
            counts = [0] * len(_SCENES)
            users = [0] * len(_SCENES)
            peaks = [0] * len(_SCENES)
            for hour, hour_weight in enumerate(_HOUR_WEIGHTS):
                hour_hash = _digest(self._seed, app_id, iso, str(hour))
                for index, (scene, scene_weight) in enumerate(_SCENES):
                    missing, noise_hi, noise_lo, ratio, rounding = hour_hash[
                        5 * index : 5 * index + 5
                    ]
                    if missing < _MISSING_SCENE_BYTE:
                        continue
                    noise = 0.3 + 1.4 * ((noise_hi << 8) | noise_lo) / 65535
                    # Random rounding: a quiet hour now and then sees a share or two.
                    count = int(base * hour_weight * scene_weight * noise + rounding / 256)
                    if count <= 0:
                        continue
                    user = 1 + int((count - 1) * (0.35 + 0.65 * ratio / 255))
                    hourly.append(
                        {
                            "ref_date": iso,
                            "ref_hour": hour * 100,
                            "share_scene": scene,
                            "share_count": count,
                            "share_user": user,
                        }
                    )
                    counts[index] += count
                    users[index] += user
                    peaks[index] = max(peaks[index], user)
            for index, (scene, _weight) in enumerate(_SCENES):
                if counts[index] == 0:
                    continue
                # People sharing in several hours count once a day: between the busiest hour's
                # sharers and the sum of every hour's.
                overlap = 0.2 + 0.6 * day_hash[2 + index] / 255
                user = peaks[index] + int((users[index] - peaks[index]) * overlap)
                daily.append(
                    {
                        "ref_date": iso,
                        "share_scene": scene,
                        "share_count": counts[index],
                        "share_user": user,
                    }
                )
        result = (tuple(hourly), tuple(daily))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    # ----------------------------------------------------------------- serving

    def _register(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _take_fault(self, kinds: frozenset[str], call: Call) -> Fault | None:
        """Find, use once and return the first armed fault of ``kinds`` matching ``call``."""
        with self._lock:
            for armed in self._faults:
                fault = armed.fault
                if fault.kind not in kinds:
                    continue
                if fault.path is not None and fault.path != call.path:
                    continue
                if fault.day is not None and (
                    call.path not in DATACUBE_PATHS or call.begin_date != fault.day
                ):
                    continue
                if fault.app_id is not None and fault.app_id != call.app_id:
                    continue
                if armed.left > 0:
                    armed.left -= 1
                    if armed.left == 0:
                        self._faults.remove(armed)
                return fault
        return None

    def _finish(self, call: Call, outcome: str) -> None:
        with self._idle:
            call.outcome = outcome
            call.finished = time.monotonic()
            self._idle.notify_all()

    def _serve(
        self,
        method: str,
        target: str,
        body: bytes,
        client_ip: str,
        user_agent: str | None = None,
    ) -> tuple[Call, _Answer]:
        """Record the request, work out its answer, and mark the call as answered."""
        started = time.monotonic()
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query)
        token = query.get("access_token", [None])[0]
        try:
            payload: object = json.loads(body) if body else None
        except ValueError:
            payload = None
        fields = payload if isinstance(payload, dict) else {}
        begin = fields.get("begin_date")
        end = fields.get("end_date")
        app_id: str | None = None
        with self._lock:
            if path in DATACUBE_PATHS and token is not None:
                app_id = self._token_app.get(token)
            elif path == STABLE_TOKEN_PATH and isinstance(fields.get("appid"), str):
                app_id = fields["appid"]
            elif path == LEGACY_TOKEN_PATH:
                app_id = query.get("appid", [None])[0]
            call = Call(
                path=path,
                app_id=app_id,
                begin_date=begin if isinstance(begin, str) else None,
                end_date=end if isinstance(end, str) else None,
                token=token,
                outcome="pending",
                started=started,
                finished=math.nan,
                body=payload,
                user_agent=user_agent,
            )
            self._calls.append(call)
        answer = self._answer(call, method, payload, client_ip)
        send = self._take_fault(_SEND_FAULTS, call)
        if send is not None and not answer.reset:
            answer = dataclasses.replace(
                answer,
                trickle=send.delay or DEFAULT_TRICKLE_INTERVAL,
                trickle_headers=send.kind == "trickle",
            )
            # The outcome is known once the last byte is out (or the client went away).
            return call, answer
        self._finish(call, answer.outcome)
        return call, answer

    def _answer(self, call: Call, method: str, payload: object, client_ip: str) -> _Answer:
        if call.path not in KNOWN_PATHS:
            return _html_error(HTTPStatus.NOT_FOUND)
        delay = self._take_fault(frozenset({"delay"}), call)
        fault = self._take_fault(_ANSWER_FAULTS, call)
        pause = (delay.delay if delay is not None else 0.0) + (
            self.latency if call.path in DATACUBE_PATHS else 0.0
        )
        if pause > 0:
            time.sleep(pause)
        if fault is not None:
            return self._fault_answer(fault, call)
        if call.path == LEGACY_TOKEN_PATH:
            return _error(
                40164, f"invalid ip {client_ip} ipv6 ::ffff:{client_ip}, not in whitelist"
            )
        if method != "POST":
            return _error(43002)
        if call.path == STABLE_TOKEN_PATH:
            return self._stable_token(payload)
        return self._datacube(call, payload)

    def _fault_answer(self, fault: Fault, call: Call) -> _Answer:
        if fault.kind == "errcode":
            return _error(fault.errcode, fault.errmsg)
        if fault.kind == "http":
            return _html_error(fault.status)
        if fault.kind == "html":
            return _proxy_login_page()
        if fault.kind == "reset":
            return _Answer(0, b"", "", "reset", reset=True)
        if fault.kind == "rotate":
            if call.app_id is not None:
                self.rotate_token(call.app_id)
            return _error(40001)
        return _json_answer({}, "no_list")  # kind "no_list"

    def _credentials_error(self, payload: object) -> int | None:
        """The errcode a stable_token body deserves, None if its credentials are right."""
        if not isinstance(payload, dict):
            return 47001
        app_id = payload.get("appid")
        secret = payload.get("secret")
        expected = self._apps.get(app_id) if isinstance(app_id, str) else None
        checks = (
            (payload.get("grant_type") != "client_credential", 40002),
            (not isinstance(app_id, str) or not app_id, 41002),
            (not isinstance(secret, str) or not secret, 41004),
            (expected is None, 40013),
            (
                isinstance(secret, str)
                and not hmac.compare_digest((expected or "").encode(), secret.encode()),
                40125,
            ),
        )
        return next((errcode for failed, errcode in checks if failed), None)

    def _stable_token(self, payload: object) -> _Answer:
        errcode = self._credentials_error(payload)
        if errcode is not None:
            return _error(errcode)
        body = cast("dict[str, object]", payload)
        app_id = cast("str", body["appid"])
        with self._lock:
            token = self._stable.get(app_id)
            if token is None or body.get("force_refresh") is True:
                if token is not None:
                    self._valid.discard(token)
                token = self._new_token(app_id)
                self._stable[app_id] = token
        return _json_answer({"access_token": token, "expires_in": TOKEN_EXPIRES_IN})

    def _datacube(self, call: Call, payload: object) -> _Answer:
        with self._lock:
            retired = call.path in self._retired
            valid = call.token is not None and call.token in self._valid
        if retired:
            return _error(RETIRED_ERRCODE)
        if not valid or call.app_id is None:
            return _error(40001)
        fields = payload if isinstance(payload, dict) else {}
        begin = _parse_date(fields.get("begin_date"))
        end = _parse_date(fields.get("end_date"))
        if begin is None or end is None:
            return _error(61500)
        yesterday = self.today - dt.timedelta(days=1)
        span = (end - begin).days + 1
        first = ARTICLE_FIRST_DAY if call.path in {ARTICLE_PATH, BIZ_PATH} else FIRST_DAY
        if begin > end or end > yesterday or begin < first or span > MAX_SPAN_DAYS[call.path]:
            return _error(61501)
        if call.path in {ARTICLE_PATH, BIZ_PATH}:
            return self._articles(call, call.app_id, begin, latest=end == yesterday)
        hourly = call.path == HOURLY_PATH
        rows: list[Row] = []
        for offset in range(span):
            day_rows = self._day_data(call.app_id, begin + dt.timedelta(days=offset))
            rows.extend(dict(row) for row in day_rows[0 if hourly else 1])
        outcome = "ok"
        fault = self._take_fault(_DATA_FAULTS, call)
        if fault is not None:
            _spoil(fault.kind, rows, begin, hourly=hourly, value=fault.value)
            outcome = f"ok {fault.kind}"
        return _encoded(_json_answer({"list": rows}, outcome), fault)

    def _articles(self, call: Call, app_id: str, day: dt.date, *, latest: bool) -> _Answer:
        """getarticleshare's or getbizsummary's answer for ``day`` (one day per request)."""
        delayed = (self.delay_latest and latest) or day in self.delayed_days
        biz = call.path == BIZ_PATH
        rows_of = self.biz_rows if biz else self.article_rows
        articles = rows_of(app_id, day, delayed=delayed)
        outcome = "ok delayed" if delayed else "ok"
        fault = self._take_fault(_DATA_FAULTS, call)
        if fault is not None:
            spoil = _spoil_biz if biz else _spoil_articles
            spoil(fault.kind, articles, day, fault.value)
            outcome = f"ok {fault.kind}"
        return _encoded(_json_answer({"list": articles, "is_delay": delayed}, outcome), fault)


def _encoded(answer: _Answer, fault: Fault | None) -> _Answer:
    """The answer in GBK for a ``gbk`` fault (its JSON text unchanged), else as it is."""
    if fault is not None and fault.kind == "gbk":
        answer.body = answer.body.decode().encode("gbk")
    return answer


def _stray_rows(begin: dt.date, *, hourly: bool) -> list[Row]:
    """Two rows dated three years before ``begin``, as a WeChat forum report saw."""
    stray = _years_before(begin, 3).isoformat()
    rows: list[Row] = [
        {"ref_date": stray, "ref_hour": 1200, "share_scene": 1, "share_count": 72, "share_user": 4},
        {"ref_date": stray, "ref_hour": 1300, "share_scene": 2, "share_count": 6, "share_user": 3},
    ]
    if not hourly:
        for row in rows:
            del row["ref_hour"]
    return rows


def _spoil(kind: str, rows: list[Row], begin: dt.date, *, hourly: bool, value: object) -> None:
    """Alter ``rows`` in place as data fault ``kind`` says.

    ``stray`` puts its two rows first; ``digit_strings`` gives every row's counts as strings of
    digits (``"12"``); the other kinds append at the end: ``duplicate`` a copy of the first row
    (nothing if there is none), ``bad_hour`` a row with ``ref_hour`` 1250 (daily rows too),
    ``negative`` a row with ``share_count`` -3, ``missing_key`` a row without ``share_scene``,
    ``odd_value`` a row whose ``share_count`` is the fault's ``value``.
    """
    iso = begin.isoformat()
    hour: Row = {"ref_hour": 0} if hourly else {}
    if kind == "stray":
        rows[:0] = _stray_rows(begin, hourly=hourly)
    elif kind == "duplicate":
        rows.extend(dict(row) for row in rows[:1])
    elif kind == "bad_hour":
        rows.append(
            {"ref_date": iso, "ref_hour": 1250, "share_scene": 1, "share_count": 3, "share_user": 2}
        )
    elif kind == "negative":
        rows.append(
            {"ref_date": iso, **hour, "share_scene": 255, "share_count": -3, "share_user": 1}
        )
    elif kind == "digit_strings":
        for row in rows:
            row["share_count"] = str(row["share_count"])
            row["share_user"] = str(row["share_user"])
    elif kind == "missing_key":
        rows.append({"ref_date": iso, **hour, "share_count": 5, "share_user": 2})
    elif kind == "odd_value":
        odd: dict[str, object] = {"ref_date": iso, **hour, "share_scene": 1, "share_user": 1}
        rows.append(cast("Row", odd | {"share_count": value}))


def _spoil_articles(kind: str, rows: list[Row], begin: dt.date, _value: object = None) -> None:
    """Alter getarticleshare ``rows`` in place as data fault ``kind`` says (as :func:`_spoil`).

    ``bad_hour`` (no hours here) appends a row whose ``detail`` is not an object; ``negative`` a
    row with ``detail.share_user`` -3; ``missing_key`` a row without ``msgid``.
    """
    iso = begin.isoformat()
    extra: dict[str, object]
    if kind == "stray":
        stray = _years_before(begin, 3).isoformat()
        extra = {"ref_date": stray, "msgid": "2247000001_1", "detail": {"share_user": 4}}
        rows.insert(0, cast("Row", extra))
        return
    if kind == "duplicate":
        rows.extend(dict(row) for row in rows[:1])
        return
    if kind == "bad_hour":
        extra = {"ref_date": iso, "msgid": "2247000002_1", "detail": 12}
    elif kind == "negative":
        extra = {"ref_date": iso, "msgid": "2247000003_1", "detail": {"share_user": -3}}
    elif kind == "gbk":
        extra = {"ref_date": iso, "msgid": "文章_1", "detail": {"share_user": 5}}
    else:  # missing_key
        extra = {"ref_date": iso, "detail": {"share_user": 2}}
    rows.append(cast("Row", extra))


def _spoil_biz(kind: str, rows: list[Row], begin: dt.date, value: object = None) -> None:
    """Alter getbizsummary ``rows`` (one a day) in place as data fault ``kind`` says.

    ``stray`` puts a row dated three years before first; ``duplicate`` appends a copy of the
    row; ``bad_hour`` (no hours here) appends a row whose ``detail`` is not an object;
    ``negative`` gives the row ``detail.share_user`` -3; ``missing_key`` takes
    ``detail.share_user`` out of the row; ``odd_value`` makes it the fault's ``value``;
    ``digit_strings`` makes it a string of digits.
    """
    detail = cast("dict[str, object]", rows[0]["detail"])
    if kind == "stray":
        stray = _years_before(begin, 3).isoformat()
        rows.insert(0, cast("Row", {"ref_date": stray, "detail": {"share_user": 4}}))
    elif kind == "duplicate":
        rows.append(cast("Row", {"ref_date": rows[0]["ref_date"], "detail": dict(detail)}))
    elif kind == "bad_hour":
        rows.append(cast("Row", {"ref_date": begin.isoformat(), "detail": 12}))
    elif kind == "negative":
        detail["share_user"] = -3
    elif kind == "missing_key":
        del detail["share_user"]
    elif kind == "odd_value":
        detail["share_user"] = value
    else:  # digit_strings
        detail["share_user"] = str(detail["share_user"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: WeChatEmulator

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay silent: the default prints a traceback to stderr."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "emulator"
    sys_version = ""
    timeout = 75  # idle keep-alive connections are closed after this, like nginx
    # Headers and body go out in two sends: without TCP_NODELAY each answer would wait ~40 ms for
    # the client's delayed ACK (nginx in front of WeChat sets tcp_nodelay too).
    disable_nagle_algorithm = True

    @property
    def _emulator(self) -> WeChatEmulator:
        return cast("_Server", self.server).emulator

    def setup(self) -> None:
        super().setup()
        self._emulator._register(self.connection, add=True)

    def finish(self) -> None:
        self._emulator._register(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Log nothing: request lines carry access tokens."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        call, answer = self._emulator._serve(
            method, self.path, body, self.client_address[0], self.headers.get("User-Agent")
        )
        if answer.reset:
            self._reset()
            return
        if answer.trickle:
            self._trickle(call, answer)
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            self._emulator._finish(call, "aborted")

    def _trickle(self, call: Call, answer: _Answer) -> None:
        """Send ``answer`` one byte at a time (headers too if it says so), then finish ``call``."""
        head = (
            f"{self.protocol_version} {answer.status} {HTTPStatus(answer.status).phrase}\r\n"
            f"Server: {self.server_version}\r\nContent-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\n\r\n"
        ).encode()
        slow = head + answer.body if answer.trickle_headers else answer.body
        try:
            if not answer.trickle_headers:
                self.wfile.write(head)
                self.wfile.flush()
            for index in range(len(slow)):
                time.sleep(answer.trickle)
                self.wfile.write(slow[index : index + 1])
                self.wfile.flush()
        except OSError:
            self.close_connection = True
            self._emulator._finish(call, "aborted")
        else:
            self._emulator._finish(call, answer.outcome)

    def _reset(self) -> None:
        """Close the connection without answering, so that the client sees a reset (RST)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._emulator._register(self.connection, add=False)
            os.close(self.connection.detach())
        except OSError:
            pass


def served_summary(calls: Sequence[Call]) -> list[str]:
    """What the emulator served, per endpoint and app: the lines it prints when it stops.

    A line gives the calls, how many were not answered with data (errors, faults), and for a
    datacube endpoint the days its answers covered and any day answered more than once, so that
    "one token call per account" and "no day asked twice" can be checked by hand.

    Args:
        calls: The calls received, as :attr:`WeChatEmulator.calls` gives them.

    Returns:
        A heading line, then one line per endpoint and app, sorted.
    """
    if not calls:
        return ["emulator served no calls"]
    groups: dict[tuple[str, str], list[Call]] = {}
    for call in calls:
        groups.setdefault((call.path, call.app_id or "-"), []).append(call)
    width_path = max(len(path) for path, _ in groups)
    width_app = max(len(app) for _, app in groups)
    width_count = len(str(max(len(group) for group in groups.values())))
    plural = "" if len(calls) == 1 else "s"
    lines = [f"emulator served {len(calls)} call{plural}, per endpoint and app:"]
    for (path, app), group in sorted(groups.items()):
        line = f"  {path:<{width_path}}  {app:<{width_app}}  {len(group):>{width_count}} call"
        line += "" if len(group) == 1 else "s"
        answered = [call for call in group if call.outcome.startswith("ok")]
        if len(answered) < len(group):
            line += f" ({len(group) - len(answered)} not answered with data)"
        days: dict[dt.date, int] = {}
        for call in answered:
            begin, end = _parse_date(call.begin_date), _parse_date(call.end_date)
            while begin is not None and end is not None and begin <= end:
                days[begin] = days.get(begin, 0) + 1
                begin += dt.timedelta(days=1)
        if days:
            line += f", {len(days)} day{'' if len(days) == 1 else 's'} {min(days)}..{max(days)}"
            again = [f"{day} x{count}" for day, count in sorted(days.items()) if count > 1]
            line += ", answered more than once: " + ", ".join(again) if again else ", each once"
        lines.append(line)
    return lines


def _parse_app(value: str) -> tuple[str, str]:
    app_id, sep, secret = value.partition(":")
    if not sep or not app_id or not secret:
        msg = "expected APP_ID:APP_SECRET"
        raise argparse.ArgumentTypeError(msg)
    return app_id, secret


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the emulator until SIGTERM or Ctrl-C, then print what it served.

    What it served is :func:`served_summary`'s lines.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Emulate WeChat's API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765, help="port (0: a free one)")
    parser.add_argument(
        "--app",
        type=_parse_app,
        action="append",
        required=True,
        metavar="APP_ID:APP_SECRET",
        help="an app stable_token knows (repeatable)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per datacube answer")
    parser.add_argument("--seed", default="wechat", help="seed of the generated data")
    parser.add_argument(
        "--retire",
        action="append",
        default=[],
        metavar="PATH",
        help="answer errcode 47009 (endpoint offline) for this path, e.g. /datacube/getusershare",
    )
    parser.add_argument(
        "--delay-latest",
        action="store_true",
        help=(
            "answer getarticleshare and getbizsummary for yesterday with is_delay true and "
            "provisional figures"
        ),
    )
    parser.add_argument(
        "--today",
        type=dt.date.fromisoformat,
        default=None,
        help="the China date taken as today (YYYY-MM-DD; default: the real one)",
    )
    args = parser.parse_args(argv)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator = WeChatEmulator(
        dict(args.app), today=args.today, latency=args.latency, seed=args.seed, port=args.port
    )
    emulator.delay_latest = args.delay_latest
    for path in args.retire:
        emulator.retire(path)
    with emulator:
        print(f"emulator listening on {emulator.url}", flush=True)
        while not stopping.wait(0.2):
            pass
    print("\n".join(served_summary(emulator.calls)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
