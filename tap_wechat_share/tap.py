"""The tap: settings, their checks, the accounts of a run, and the end-of-run summary."""

from __future__ import annotations

import datetime as dt
import sys
import typing as t
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlparse

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_wechat_share.auth import (
    CommandTokenProvider,
    ReadyTokenProvider,
    StableTokenProvider,
    TokenProvider,
)
from tap_wechat_share.client import DEFAULT_API_URL, WeChatClient
from tap_wechat_share.dates import FIRST_DATA_DAY, latest_published_day
from tap_wechat_share.output import RecordWriter
from tap_wechat_share.redact import install_log_redaction, redact_text, register_secret
from tap_wechat_share.streams import DatacubeStream, ShareDayStream, ShareHourStream

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Mapping


CREDENTIALS = ("app_secret", "access_token", "access_token_command")
MAX_CONCURRENT_REQUESTS = 32


@dataclass
class Account:
    """One Official Account of a run: its AppID, token source, and failure (if it failed)."""

    app_id: str
    tokens: TokenProvider
    failure: str | None = None


_CREDENTIAL_PROPERTIES = (
    th.Property(
        "app_secret",
        th.StringType,
        secret=True,
        description=(
            "The account's AppSecret. With app_id, the tap gets its token from "
            "`POST {api_url}/cgi-bin/stable_token` (force_refresh false), which does not disturb "
            "the account's other services. It never calls `/cgi-bin/token`."
        ),
    ),
    th.Property(
        "access_token",
        th.StringType,
        secret=True,
        description=(
            "A ready token instead of app_secret: an access_token, or a third-party platform's "
            "authorizer_access_token. Used as given; if WeChat refuses it, the account stops."
        ),
    ),
    th.Property(
        "access_token_command",
        th.StringType,
        secret=True,
        description=(
            "A shell command whose standard output is the token (e.g. asking a central token "
            "service). Runs when the first request needs a token, and once more after WeChat "
            "refuses one. Its stderr goes to the log; what it prints is never logged."
        ),
    ),
)


