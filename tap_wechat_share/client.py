"""The HTTP client for WeChat's API, and the one place that knows its errcodes.

WeChat answers most errors with HTTP 200 and ``{"errcode": N, "errmsg": "..."}`` in the body, so
every body is checked. Each errcode maps to one :class:`ErrcodeRule`: whether it is retried, means
the token must be renewed, means waiting for the next minute, or stops the account at once, and
what the user should do about it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import socket
import threading
import time
import typing as t
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import backoff
import requests
import requests.adapters
import urllib3
import urllib3.connection

from tap_wechat_share.redact import redact_text

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.weixin.qq.com"
BODY_EXCERPT_CHARS = 120
MAX_MINUTE_WAITS = 10
"""Waits for the next minute (errcode 45011) for one request before giving up."""


class Action(enum.Enum):
    """What the tap does about an errcode."""

    RETRY = "retry with backoff"
    RENEW_TOKEN = "get a token anew, once"  # noqa: S105 - not a password
    WAIT_MINUTE = "wait for the next minute"
    FATAL = "stop this account"
    RETIRED = "stop this stream for every account"


@dataclass(frozen=True)
class ErrcodeRule:
    """How the tap treats one WeChat errcode."""

    action: Action
    hint: str


_RENEW = ErrcodeRule(
    Action.RENEW_TOKEN,
    "the access token is invalid or expired; check app_id/app_secret, or give a fresh token",
)
_IP = ErrcodeRule(
    Action.FATAL,
    "add the IP that errmsg names to the account's API IP whitelist (mp.weixin.qq.com > "
    "Settings and Development > Basic Configuration), or run the tap from a whitelisted host",
)
_CREDENTIALS = ErrcodeRule(
    Action.FATAL,
    "check app_id and app_secret in the account's Basic Configuration (a reset or frozen secret "
    "must be reset there)",
)
_DATES = ErrcodeRule(
    Action.FATAL,
    "check start_date/end_date; the tap should never send such a range, so please report it",
)

ERRCODES: Mapping[int, ErrcodeRule] = {
    -1: ErrcodeRule(Action.RETRY, "WeChat is busy; retried with backoff, try again later"),
    40001: _RENEW,
    40014: _RENEW,
    42001: _RENEW,
    45009: ErrcodeRule(
        Action.FATAL,
        "the account's daily API quota is used up; it resets at midnight China time (it can "
        "be checked with /cgi-bin/openapi/quota/get); run again tomorrow",
    ),
    45011: ErrcodeRule(Action.WAIT_MINUTE, "the per-minute API quota is reached"),
    48001: ErrcodeRule(
        Action.FATAL,
        "the account may not call datacube: it must be a certified (认证) Official Account, and "
        "a third-party platform needs permission set 7",
    ),
    40164: _IP,
    61004: _IP,
    40013: _CREDENTIALS,
    40125: _CREDENTIALS,
    40243: _CREDENTIALS,
    61500: _DATES,
    61501: _DATES,
    61503: ErrcodeRule(Action.RETRY, "WeChat has not prepared the data yet; retried later"),
    47009: ErrcodeRule(
        Action.RETIRED,
        "WeChat has taken this endpoint offline for everyone; deselect its stream",
    ),
}
UNKNOWN_ERRCODE = ErrcodeRule(
    Action.FATAL,
    "an errcode this tap does not know; see WeChat's global errcode list",
)


def errcode_rule(errcode: int) -> ErrcodeRule:
    """Return how the tap treats ``errcode``."""
    return ERRCODES.get(errcode, UNKNOWN_ERRCODE)


class WeChatError(Exception):
    """Base of every error the tap raises about WeChat; its text is safe to log."""


class StopRequestedError(WeChatError):
    """The run is stopping (its stop event is set): what was in flight was abandoned."""

    def __init__(self, what: str) -> None:
        """Say what was abandoned."""
        super().__init__(f"{what}: abandoned, the run is stopping")


class FatalError(WeChatError):
    """An error that retrying cannot fix: the account stops, with a hint."""


class RetriableError(WeChatError):
    """A transient fault (busy, 5xx, 429, reset, timeout, HTML instead of JSON)."""


class ApiError(WeChatError):
    """WeChat answered with an errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        """Keep the errcode and errmsg, and look up the rule for it."""
        self.errcode = errcode
        self.errmsg = redact_text(errmsg)
        self.rule = errcode_rule(errcode)
        super().__init__(f"errcode {errcode}: {self.errmsg}")

    def describe(self) -> str:
        """Return ``errcode N: errmsg; what to do``."""
        return f"errcode {self.errcode}: {self.errmsg}; {self.rule.hint}"


