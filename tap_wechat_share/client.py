"""The HTTP client for WeChat's API, and the one place that knows its errcodes.

WeChat answers most errors with HTTP 200 and ``{"errcode": N, "errmsg": "..."}`` in the body, so
every body is checked. Each errcode maps to one :class:`ErrcodeRule`: whether it is retried, means
the token must be renewed, means waiting for the next minute, or stops the account at once, and
what the user should do about it.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import os
import re
import socket
import ssl
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


class NetworkFaultError(RetriableError):
    """WeChat's host gave no answer: not reached, refused, no name, TLS or proxy failure, timeout.

    Counted by the run's :class:`NetworkCircuit`.
    """


class UnreachedError(FatalError):
    """A request gave up on network faults only: its host gave no answer to any try."""


class UnreachableError(StopRequestedError):
    """The run's :class:`NetworkCircuit` is open: WeChat cannot be reached, the run stops."""

    def __init__(self, what: str) -> None:
        """Say what was abandoned."""
        WeChatError.__init__(self, f"{what}: abandoned, WeChat cannot be reached")


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


# ---------------------------------------------------------------------------- network faults

UNREACHABLE_AFTER_SECONDS = 20.0
"""How long WeChat's host must have given no answer at all before the run stops (see below)."""
UNREACHABLE_ACCOUNTS = 3
"""How many accounts' requests must have met network faults before the run stops."""
UNREACHABLE = "WeChat cannot be reached"
"""The words that begin the line of a run stopped by :class:`NetworkCircuit` (a scheduler may
look for them: the Dagster job retries a shard whose log has them)."""


class NetworkCircuit:
    """The run's judgement on whether WeChat can be reached, from every request's outcome.

    The rule: the run stops when requests of at least ``UNREACHABLE_ACCOUNTS`` accounts (or of
    every account, if the run has fewer) met network faults, and no request at all got an answer
    from the host since the first of those faults, ``UNREACHABLE_AFTER_SECONDS`` ago or more.
    Network faults are: connection refused, a name that does not resolve, a TLS handshake that
    fails, a proxy that fails, a connection that closes without an answer, and no complete
    answer within ``request_timeout``. Any answer from the host (a success, an errcode, an
    HTTP error) ends the streak: errcodes, and an account's own token command (not a request),
    never count. A run that runs out of accounts in such a streak stops the same way (see
    :meth:`check`), however short the streak.

    An untrusted TLS certificate stops the run at once (:meth:`trip`): no account can be read
    until it is trusted, and retrying cannot help.

    Args:
        stop_event: Set when the circuit opens, so that every request and wait ends.
        clock: Seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        stop_event: threading.Event,
        clock: t.Callable[[], float] = time.monotonic,
    ) -> None:
        """Start closed, with no fault seen."""
        self._stop_event = stop_event
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._accounts: set[str] = set()
        self._fault = ""
        self.accounts_total = 0
        """The accounts of the run (0: unknown, taken as many)."""
        self.reason: str | None = None
        """Why the circuit opened (the fault, in words); None while it is closed."""
        self.retry_later = True
        """Whether running again later may help (not for an untrusted certificate)."""

    @property
    def is_open(self) -> bool:
        """Whether the run must stop because WeChat cannot be reached."""
        return self.reason is not None

    def answered(self) -> None:
        """A request got an answer from the host: the streak of network faults, if any, ends."""
        if self._since is not None:
            with self._lock:
                self._since = None
                self._accounts.clear()

    def fault(self, account: str, description: str) -> bool:
        """Note a network fault of a request made for ``account``; open the circuit if due.

        Returns:
            Whether it is the first fault of a streak (worth a warning; the rest go to DEBUG).
        """
        with self._lock:
            first = self._since is None
            if first:
                self._since = self._clock()
            self._accounts.add(account)
            self._fault = description
        self.check()
        return first

    def check(self, *, final: bool = False) -> bool:
        """Open the circuit if the rule says so; return whether it is open.

        Args:
            final: The run has no account left to try: a streak of faults on enough accounts
                opens the circuit whatever its length.
        """
        with self._lock:
            if self.reason is None and self._since is not None:
                needed = min(UNREACHABLE_ACCOUNTS, self.accounts_total or UNREACHABLE_ACCOUNTS)
                long_enough = self._clock() - self._since >= UNREACHABLE_AFTER_SECONDS
                if len(self._accounts) >= needed and (final or long_enough):
                    self.reason = self._fault
        if self.reason is not None:
            self._stop_event.set()
        return self.reason is not None

    def trip(self, reason: str) -> None:
        """Open the circuit at once for a fault that retrying cannot fix."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
                self.retry_later = False
        self._stop_event.set()