class TapWeChatShare(Tap):
    """Singer tap for WeChat Official Account share analytics (datacube share endpoints)."""

    name = "tap-wechat-share"
    # The SDK's writer, with RECORD messages encoded and flushed more cheaply: see output.py.
    message_writer_class = RecordWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "app_id",
            th.StringType,
            description=(
                "The Official Account's AppID, written on every record. Required unless "
                "`accounts` is given."
            ),
        ),
        *_CREDENTIAL_PROPERTIES,
        th.Property(
            "accounts",
            th.ArrayType(
                th.ObjectType(
                    th.Property("app_id", th.StringType, required=True),
                    *_CREDENTIAL_PROPERTIES,
                    additional_properties=False,
                )
            ),
            secret=True,
            description=(
                "Several accounts in one run: a list of objects, each with app_id and exactly one "
                "of app_secret, access_token, access_token_command. Each account is a partition "
                "of every stream with its own bookmark. Excludes the top-level credentials."
            ),
        ),
        th.Property(
            "start_date",
            th.DateType,
            required=True,
            description="First day to read (YYYY-MM-DD, China date). Data begins 2014-12-01.",
        ),
        th.Property(
            "end_date",
            th.DateType,
            description=(
                "Last day to read (YYYY-MM-DD). Default, and upper limit: the latest day WeChat "
                "has published (yesterday in China after 08:00 there, else the day before)."
            ),
        ),
        th.Property(
            "lookback_days",
            th.IntegerType,
            default=3,
            description=(
                "How many days, up to and including the bookmark, a resumed run reads again "
                "(WeChat may revise recent days). 0 resumes with the day after the bookmark."
            ),
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=DEFAULT_API_URL,
            description=(
                "Base URL of WeChat's API: a backup or regional host (api2., sh.api., sz.api., "
                "hk.api.weixin.qq.com), or a local server."
            ),
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType,
            default=4,
            description=(
                "Datacube requests in flight at once, per stream and account (1 = one at a time). "
                "Records are emitted in day order either way."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType,
            default=30,
            description="Seconds to wait for WeChat to connect or answer, per try.",
        ),
        th.Property(
            "max_tries",
            th.IntegerType,
            default=5,
            description=(
                "Tries of one request on transient faults (errcode -1, HTTP 429/5xx, timeouts, "
                "dropped connections, HTML instead of JSON), with exponential backoff and jitter."
            ),
        ),
    ).to_dict()

    def __init__(self, **kwargs: t.Any) -> None:  # noqa: ANN401 - the SDK's Tap arguments
        """Make every log line of the run free of secrets before anything is logged."""
        install_log_redaction()
        super().__init__(**kwargs)

    @override
    def discover_streams(self) -> list[DatacubeStream]:
        """Return the streams: ``share_hour`` and ``share_day``."""
        return [ShareHourStream(self), ShareDayStream(self)]

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings, beyond their JSON schema, before any API call.

        Every problem is one line naming the setting and what to do.

        Raises:
            ConfigValidationError: If any setting is wrong and ``raise_errors`` is set.
        """
        for key in CREDENTIALS:
            register_secret(self.config.get(key))
        for account in self.config.get("accounts") or []:
            if isinstance(account, dict):
                for key in CREDENTIALS:
                    register_secret(account.get(key))
        errors = settings_errors(self.config)
        if not errors:
            return super()._validate_config(raise_errors=raise_errors)
        if raise_errors:
            raise ConfigValidationError(errors[0], errors=errors)
        return errors

    @cached_property
    def client(self) -> WeChatClient:
        """The run's HTTP client, shared by every stream and token source."""
        return WeChatClient(
            self.config.get("api_url") or DEFAULT_API_URL,
            timeout=float(self.config.get("request_timeout", 30)),
            max_tries=int(self.config.get("max_tries", 5)),
            pool_size=max(10, int(self.config.get("max_concurrent_requests", 4))),
        )

    @cached_property
    def accounts(self) -> list[Account]:
        """The run's accounts, each with its token source (shared by all streams)."""
        entries = self.config.get("accounts") or [self.config]
        return [Account(entry["app_id"], self._token_provider(entry)) for entry in entries]

    def account(self, app_id: str) -> Account:
        """Return the account with ``app_id``.

        Raises:
            KeyError: If the state names an account that is not configured.
        """
        for account in self.accounts:
            if account.app_id == app_id:
                return account
        raise KeyError(app_id)

    def _token_provider(self, entry: Mapping[str, t.Any]) -> TokenProvider:
        app_id = entry["app_id"]
        if entry.get("app_secret"):
            return StableTokenProvider(app_id, entry["app_secret"], self.client)
        if entry.get("access_token"):
            return ReadyTokenProvider(app_id, entry["access_token"])
        return CommandTokenProvider(app_id, entry["access_token_command"])

    @cached_property
    def run_range(self) -> tuple[dt.date, dt.date]:
        """The first and last day of this run, clamped to what WeChat has, with a warning."""
        start = dt.date.fromisoformat(self.config["start_date"])
        latest = latest_published_day()
        if start < FIRST_DATA_DAY:
            self.logger.warning(
                "start_date %s is before WeChat's data begins; reading from %s",
                start,
                FIRST_DATA_DAY,
            )
            start = FIRST_DATA_DAY
        end = latest
        if end_setting := self.config.get("end_date"):
            end = dt.date.fromisoformat(end_setting)
            if end > latest:
                self.logger.warning(
                    "end_date %s is later than the latest day WeChat has published (%s, China "
                    "time); reading up to %s",
                    end,
                    latest,
                    latest,
                )
                end = latest
        return start, end

    def record_failure(self, account: Account, stream: str, error: Exception) -> None:
        """Mark ``account`` as failed (its other streams are skipped) and log why."""
        account.failure = redact_text(str(error))
        self.logger.error("%s failed in %s: %s", account.app_id, stream, account.failure)
        if account.app_id not in account.failure:
            account.failure = f"{account.app_id}: {account.failure}"

    def failed_accounts(self) -> list[Account]:
        """The accounts that failed in this run."""
        return [account for account in self.accounts if account.failure]

    def sync_all(self) -> None:  # type: ignore[misc]
        """Sync every stream of every account, then end non-zero naming each account that failed.

        An account that fails does not stop the others (they are read and their state written);
        the SDK's ``sync_all`` is otherwise unchanged. Overridden, though the SDK marks it final,
        because a failed account must still turn into a non-zero exit and a summary at the very
        end of the log.
        """
        super().sync_all()
        if failed := self.failed_accounts():
            self.logger.error(
                "%d of %d account(s) failed; the others were read and their state written:",
                len(failed),
                len(self.accounts),
            )
            for account in failed:
                self.logger.error("  %s", account.failure)
            sys.exit(1)


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 10:  # noqa: PLR2004
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _credential_errors(entry: Mapping[str, t.Any], where: str) -> list[str]:
    given = [key for key in CREDENTIALS if entry.get(key)]
    if len(given) == 1:
        return []
    if not given:
        return [
            (
                f"{where}: give one of app_secret, access_token or access_token_command "
                "(the account's credentials)"
            )
        ]
    return [f"{where}: give only one of {', '.join(given)}, not several"]