class RetriableApiError(ApiError, RetriableError):
    """An errcode that is retried with backoff (-1, 61503)."""


class TokenRejectedError(ApiError):
    """WeChat refused the access token (40001, 40014, 42001).

    Attributes:
        refused_token: The token the refused request carried (never in the error's text).
    """

    refused_token: str | None = None


class MinuteQuotaError(ApiError):
    """The per-minute quota is reached (45011): wait for the next minute."""


class FatalApiError(ApiError, FatalError):
    """An errcode that stops the account at once."""


class EndpointRetiredError(ApiError, FatalError):
    """WeChat has retired the endpoint (47009, "this api is offline"): its stream ends."""


_ERROR_CLASS: Mapping[Action, type[ApiError]] = {
    Action.RETRY: RetriableApiError,
    Action.RENEW_TOKEN: TokenRejectedError,
    Action.WAIT_MINUTE: MinuteQuotaError,
    Action.FATAL: FatalApiError,
    Action.RETIRED: EndpointRetiredError,
}


def raise_for_errcode(body: Mapping[str, t.Any]) -> None:
    """Raise the :class:`ApiError` that a body's errcode calls for; return if it has none (or 0).

    Args:
        body: A decoded JSON object from WeChat.

    Raises:
        ApiError: Of the subclass that says what to do.
    """
    errcode = body.get("errcode", 0)
    if errcode is None or errcode == 0:  # not "in {0, None}": a list is unhashable
        return
    try:
        code = int(errcode)
    except (TypeError, ValueError):
        msg = f"unreadable errcode {str(errcode)[:20]!r} in WeChat's answer"
        raise RetriableError(msg) from None
    raise _ERROR_CLASS[errcode_rule(code).action](code, str(body.get("errmsg", "")))


def seconds_to_next_minute(now: float | None = None) -> float:
    """Seconds from ``now`` (epoch seconds; default: the clock) to the next whole minute, plus 1."""
    now = time.time() if now is None else now
    return 60.0 - (now % 60.0) + 1.0


def _query_token(url: str | None) -> str | None:
    """The ``access_token`` in ``url``'s query string, None if it has none."""
    values = parse_qs(urlsplit(url or "").query).get("access_token")
    return values[0] if values else None


def _describe_http_fault(response: requests.Response) -> str:
    excerpt = " ".join(response.text[:BODY_EXCERPT_CHARS].split())
    content_type = response.headers.get("Content-Type", "unknown type")
    return redact_text(f"HTTP {response.status_code}, {content_type}: {excerpt!r}")


# ---------------------------------------------------------------------------- bounding each try
#
# A socket timeout bounds each read, not a try: a server that sends a byte now and then keeps a
# try alive for ever. So every try has a deadline, and one watchdog thread per client shuts the
# socket of a try down when its deadline passes or the run is stopping; the blocked read then
# ends at once. The try finds its socket through the connection classes below, which tell the
# try of the current thread which connection it uses.


class _Try:
    """One HTTP try in flight: its deadline, its connection, and why it was aborted (if it was)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.reason: str | None = None
        """None while the try may go on; "deadline" or "stop" once the watchdog ended it."""
        self._lock = threading.Lock()
        self._connection: urllib3.connection.HTTPConnection | None = None

    def attach(self, connection: urllib3.connection.HTTPConnection) -> None:
        """Note the connection the try uses; shut it down at once if the try is already over."""
        with self._lock:
            self._connection = connection
            if self.reason is not None:
                _shut_down(connection)

    def abort(self, reason: str) -> None:
        """End the try: shut its connection's socket down, so that a blocked read returns."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._connection is not None:
                _shut_down(self._connection)

    def close(self) -> None:
        """The try is over: let go of its connection, which the pool may hand to another try."""
        with self._lock:
            self._connection = None


