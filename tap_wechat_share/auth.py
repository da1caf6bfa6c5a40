"""Access tokens: where each account's token comes from, and what happens when WeChat refuses it.

Three sources, one per account:

- ``app_secret``: the *stable* token, ``POST /cgi-bin/stable_token`` with ``force_refresh: false``.
  WeChat hands every caller the same token while it is valid, and its tokens are separate from
  ``/cgi-bin/token``'s, so the tap never disturbs the account's other services. The tap never
  calls ``/cgi-bin/token`` (each call invalidates the token every other service holds) and never
  sets ``force_refresh`` (it invalidates others' stable tokens too, and is limited to 20 a day).
- ``access_token``: a ready token (or a third-party platform's ``authorizer_access_token``), used
  as given. If WeChat refuses it, the account stops: the tap has no way to get another.
- ``access_token_command``: a shell command whose standard output is the token, in the spirit of
  AWS's ``credential_process`` (for a central token service).

A provider is shared by every stream and every request in flight for its account, so it is
thread-safe, and many simultaneous refusals of one token lead to a single renewal.
"""

from __future__ import annotations

import abc
import logging
import subprocess
import threading
import time
import typing as t

from tap_wechat_share.client import ApiError, FatalError, TokenRejectedError, WeChatClient
from tap_wechat_share.redact import redact_text, register_secret

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 - a path, not a password
EXPIRY_MARGIN_SECONDS = 300
"""A token is renewed this long before WeChat says it expires."""
COMMAND_TIMEOUT_SECONDS = 60


class TokenProvider(abc.ABC):
    """Hands out the current access token of one account, and renews it when WeChat refuses it."""

    source = "token"

    def __init__(self, app_id: str) -> None:
        """Start with no token; the first request that needs one fetches it."""
        self.app_id = app_id
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = float("inf")
        self._failure: FatalError | None = None
        self.fetches = 0
        """How many times a token was obtained from the source (for logs and tests)."""

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


class StableTokenProvider(TokenProvider):
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
        )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            msg = f"{self.app_id}: stable_token answered without an access_token"
            raise FatalError(msg)
        expires_in = body.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, int | float) else None


class ReadyTokenProvider(TokenProvider):
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


class CommandTokenProvider(TokenProvider):
    """Tokens printed by a shell command (``access_token_command``), e.g. a central token service.

    The command runs when the account's first request needs a token, and once more after WeChat
    refuses one. Its standard error goes to the log (redacted); what it prints on standard output
    is the token, never logged.
    """

    source = "access_token_command"

    def __init__(self, app_id: str, command: str, env: Mapping[str, str] | None = None) -> None:
        """Keep the command; ``env`` replaces the environment it runs in, if given."""
        super().__init__(app_id)
        self._command = command
        self._env = dict(env) if env is not None else None

    def _fetch(self) -> tuple[str, float | None]:
        try:
            result = subprocess.run(  # noqa: S602 - a shell command is the documented interface
                self._command,
                shell=True,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECONDS,
                check=False,
                env=self._env,
            )
        except subprocess.TimeoutExpired:
            msg = (
                f"access_token_command for {self.app_id} did not finish within "
                f"{COMMAND_TIMEOUT_SECONDS} s; check the command"
            )
            raise FatalError(msg) from None
        token = result.stdout.strip()
        register_secret(token)
        for line in result.stderr.splitlines():
            logger.info("%s access_token_command: %s", self.app_id, redact_text(line))
        if result.returncode != 0:
            msg = (
                f"access_token_command for {self.app_id} failed with exit code "
                f"{result.returncode}; its stderr is in the log above"
            )
            raise FatalError(msg)
        if not token or len(token.split()) != 1:
            msg = (
                f"access_token_command for {self.app_id} printed "
                f"{'nothing' if not token else 'more than one word'}; it must print the token only"
            )
            raise FatalError(msg)
        return token, None
