"""The tap's settings: their JSON schema, defaults, and the one-line checks run before any API call.

The accounts a run reads (``app_id`` with its credential, ``accounts``, ``accounts_file``, the
shard settings) are checked in :mod:`tap_wechat_share.accounts`; everything else here.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t
from decimal import Decimal
from urllib.parse import urlparse

from singer_sdk import typing as th

from tap_wechat_share.client import DEFAULT_API_URL

if t.TYPE_CHECKING:
    from collections.abc import Mapping

MAX_CONCURRENT_REQUESTS = 32
DEFAULT_CONCURRENT_REQUESTS = 8
DEFAULT_STATE_MESSAGE_INTERVAL = 5.0
"""Seconds between STATE messages at the least (see ``Run.state_due`` for large states)."""
DEFAULT_COMMAND_TIMEOUT = 60.0


# Not mutated (scripts/mutation): it runs once, at import, before mutmut switches a mutant on, so
# no test could see a mutant. tests/test_settings.py checks what it declares.
def credential_properties() -> tuple[th.Property[t.Any], ...]:  # pragma: no mutate block
    """The credential settings of one account (top level, or in ``accounts``)."""
    return (
        th.Property(
            "app_secret",
            th.StringType,
            secret=True,
            description=(
                "The account's AppSecret. With app_id, the tap gets its token from "
                "`POST {api_url}/cgi-bin/stable_token` (force_refresh false), which does not "
                "disturb the account's other services. It never calls `/cgi-bin/token`."
            ),
        ),
        th.Property(
            "access_token",
            th.StringType,
            secret=True,
            description=(
                "A ready token instead of app_secret: an access_token, or a third-party "
                "platform's authorizer_access_token. Used as given; if WeChat refuses it, the "
                "account stops."
            ),
        ),
        th.Property(
            "access_token_command",
            th.StringType,
            secret=True,
            description=(
                "A shell command whose standard output is the token (e.g. asking a central token "
                "service). Runs when the account's first request needs a token, and once more "
                "after WeChat refuses one, with WECHAT_APP_ID set to the account's AppID. At the "
                "top level beside `accounts`/`accounts_file` it serves every account that gives "
                "no credential of its own. Its stderr goes to the log; what it prints is never "
                "logged."
            ),
        ),
    )


CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "app_id",
        th.StringType,
        description=(
            "The Official Account's AppID, written on every record. Required unless `accounts` "
            "or `accounts_file` is given."
        ),
    ),
    *credential_properties(),
    th.Property(
        "accounts",
        th.ArrayType(
            th.ObjectType(
                th.Property("app_id", th.StringType, required=True),
                *credential_properties(),
                additional_properties=False,
            )
        ),
        secret=True,
        description=(
            "Several accounts in one run: a list of objects, each with app_id and at most one of "
            "app_secret, access_token, access_token_command (none: the top-level "
            "access_token_command serves it). Each account is a partition of every stream with "
            "its own bookmark. Excludes the top-level app_id, app_secret and access_token."
        ),
    ),
    th.Property(
        "accounts_file",
        th.StringType,
        description=(
            "Path to a file of accounts, for lists too long for a setting: a `.json` list shaped "
            "like `accounts`, or a `.csv` file with a header row naming `app_id` and optionally "
            "`app_secret`, `access_token`, `access_token_command`. Relative paths are relative "
            "to the working directory (a Meltano project's root). Excludes `accounts`."
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
            "Last day to read (YYYY-MM-DD). Default, and upper limit: the latest day WeChat has "
            "published (yesterday in China after 08:00 there, else the day before)."
        ),
    ),
    th.Property(
        "lookback_days",
        th.IntegerType,
        default=3,
        description=(
            "How many days, up to and including the bookmark, a resumed run reads again (WeChat "
            "may revise recent days). 0 resumes with the day after the bookmark."
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
        default=DEFAULT_CONCURRENT_REQUESTS,
        description=(
            "Requests to WeChat (datacube and token) in flight at once in the whole run, across "
            f"accounts and streams, at most {MAX_CONCURRENT_REQUESTS}. 1 = one request at a time, "
            "none fetched ahead. Records are emitted per account in day order either way."
        ),
    ),
    th.Property(
        "request_timeout",
        th.NumberType,
        default=30,
        description="Seconds one try of a request may take in all (connect, headers, body).",
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
    th.Property(
        "access_token_command_timeout",
        th.NumberType,
        default=DEFAULT_COMMAND_TIMEOUT,
        description=(
            "Seconds an access_token_command may run; then its whole process group is ended and "
            "the account stops."
        ),
    ),
    th.Property(
        "state_message_interval",
        th.NumberType,
        default=DEFAULT_STATE_MESSAGE_INTERVAL,
        description=(
            "Seconds between STATE messages at the least (and one at the end of each stream). "
            "A state larger than 8 KiB (a few dozen accounts) also waits for its size at 256 "
            "KiB/s (17 s at 10,000 accounts) unless records pour out, so that STATE stays a "
            "bounded share of the output. A crash re-reads about one such gap of work. 0 = after "
            "every request window while the state is small."
        ),
    ),
    th.Property(
        "shard_count",
        th.IntegerType,
        default=1,
        description=(
            "Split the accounts into this many shards, each read by its own run (see Running at "
            "scale). An account's shard is a stable hash of its app_id modulo shard_count."
        ),
    ),
    th.Property(
        "shard_index",
        th.IntegerType,
        default=0,
        description="Which shard this run reads, from 0 to shard_count - 1.",
    ),
).to_dict()


_YYYY_MM_DD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def is_date(value: object) -> bool:
    """Whether ``value`` is a date written exactly as ``YYYY-MM-DD``.

    Not ``fromisoformat`` alone: from Python 3.11 it also reads ISO week dates (``2024-W18-3``),
    so a setting would be taken on one Python and refused on another.
    """
    if not isinstance(value, str) or not _YYYY_MM_DD.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def settings_errors(  # noqa: C901
    config: Mapping[str, t.Any],
    latest: dt.date | None = None,
) -> list[str]:
    """Return one line per wrong setting (not the accounts), naming it and what to do.

    Args:
        config: The settings.
        latest: The latest day WeChat has published; a ``start_date`` after it is refused.

    Returns:
        The problems, empty if all is well.
    """
    errors: list[str] = []
    start, end = config.get("start_date"), config.get("end_date")
    if not start:
        errors.append("start_date: required, the first day to read as YYYY-MM-DD")
    elif not is_date(start):
        errors.append(f"start_date: {start!r} is not a date; write it as YYYY-MM-DD")
    if end is not None and not is_date(end):
        errors.append(f"end_date: {end!r} is not a date; write it as YYYY-MM-DD, or leave it out")
    if (
        isinstance(start, str)
        and isinstance(end, str)
        and is_date(start)
        and is_date(end)
        and start > end
    ):
        errors.append(f"start_date {start} is after end_date {end}; swap or correct them")
    if isinstance(start, str) and is_date(start) and latest and start > latest.isoformat():
        errors.append(
            f"start_date {start} is after the latest day WeChat has published ({latest}, China "
            "time: yesterday after 08:00 there); give an earlier start_date, or run later"
        )

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

    def seconds(name: str, *, zero: bool = False) -> None:
        value = config.get(name)
        if value is None:
            return
        # A JSON config file gives fractions as Decimal (the SDK parses it so).
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or value < 0:
            value_ok = False
        else:
            value_ok = value > 0 or zero
        if not value_ok:
            floor = "0 or more" if zero else "above 0"
            errors.append(f"{name}: {value!r} is not allowed; give seconds, {floor}")

    integer("lookback_days", 0)
    integer("max_concurrent_requests", 1, MAX_CONCURRENT_REQUESTS)
    integer("max_tries", 1)
    seconds("request_timeout")
    seconds("access_token_command_timeout")
    seconds("state_message_interval", zero=True)
    api_url = config.get("api_url")
    if api_url is not None:
        parsed = urlparse(str(api_url))
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            errors.append(f"api_url: {api_url!r} is not an http(s) URL; e.g. {DEFAULT_API_URL}")
    if config.get("batch_config"):
        errors.append(
            "batch_config: this tap does not write BATCH messages (its bookmarks move per day, "
            "and a STATE must never pass days whose rows are not yet delivered); remove "
            "batch_config, records are written as RECORD messages"
        )
    return errors