def _shut_down(connection: urllib3.connection.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()
"""``_current.try_``: the try the current thread is making (requests runs it in that thread)."""


def _attach_current(connection: urllib3.connection.HTTPConnection) -> None:
    try_: _Try | None = getattr(_current, "try_", None)
    if try_ is not None:
        try_.attach(connection)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that tells the current try which connection it uses."""

    def connect(self) -> None:
        """Connect, then let the current try's watchdog reach the socket."""
        super().connect()
        _attach_current(self)

    def request(self, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 - forwarded
        _attach_current(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, urllib3.connection.HTTPSConnection):
    """An HTTPS connection that tells the current try which connection it uses."""


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections a try's watchdog can shut down."""

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:  # noqa: ANN401 - forwarded
        """Make the pool manager use the watched connection pools."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(
        self,
        proxy: str,
        **proxy_kwargs: t.Any,  # noqa: ANN401 - forwarded
    ) -> urllib3.PoolManager:
        """Make an HTTP(S) proxy's manager use the watched pools too (SOCKS keeps its own)."""
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


class _Watchdog:
    """One thread that ends the tries whose deadline passed, and every try once stopping.

    The thread starts with the first try and ends once no try was watched for ``idle_seconds``
    after the last one's deadline, so that a client that is done (a tap run in a longer-lived
    process) leaves no thread behind.
    """

    idle_seconds = 5.0

    def __init__(self, stop_event: threading.Event) -> None:
        self._stop_event = stop_event
        self._changed = threading.Condition()
        self._tries: set[_Try] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, timeout: float) -> Iterator[_Try]:
        """Watch a try of at most ``timeout`` seconds made in this thread, while in the block."""
        try_ = _Try(time.monotonic() + timeout)
        with self._changed:
            self._tries.add(try_)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wechat-try-watchdog", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        _current.try_ = try_
        try:
            yield try_
        finally:
            _current.try_ = None
            try_.close()  # a late abort must not cut the connection's next try short
            with self._changed:
                self._tries.discard(try_)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: bool(self._tries), self.idle_seconds):
                    # Under the lock: a try watched from now on starts a new thread.
                    self._thread = None
                    return
                tries = list(self._tries)
            stopping = self._stop_event.is_set()
            now = time.monotonic()
            for try_ in tries:
                if stopping:
                    try_.abort("stop")
                elif now >= try_.deadline:
                    try_.abort("deadline")
            if stopping:
                # The aborted tries end within moments; look again then (no busy loop).
                with self._changed:
                    self._changed.wait(0.1)
                continue
            pending = [try_.deadline for try_ in tries if try_.reason is None]
            # Every try has the same timeout, so a try added later ends later: sleeping until
            # the earliest deadline known now misses none. The stop event wakes the sleep.
            self._stop_event.wait(max(min(pending, default=now + 0.05) - now, 0.01))


class RequestAuthenticator(t.Protocol):
    """What the client needs of an account's authenticator (see ``authenticators.py``)."""

    def __call__(self, request: requests.PreparedRequest, /) -> requests.PreparedRequest:
        """Put the account's current token on ``request``."""
        ...

    def renew(self, refused_token: str, error: TokenRejectedError) -> None:
        """Get the token anew after WeChat refused ``refused_token``."""
        ...