def settings_errors(config: Mapping[str, t.Any]) -> list[str]:  # noqa: C901, PLR0912
    """Return one line per wrong setting, naming it and what to do (empty if all is well)."""
    errors: list[str] = []
    accounts = config.get("accounts")
    if accounts:
        if not isinstance(accounts, list):
            errors.append("accounts: must be a list of {app_id, app_secret|access_token|...}")
            accounts = []
        top_level = [key for key in ("app_id", *CREDENTIALS) if config.get(key)]
        if top_level:
            errors.append(
                f"accounts is given, so {', '.join(top_level)} must not be: put each account's "
                "app_id and credentials inside accounts"
            )
        seen: set[str] = set()
        for index, entry in enumerate(accounts):
            where = f"accounts[{index}]"
            if not isinstance(entry, dict) or not entry.get("app_id"):
                errors.append(f"{where}: needs an app_id")
                continue
            if entry["app_id"] in seen:
                errors.append(f"{where}: app_id {entry['app_id']} is listed twice")
            seen.add(entry["app_id"])
            errors.extend(_credential_errors(entry, f"{where} ({entry['app_id']})"))
    elif not config.get("app_id"):
        errors.append("app_id: required (the Official Account's AppID), or give accounts")
    else:
        errors.extend(_credential_errors(config, "app_id " + str(config["app_id"])))

    start, end = config.get("start_date"), config.get("end_date")
    if not start:
        errors.append("start_date: required, the first day to read as YYYY-MM-DD")
    elif not _is_date(start):
        errors.append(f"start_date: {start!r} is not a date; write it as YYYY-MM-DD")
    if end is not None and not _is_date(end):
        errors.append(f"end_date: {end!r} is not a date; write it as YYYY-MM-DD, or leave it out")
    if (
        isinstance(start, str)
        and isinstance(end, str)
        and _is_date(start)
        and _is_date(end)
        and start > end
    ):
        errors.append(f"start_date {start} is after end_date {end}; swap or correct them")

    def integer(name: str, low: int, high: int | None = None) -> None:
        value = config.get(name)
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < low
            or (high is not None and value > high)
        ):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            errors.append(f"{name}: {value!r} is not allowed; give a whole number {bound}")

    integer("lookback_days", 0)
    integer("max_concurrent_requests", 1, MAX_CONCURRENT_REQUESTS)
    integer("max_tries", 1)
    timeout = config.get("request_timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        errors.append(f"request_timeout: {timeout!r} is not allowed; give seconds above 0")
    api_url = config.get("api_url")
    if api_url is not None:
        parsed = urlparse(str(api_url))
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            errors.append(f"api_url: {api_url!r} is not an http(s) URL; e.g. {DEFAULT_API_URL}")
    return errors


__all__ = ["Account", "TapWeChatShare", "settings_errors"]