def _root_causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors beneath it (causes, contexts, urllib3's ``reason``), outer first."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        held = reason if isinstance(reason, BaseException) else None
        pending.extend([held, *nested, current.__cause__, current.__context__])


_INTERNAL_NAMES = re.compile(r"(?:tap_wechat_share\.client\.)?_Watched(HTTPS?)(Connection|Pool)\b")


def _public_names(text: str) -> str:
    """``text`` free of tokens, with urllib3's class names instead of this module's own."""
    return _INTERNAL_NAMES.sub(
        lambda m: m.group(1) + ("Connection" if m.group(2) == "Connection" else "ConnectionPool"),
        redact_text(text),
    )


def _host_port(url: str | None) -> str:
    parts = urlsplit(url or "")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's words for a socket error beneath ``exc``, e.g. connection refused."""
    causes = list(_root_causes(exc))
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return f"the name does not resolve: {cause.strerror or cause}"
    if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in causes):
        return "the name does not resolve"
    for cause in causes:
        if (
            isinstance(cause, OSError)
            and cause.errno is not None
            and cause.errno in errno.errorcode
        ):
            return os.strerror(cause.errno).lower()
    return None


def describe_network_fault(  # noqa: PLR0911 - one return per kind of fault
    exc: BaseException, url: str | None, timeout: float
) -> WeChatError:
    """Turn a failed try into an error in words, with no internal class name in its text.

    Args:
        exc: What requests raised.
        url: The request's URL (only its host and port are named).
        timeout: request_timeout, in seconds.

    Returns:
        A :class:`NetworkFaultError` (retried, counted by the circuit), a :class:`FatalError`
        for an untrusted certificate, or a :class:`RetriableError` for an answer cut short.
    """
    host = _host_port(url)
    for cause in _root_causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or cause.reason or "verification failed"
            msg = (
                f"the TLS certificate of {host} is not trusted ({why}): set REQUESTS_CA_BUNDLE "
                "to your CA bundle"
            )
            return FatalError(msg)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return NetworkFaultError(
            f"could not connect to {host} (no answer within request_timeout, {timeout:g} s)"
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        why = _os_reason(exc) or "the proxy refused or failed"
        return NetworkFaultError(f"could not connect to {host} through the proxy ({why})")
    if isinstance(exc, requests.exceptions.SSLError):
        why = next(
            (c.reason for c in _root_causes(exc) if isinstance(c, ssl.SSLError) and c.reason),
            "handshake failed",
        )
        return NetworkFaultError(f"could not connect to {host} (TLS: {str(why).lower()})")
    cut_short = requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    if isinstance(exc, cut_short):
        return RetriableError(f"the answer from {host} was cut short")
    if isinstance(exc, requests.exceptions.ConnectionError | OSError):
        connected = any(isinstance(c, urllib3.exceptions.ProtocolError) for c in _root_causes(exc))
        if connected:
            why = _os_reason(exc) or "closed"
            return NetworkFaultError(f"the connection to {host} ended without an answer ({why})")
        why = _os_reason(exc) or "no connection"
        return NetworkFaultError(f"could not connect to {host} ({why})")
    return RetriableError(f"the request to {host} failed")


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
        self.circuit = NetworkCircuit(self.stop_event)
        self._counts_lock = threading.Lock()
        self._retries: dict[str, int] = {}

    def retries(self, path: str) -> int:
        """How many tries of requests to ``path`` were retries, so far in the run."""
        return self._retries.get(path, 0)

    def _count_retry(self, path: str) -> None:
        with self._counts_lock:
            self._retries[path] = self._retries.get(path, 0) + 1

    def check_stop(self, what: str) -> None:
        """Raise :class:`StopRequestedError` if the run is stopping.

        Args:
            what: Words for the error, e.g. ``share_hour 2024-05-01``.

        Raises:
            StopRequestedError: If ``stop_event`` is set (:class:`UnreachableError` if it was
                set because WeChat cannot be reached).
        """
        if self.stop_event.is_set():
            raise self._stopped(what)

    def _stopped(self, what: str) -> StopRequestedError:
        if self.circuit.is_open:
            return UnreachableError(what)
        return StopRequestedError(what)

    def wait(self, seconds: float, what: str) -> None:
        """Wait ``seconds``, or less if the run is stopping.

        Raises:
            StopRequestedError: If ``stop_event`` is set before or during the wait.
        """
        if self.stop_event.wait(seconds):
            raise self._stopped(what)

    def post(  # noqa: PLR0913 - the request, then keywords that describe it
        self,
        path: str,
        payload: Mapping[str, t.Any],
        *,
        authenticator: RequestAuthenticator | None = None,
        what: str = "",
        required: str | None = None,
        account: str | None = None,
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
            account: The account the request is made for (network faults across accounts
                stop the run: see :class:`NetworkCircuit`); default: ``what``.

        Returns:
            The decoded JSON object.

        Raises:
            FatalError: When the last try failed, or WeChat answered an errcode that stops the
                account (with an authenticator); names ``what`` and the fault.
            EndpointRetiredError: When WeChat answered that the endpoint is offline (47009).
            ApiError: Without an authenticator, for such an errcode.
            StopRequestedError: When the run is stopping (:class:`UnreachableError` when WeChat
                cannot be reached).
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
                return self._post_with_retries(
                    request, authenticator, what, required, account=account or what, path=path
                )
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

    def _post_with_retries(  # noqa: PLR0913 - what post() was given
        self,
        request: requests.PreparedRequest,
        authenticator: RequestAuthenticator | None,
        what: str,
        required: str | None,
        *,
        account: str,
        path: str,
    ) -> dict[str, t.Any]:
        """Try until an answer, a fault that is not transient, or ``max_tries`` transient ones."""
        minute_waits = 0
        tries = 0
        while True:
            self.check_stop(what)
            tries += 1
            if tries > 1:
                self._count_retry(path)
            try:
                return self._post_once(request, authenticator, what, required)
            except NetworkFaultError as exc:
                first = self.circuit.fault(account, str(exc))
                if self.circuit.is_open:
                    raise UnreachableError(what) from None
                # One warning per streak of network faults: at thousands of accounts against a
                # host that is down, one per try would be most of the log.
                level = logging.WARNING if first else logging.DEBUG
                self._back_off(exc, tries, what, UnreachedError, level)
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
                self._back_off(exc, tries, what, FatalError, logging.WARNING)

    def _back_off(
        self,
        exc: WeChatError,
        tries: int,
        what: str,
        give_up: type[FatalError],
        level: int,
    ) -> None:
        """Wait before the next try, or raise ``give_up`` once ``max_tries`` tries failed.

        The wait is exponential backoff with full jitter; the line that says so is at ``level``.
        """
        if tries >= self.max_tries:
            msg = f"{what}: gave up after {self.max_tries} tries; last error: {exc}"
            raise give_up(msg) from None
        wait = backoff.full_jitter(self.backoff_factor * 2 ** (tries - 1))
        logger.log(
            level,
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
        self.circuit.answered()
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
                    raise self._stopped(what) from None
                # urllib3's chain names its classes: for DEBUG only. requests' own text quotes
                # the URL, and the token is in its query string.
                logger.debug("%s: %s", what, _public_names(f"{type(exc).__name__}: {exc}"))
                if try_.reason == "deadline" or isinstance(exc, requests.exceptions.ReadTimeout):
                    msg = (
                        f"no complete answer from {_host_port(request.url)} within "
                        f"request_timeout ({self.timeout:g} s)"
                    )
                    raise NetworkFaultError(msg) from None
                error = describe_network_fault(exc, request.url, self.timeout)
                if isinstance(error, FatalError):
                    # No account can be read until the certificate is trusted: the run stops.
                    self.circuit.trip(str(error))
                    raise UnreachableError(what) from None
                raise error from None
