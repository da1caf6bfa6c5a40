"""The SDK authenticators of WeChat's API: where each account's access token comes from.

WeChat wants the token as the ``access_token`` query parameter of every call. Each account has one
authenticator (a :class:`singer_sdk.authenticators.APIAuthenticatorBase`) that puts its current
token there on each request it is applied to, and gets a token anew when WeChat refuses one
(:meth:`WeChatClient.post <tap_wechat_share.client.WeChatClient.post>` applies it and asks for
the renewal). One class per source:

- :class:`StableTokenAuthenticator` (``app_secret``): the *stable* token,
  ``POST /cgi-bin/stable_token`` with ``force_refresh: false``. WeChat hands every caller the
  same token while it is valid, and its tokens are separate from ``/cgi-bin/token``'s, so the
  tap never disturbs the account's other services. The tap never calls ``/cgi-bin/token`` (each
  call invalidates the token every other service holds) and never sets ``force_refresh`` (it
  invalidates others' stable tokens too, and is limited to 20 a day).
- :class:`ReadyTokenAuthenticator` (``access_token``): a ready token (or a third-party
  platform's ``authorizer_access_token``), used as given. If WeChat refuses it, the account
  stops: the tap has no way to get another.
- :class:`CommandTokenAuthenticator` (``access_token_command``): a shell command whose standard
  output is the token, in the spirit of AWS's ``credential_process`` (for a central token
  service).

An authenticator is shared by every stream and every request in flight for its account, so it is
thread-safe, and many simultaneous refusals of one token lead to a single renewal.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import typing as t

from singer_sdk.authenticators import APIAuthenticatorBase

from tap_wechat_share.client import (
    ApiError,
    FatalError,
    StopRequestedError,
    TokenRejectedError,
    WeChatClient,
)
from tap_wechat_share.redact import redact_text, register_secret

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import requests

logger = logging.getLogger(__name__)

STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 - a path, not a password
EXPIRY_MARGIN_SECONDS = 300
"""A token is renewed this long before WeChat says it expires."""
COMMAND_TIMEOUT_SECONDS = 60.0
"""How long a token command may run by default (setting ``access_token_command_timeout``)."""


class AccessTokenAuthenticator(APIAuthenticatorBase, abc.ABC):
    """Puts one account's access token on each request, and renews it when WeChat refuses it.

    Applied to a request (``authenticator(prepared_request)``, as the SDK's REST streams do), it
    adds ``access_token=<the current token>`` to the request's query string through the SDK's
    ``auth_params``. A subclass says where tokens come from (:meth:`_fetch`).
    """

    source = "token"
    """Where tokens come from, in the words of the settings (for messages)."""

    def __init__(self, app_id: str) -> None:
        """Start with no token; the first request that needs one fetches it."""
        super().__init__()
        self.app_id = app_id
        # Reentrant: applying the authenticator holds it while token() fetches under it too.
        self._lock = threading.RLock()
        self._token: str | None = None
        self._expires_at = float("inf")
        self._failure: FatalError | None = None
        self.fetches = 0
        """How many times a token was obtained from the source (for logs and tests)."""

    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Put the account's current token in ``request``'s query string as ``access_token``.

        Args:
            request: The request to send (changed in place).

        Returns:
            The same request, authenticated.

        Raises:
            FatalError: If no token can be had (remembered: the source is not asked again).
        """
        with self._lock:  # auth_params is shared by every thread applying this authenticator
            self.auth_params = {"access_token": self.token()}
            return super().authenticate_request(request)

    def token(self) -> str:
        """Return the account's current token, fetching it on first use or after expiry."""
        with self._lock:
            if self._failure is not None:
                # One failed fetch is the answer for every request in flight: no second call.
                raise self._failure
            if self._token is None or time.monotonic() >= self._expires_at:
                self._store(*self._guarded(self._fetch))
            assert self._token is not None  # noqa: S101 - _store just set it
            return self._token

    def renew(self, refused_token: str, error: TokenRejectedError) -> None:
        """Get a token anew after WeChat refused ``refused_token``.

        If another request has already renewed it, the newer token is kept: many simultaneous
        refusals of one token lead to one renewal.

        Args:
            refused_token: The token the refused request carried.
            error: WeChat's refusal.

        Raises:
            FatalError: If this source cannot give another token.
        """
        with self._lock:
            if self._token is not None and self._token != refused_token:
                return
            logger.warning(
                "%s: WeChat refused the access token (%s); getting it anew from %s",
                self.app_id,
                error,
                self.source,
            )
            self._store(*self._guarded(lambda: self._fetch_after_refusal(error)))

    def _guarded(self, fetch: Callable[[], tuple[str, float | None]]) -> tuple[str, float | None]:
        try:
            return fetch()
        except ApiError as exc:
            self._failure = FatalError(f"{self.app_id} {self.source}: {exc.describe()}")
        except FatalError as exc:
            self._failure = exc
        raise self._failure

    def _store(self, token: str, expires_in: float | None) -> None:
        register_secret(token)
        self._token = token
        self.fetches += 1
        self._expires_at = (
            time.monotonic() + max(expires_in - EXPIRY_MARGIN_SECONDS, expires_in / 2)
            if expires_in
            else float("inf")
        )

    @abc.abstractmethod
    def _fetch(self) -> tuple[str, float | None]:
        """Return a token and its lifetime in seconds (None if unknown)."""

    def _fetch_after_refusal(self, error: TokenRejectedError) -> tuple[str, float | None]:
        del error
        return self._fetch()


class StableTokenAuthenticator(AccessTokenAuthenticator):
    """Tokens from ``POST /cgi-bin/stable_token`` with the account's app_secret."""

    source = "stable_token"

    def __init__(self, app_id: str, app_secret: str, client: WeChatClient) -> None:
        """Keep the secret (registered for redaction) and the client to ask with."""
        super().__init__(app_id)
        register_secret(app_secret)
        self._app_secret = app_secret
        self._client = client

    def _fetch(self) -> tuple[str, float | None]:
        body = self._client.post(
            STABLE_TOKEN_PATH,
            {
                "grant_type": "client_credential",
                "appid": self.app_id,
                "secret": self._app_secret,
                "force_refresh": False,
            },
            what=f"{self.app_id} stable_token",
            account=self.app_id,
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            msg = f"{self.app_id}: stable_token answered without an access_token"
            raise FatalError(msg)
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else None


class ReadyTokenAuthenticator(AccessTokenAuthenticator):
    """A token given ready-made in the settings (access_token or authorizer_access_token)."""

    source = "the access_token setting"

    def __init__(self, app_id: str, access_token: str) -> None:
        """Keep the token (registered for redaction)."""
        super().__init__(app_id)
        register_secret(access_token)
        self._access_token = access_token

    def _fetch(self) -> tuple[str, float | None]:
        return self._access_token, None

    def _fetch_after_refusal(self, error: TokenRejectedError) -> tuple[str, float | None]:
        msg = (
            f"the access_token given for {self.app_id} is invalid or expired ({error.describe()}); "
            "give a fresh one, or use app_secret or access_token_command so the tap can renew it"
        )
        raise FatalError(msg)


class CommandTokenAuthenticator(AccessTokenAuthenticator):
    """Tokens printed by a shell command (``access_token_command``), e.g. a central token service.

    The command runs when the account's first request needs a token, and once more after WeChat
    refuses one. It runs in a process group of its own with an empty standard input (a prompt
    cannot hang it). Its standard error goes to the log (redacted); what it prints on standard
    output is the token, never logged. The token is read when the command's shell exits, whatever
    its background children do with the output. When the shell exits, whatever it left running
    in its process group is killed; if it runs longer than ``timeout`` seconds, or the run is
    stopping, the whole group is killed then.
    """

    source = "access_token_command"

    def __init__(  # noqa: PLR0913 - each is one part of how the command runs
        self,
        app_id: str,
        command: str,
        env: Mapping[str, str] | None = None,
        *,
        app_id_variable: str | None = None,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
        stop_event: threading.Event | None = None,
    ) -> None:
        """Keep the command and how to run it.

        Args:
            app_id: The account.
            command: The shell command; it prints the token on standard output.
            env: The environment it runs in (default: the tap's). Kept, not copied: many
                accounts share one.
            app_id_variable: An environment variable set to ``app_id`` for the command.
            timeout: Seconds it may run (the ``access_token_command_timeout`` setting).
            stop_event: When set, a running command is killed and :class:`StopRequestedError`
                raised (the client's stop event).
        """
        super().__init__(app_id)
        self._command = command
        self.env = env
        """The environment the command runs in (None: the tap's), shared, not copied."""
        self._app_id_variable = app_id_variable
        self.timeout = timeout
        self._stop_event = stop_event if stop_event is not None else threading.Event()

    def _fetch(self) -> tuple[str, float | None]:
        returncode, stdout, stderr = self._run()
        token = stdout.decode(errors="replace").strip()
        register_secret(token)
        for line in stderr.decode(errors="replace").splitlines():
            logger.info("%s access_token_command: %s", self.app_id, redact_text(line))
        if returncode != 0:
            msg = (
                f"access_token_command for {self.app_id} failed with exit code "
                f"{returncode}; its stderr is in the log above"
            )
            raise FatalError(msg)
        if not token or len(token.split()) != 1:
            msg = (
                f"access_token_command for {self.app_id} printed "
                f"{'nothing' if not token else 'more than one word'}; it must print the token only"
            )
            raise FatalError(msg)
        return token, None

    def _run(self) -> tuple[int, bytes, bytes]:
        """Run the command; return its exit code, standard output and standard error."""
        if self._stop_event.is_set():
            what = f"{self.app_id} access_token_command"
            raise StopRequestedError(what)
        env = self.env
        if self._app_id_variable is not None:  # a dict for this run of the command only
            env = {**(os.environ if env is None else env), self._app_id_variable: self.app_id}
        process = subprocess.Popen(  # noqa: S602 - a shell command is the documented interface
            self._command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so that all of it can be killed
        )
        assert process.stdout is not None  # noqa: S101 - PIPE was asked for
        assert process.stderr is not None  # noqa: S101
        stdout_fd, stderr_fd = process.stdout.fileno(), process.stderr.fileno()
        try:
            return self._collect(process, stdout_fd, stderr_fd)
        finally:
            # Its shell has exited, timed out, or the tap is stopping: whatever the command
            # still runs in its group (``sleep 123 &``) ends too, so that nothing outlives it.
            _kill_group(process)

    def _collect(
        self, process: subprocess.Popen[bytes], stdout_fd: int, stderr_fd: int
    ) -> tuple[int, bytes, bytes]:
        """Wait for the shell to exit (or the timeout, or a stop), reading what it prints."""
        assert process.stdout is not None  # noqa: S101 - PIPE was asked for
        assert process.stderr is not None  # noqa: S101
        output: dict[int, list[bytes]] = {stdout_fd: [], stderr_fd: []}
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector, process.stdout, process.stderr:
            for fd in output:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while process.poll() is None:
                if self._stop_event.is_set():
                    what = f"{self.app_id} access_token_command"
                    raise StopRequestedError(what)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = (
                        f"access_token_command for {self.app_id} did not finish within "
                        f"{self.timeout:g} s; check the command, or raise "
                        "access_token_command_timeout"
                    )
                    raise FatalError(msg)
                # Short slices, so that a stop is noticed within moments.
                slice_ = min(remaining, _POLL_SECONDS)
                if selector.get_map():
                    for key, _events in selector.select(slice_):
                        if not _read_available(key.fd, output[key.fd]):
                            selector.unregister(key.fd)
                else:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(slice_)
            # The shell has exited: what it wrote is in the pipes. Its children may hold them
            # open for ever, so take what is there instead of waiting for the end of the file.
            for key in list(selector.get_map().values()):
                _read_available(key.fd, output[key.fd])
        return process.returncode, b"".join(output[stdout_fd]), b"".join(output[stderr_fd])


_POLL_SECONDS = 0.1


def _read_available(fd: int, chunks: list[bytes]) -> bool:
    """Read what ``fd`` has without blocking; return False at the end of the file."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        chunks.append(chunk)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group (its children too) and reap the shell."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