class WeChatClient:
    """POSTs JSON to WeChat and returns checked JSON bodies.

    Retries transient faults (errcode -1, HTTP 429 and 5xx, timeouts, connection errors, a body
    that is not JSON) with exponential backoff and jitter, up to ``max_tries`` tries; waits for the
    next minute on errcode 45011. Any other errcode is raised as its :class:`ApiError` subclass.
    Each try, from connecting to the last byte of the answer, lasts at most ``timeout`` seconds.
    Every message it logs or raises is free of tokens.

    Once ``stop_event`` is set, no try starts, every wait ends, and the tries in flight are
    abandoned within moments: :meth:`post` raises :class:`StopRequestedError`.
    """

    def __init__(  # noqa: PLR0913 - each is a documented setting
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        max_tries: int = 5,
        backoff_factor: float = 1.0,
        pool_size: int = 10,
        stop_event: threading.Event | None = None,
    ) -> None:
        """Set up the client and its connection pool.

        Args:
            api_url: Base URL of WeChat's API (or a local emulator).
            timeout: Seconds one try may last, from connecting to the answer's last byte.
            max_tries: Tries of one request before giving up on transient faults.
            backoff_factor: First backoff wait in seconds; it doubles each try.
            pool_size: Connections kept open per host (at least the requests in flight).
            stop_event: Set it to stop: requests in flight and waits end with
                :class:`StopRequestedError`. Token sources use the same event. Default: a new one.
        """
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff_factor = backoff_factor
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.session = requests.Session()
        adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "tap-wechat-share"
        # What requests would read from the environment on every request (proxies, CA bundle;
        # a ~/.netrc lookup, meaningless here: the token travels in the query), read once: at
        # thousands of requests a run it was a tenth of the tap's CPU time.
        settings = self.session.merge_environment_settings(self.api_url, {}, None, None, None)
        self.session.proxies.update(settings["proxies"])
        self.session.verify = settings["verify"]
        self.session.trust_env = False
        self._watchdog = _Watchdog(self.stop_event)

    def check_stop(self, what: str) -> None:
        """Raise :class:`StopRequestedError` if the run is stopping.

        Args:
            what: Words for the error, e.g. ``share_hour 2024-05-01``.

        Raises:
            StopRequestedError: If ``stop_event`` is set.
        """
        if self.stop_event.is_set():
            raise StopRequestedError(what)

    def wait(self, seconds: float, what: str) -> None:
        """Wait ``seconds``, or less if the run is stopping.

        Raises:
            StopRequestedError: If ``stop_event`` is set before or during the wait.
        """
        if self.stop_event.wait(seconds):
            raise StopRequestedError(what)

    def post(
        self,
        path: str,
        payload: Mapping[str, t.Any],
        *,
        authenticator: RequestAuthenticator | None = None,
        what: str = "",
        required: str | None = None,
    ) -> dict[str, t.Any]:
        """POST ``payload`` to ``path`` and return WeChat's checked JSON answer.

        With an ``authenticator``, each try carries the account's current token, and a refusal
        of the token (errcode 40001, 40014, 42001) gets it anew once through the authenticator
        (many simultaneous refusals of one token: one renewal) and tries again; a second refusal
        right after the renewal stops the account.

        Args:
            path: The API path, e.g. ``/datacube/getusersharehour``.
            payload: The JSON body.
            authenticator: The account's authenticator, applied to each try (none for the
                token endpoint itself).
            what: Words for log lines and errors, e.g. ``share_hour 2024-05-01``.
            required: A key a success answer must have (e.g. ``list``); an answer without it
                and without an errcode is a transient fault, retried like one.

        Returns:
            The decoded JSON object.

        Raises:
            FatalError: When the last try failed, or WeChat answered an errcode that stops the
                account (with an authenticator); names ``what`` and the fault.
            EndpointRetiredError: When WeChat answered that the endpoint is offline (47009).
            ApiError: Without an authenticator, for such an errcode.
            StopRequestedError: When the run is stopping.
        """
        what = what or path
        # Prepared directly: the session's own prepare_request merges cookies, hooks and auth
        # settings that this API never uses, and was a tenth of a busy run's CPU time.
        request = requests.PreparedRequest()
        request.prepare(
            method="POST",
            url=f"{self.api_url}{path}",
            headers=self.session.headers,
            json=payload,
        )
        renewed = False
        while True:
            try:
                return self._post_with_retries(request, authenticator, what, required)
            except TokenRejectedError as exc:  # noqa: PERF203 - at most two rounds
                if authenticator is None:
                    raise
                if renewed:
                    msg = (
                        f"{what}: WeChat refused the token again right after it was renewed "
                        f"({exc.describe()})"
                    )
                    raise FatalError(msg) from None
                authenticator.renew(exc.refused_token or "", exc)
                renewed = True
            except EndpointRetiredError:
                raise  # not the account's fault: the stream decides (it ends for every account)
            except ApiError as exc:
                if authenticator is None:
                    raise
                msg = f"{what}: {exc.describe()}"
                raise FatalError(msg) from None

    def _post_with_retries(
        self,
        request: requests.PreparedRequest,
        authenticator: RequestAuthenticator | None,
        what: str,
        required: str | None,
    ) -> dict[str, t.Any]:
        """Try until an answer, a fault that is not transient, or ``max_tries`` transient ones."""
        minute_waits = 0
        tries = 0
        while True:
            self.check_stop(what)
            tries += 1
            try:
                return self._post_once(request, authenticator, what, required)
            except MinuteQuotaError as exc:
                if minute_waits == MAX_MINUTE_WAITS:
                    msg = (
                        f"{what}: the per-minute quota (errcode 45011) was still reached after "
                        f"{minute_waits} waits; lower max_concurrent_requests or run other jobs "
                        "at another time"
                    )
                    raise FatalError(msg) from None
                minute_waits += 1
                tries = 0  # a new minute, a fresh set of tries
                wait = seconds_to_next_minute()
                logger.warning("%s: %s; waiting %.0f s for the next minute", what, exc, wait)
                self.wait(wait, what)
            except RetriableError as exc:
                if tries >= self.max_tries:
                    msg = f"{what}: gave up after {self.max_tries} tries; last error: {exc}"
                    raise FatalError(msg) from None
                wait = backoff.full_jitter(self.backoff_factor * 2 ** (tries - 1))
                logger.warning(
                    "%s: %s; try %d of %d, retrying in %.1f s",
                    what,
                    exc,
                    tries,
                    self.max_tries,
                    wait,
                )
                self.wait(wait, what)

    def _post_once(
        self,
        request: requests.PreparedRequest,
        authenticator: RequestAuthenticator | None,
        what: str,
        required: str | None,
    ) -> dict[str, t.Any]:
        request = request.copy()
        if authenticator is not None:
            request = authenticator(request)
        response = self._send(request, what)
        logger.debug(
            "%s: HTTP %s in %.3f s",
            what,
            response.status_code,
            response.elapsed.total_seconds(),
        )
        if (
            response.status_code == HTTPStatus.TOO_MANY_REQUESTS
            or response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR
        ):
            raise RetriableError(_describe_http_fault(response))
        if response.status_code != HTTPStatus.OK:
            msg = f"unexpected answer ({_describe_http_fault(response)}); check api_url"
            raise FatalError(msg)
        try:
            # Strictly UTF-8, as WeChat sends JSON: requests would guess another encoding, and
            # a msgid would load with U+FFFD in it (a wrong key).
            text = response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = (
                f"{what}: WeChat's answer is not UTF-8 ({exc.reason} at byte {exc.start} of "
                f"{len(exc.object)}); nothing of it is loaded, and it is not asked again in "
                "this run (the same request gets the same bytes)"
            )
            raise FatalError(msg) from None
        try:
            body = json.loads(text)
        except ValueError:
            msg = f"answer is not JSON ({_describe_http_fault(response)})"
            raise RetriableError(msg) from None
        if not isinstance(body, dict):
            msg = f"answer is JSON but not an object: {type(body).__name__}"
            raise RetriableError(msg)
        try:
            raise_for_errcode(body)
        except TokenRejectedError as exc:
            exc.refused_token = _query_token(request.url)
            raise
        if required is not None and required not in body:
            msg = f"answer has no {required!r} and no errcode (keys: {sorted(body)[:5]})"
            raise RetriableError(msg)
        return body

    def _send(self, request: requests.PreparedRequest, what: str) -> requests.Response:
        """Send one try, ended by the watchdog at its deadline or when the run is stopping."""
        # The session's proxies and CA settings were read from the environment once (above).
        with self._watchdog.watching(self.timeout) as try_:
            try:
                return self.session.send(request, timeout=self.timeout)
            except (requests.exceptions.RequestException, OSError) as exc:
                if try_.reason == "stop":
                    raise StopRequestedError(what) from None
                if try_.reason == "deadline" or isinstance(exc, requests.exceptions.ReadTimeout):
                    msg = (
                        f"timed out after {self.timeout:g} s without a complete answer "
                        "(request_timeout bounds each try)"
                    )
                    raise RetriableError(msg) from None
                # requests' own text quotes the URL, and the token is in its query string.
                msg = redact_text(f"{type(exc).__name__}: {exc}")
                raise RetriableError(msg) from None
