"""The accounts of a run: where they come from, their shard, their authenticator, their failure.

Accounts come from exactly one place:

- the top-level ``app_id`` with one credential (one account);
- ``accounts``: a list of ``{app_id, app_secret | access_token | access_token_command}``;
- ``accounts_file``: a ``.json`` file holding such a list, or a ``.csv`` file with a header row
  naming ``app_id`` and any of ``app_secret``, ``access_token``, ``access_token_command``.

A top-level ``access_token_command`` beside a list serves every account that gives no credential
of its own: it runs once per account (when its first request needs a token), with the environment
variable ``WECHAT_APP_ID`` set to that account's AppID, the way a platform's token service is
asked. Every problem is found before any API call and told in one line (for a file: which line
or item, and what is wrong).

With ``shard_count`` above 1 a run reads only the accounts of its ``shard_index``: an account's
shard is a stable hash of its ``app_id`` (SHA-256, the same on every machine and Python version,
unlike ``hash()``) modulo ``shard_count``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import typing as t
from dataclasses import dataclass
from pathlib import Path

from tap_wechat_share.authenticators import (
    AccessTokenAuthenticator,
    CommandTokenAuthenticator,
    ReadyTokenAuthenticator,
    StableTokenAuthenticator,
)
from tap_wechat_share.redact import redact_text, register_secret

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from tap_wechat_share.client import WeChatClient

CREDENTIALS = ("app_secret", "access_token", "access_token_command")
APP_ID_ENV = "WECHAT_APP_ID"
"""The environment variable naming the account, for a top-level access_token_command."""
_FILE_KINDS = (".json", ".csv")


class AccountsError(ValueError):
    """The settings name the accounts wrongly; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        """Keep every problem; the first is the exception's text."""
        super().__init__(errors[0])
        self.errors = errors


@dataclass
class Account:
    """One Official Account of a run: its AppID, token source, and failure (if it failed)."""

    app_id: str
    authenticator: AccessTokenAuthenticator
    """Puts the account's access token on its requests (and gets it anew when refused)."""
    failure: str | None = None

    def fail(self, error: BaseException) -> str:
        """Mark the account failed (the rest of its run is skipped); return why, free of secrets."""
        text = redact_text(str(error)) or type(error).__name__
        if self.app_id not in text:
            text = f"{self.app_id}: {text}"
        self.failure = text
        return text


@dataclass(frozen=True)
class AccountEntry:
    """An account as the settings give it, before its token source is made."""

    app_id: str
    credential: str | None
    """Which of CREDENTIALS it gives, or None when the top-level command serves it."""
    value: str | None
    where: str
    """Where it was given, for messages: ``accounts[3]``, ``accounts.csv line 4``."""


def shard_of(app_id: str, shard_count: int) -> int:
    """Return the shard of ``app_id``: the same on every machine, process and Python version."""
    digest = hashlib.sha256(app_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def read_entries(config: Mapping[str, t.Any]) -> list[AccountEntry]:
    """Read and check the accounts the settings give (all shards).

    Args:
        config: The tap's settings.

    Returns:
        The accounts, in the order given.

    Raises:
        AccountsError: With one line per problem.
    """
    errors: list[str] = []
    raw, top_command = _given(config, errors)
    entries: list[AccountEntry] = []
    first_seen: dict[str, AccountEntry] = {}  # by the AppID in lower case
    for where, item in raw:
        entry = _entry(where, item, top_command, errors)
        if entry is None:
            continue
        if (first := first_seen.get(entry.app_id.lower())) is not None:
            if first.app_id == entry.app_id:
                errors.append(
                    f"{where}: app_id {entry.app_id} is listed twice (first at {first.where})"
                )
            else:
                # Two accounts would load the same rows under two keys.
                errors.append(
                    f"{where}: app_id {entry.app_id} and {first.where}: app_id {first.app_id} "
                    "differ only in case, the same AppID twice; keep one, written as WeChat "
                    "shows it"
                )
            continue
        first_seen[entry.app_id.lower()] = entry
        entries.append(entry)
    errors.extend(_shard_errors(config))
    if errors:
        raise AccountsError(errors)
    return entries


def _given(  # noqa: PLR0911 - one return per way the accounts can be given
    config: Mapping[str, t.Any], errors: list[str]
) -> tuple[list[tuple[str, object]], str | None]:
    """Return the accounts as given (where, item), and the command serving those without one."""
    listed = config.get("accounts")
    path = config.get("accounts_file")
    top_command = config.get("access_token_command")
    if listed and path:
        errors.append("accounts and accounts_file are both given; keep one of them")
        return [], None
    if listed or path:
        top_level = [key for key in ("app_id", "app_secret", "access_token") if config.get(key)]
        if top_level:
            errors.append(
                f"{'accounts' if listed else 'accounts_file'} is given, so "
                f"{', '.join(top_level)} must not be: put each account's app_id and credentials "
                "in the list (a top-level access_token_command may serve them all)"
            )
            return [], None
        if path:
            before = len(errors)
            items = _read_file(str(path), errors)
            if not items and len(errors) == before:
                errors.append(
                    f"accounts_file {Path(str(path)).name}: holds no account (a truncated "
                    "export?); give at least one"
                )
            return items, top_command
        if isinstance(listed, list):
            return [(f"accounts[{index}]", item) for index, item in enumerate(listed)], top_command
        errors.append("accounts: must be a list of {app_id, app_secret|access_token|...}")
        return [], None
    if not config.get("app_id"):
        errors.append("app_id: required (the Official Account's AppID), or give accounts")
        return [], None
    # One account: its own access_token_command is its credential.
    return [(f"app_id {config['app_id']}", dict(config))], None


def _entry(  # noqa: PLR0911 - one return per way an entry can be wrong
    where: str, item: object, top_command: str | None, errors: list[str]
) -> AccountEntry | None:
    if not isinstance(item, dict):
        errors.append(f"{where}: must be an object with app_id and a credential")
        return None
    app_id = item.get("app_id")
    if not isinstance(app_id, str) or not app_id.strip():
        errors.append(f"{where}: needs an app_id")
        return None
    if app_id != app_id.strip() or any(ch.isspace() for ch in app_id):
        errors.append(f"{where}: app_id {app_id!r} has spaces; give the AppID alone")
        return None
    given = [key for key in CREDENTIALS if item.get(key)]
    for key in given:
        if isinstance(item[key], str):  # anything else is refused below, not registered
            register_secret(item[key])
    named = f"{where} ({app_id})" if app_id not in where else where
    if len(given) > 1:
        errors.append(f"{named}: give only one of {', '.join(given)}, not several")
        return None
    if not given:
        if top_command:
            return AccountEntry(app_id, None, None, where)
        errors.append(
            f"{named}: give one of app_secret, access_token or access_token_command (the "
            "account's credentials), or a top-level access_token_command for every account"
        )
        return None
    value = item[given[0]]
    if not isinstance(value, str):
        errors.append(f"{named}: {given[0]} must be text")
        return None
    return AccountEntry(app_id, given[0], value, where)


def _read_file(path: str, errors: list[str]) -> list[tuple[str, object]]:
    name = Path(path).name
    suffix = Path(path).suffix.lower()
    if suffix not in _FILE_KINDS:
        errors.append(
            f"accounts_file: {name} is neither .json nor .csv; give a JSON list of accounts or a "
            "CSV file with an app_id column"
        )
        return []
    try:
        # newline="": line ends as they are, so that a quoted CSV cell keeps its own.
        with Path(path).open(encoding="utf-8-sig", newline="") as file:
            text = file.read()
    except FileNotFoundError:
        errors.append(f"accounts_file: {path} does not exist; check the path (from {Path.cwd()})")
        return []
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"accounts_file: {path} cannot be read ({type(exc).__name__}); check it")
        return []
    if suffix == ".json":
        return _json_items(name, text, errors)
    return list(_csv_rows(name, text, errors))


def _json_items(name: str, text: str, errors: list[str]) -> list[tuple[str, object]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(f"accounts_file {name} line {exc.lineno}: not valid JSON ({exc.msg})")
        return []
    if not isinstance(items, list):
        errors.append(f"accounts_file {name}: must hold a JSON list of accounts")
        return []
    out: list[tuple[str, object]] = []
    for index, item in enumerate(items):
        where = f"accounts_file {name} item {index}"
        if isinstance(item, dict) and (extra := sorted(set(item) - {"app_id", *CREDENTIALS})):
            errors.append(
                f"{where}: unknown key(s) {', '.join(extra)}; allowed: app_id, "
                f"{', '.join(CREDENTIALS)}"
            )
            continue
        out.append((where, item))
    return out


def _csv_rows(name: str, text: str, errors: list[str]) -> Iterator[tuple[str, object]]:
    # From a file object, not a list of lines: a quoted cell may hold a line break.
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        errors.append(f"accounts_file {name}: is empty; give a header row with app_id")
        return
    columns = [column.strip() for column in header]
    unknown = [column for column in columns if column not in {"app_id", *CREDENTIALS}]
    if "app_id" not in columns or unknown:
        what = f"unknown column(s) {', '.join(unknown)}" if unknown else "no app_id column"
        errors.append(
            f"accounts_file {name} line 1: {what}; the header names app_id and any of "
            f"{', '.join(CREDENTIALS)}"
        )
        return
    line = reader.line_num + 1  # the line the next row begins on
    for row in reader:
        where = f"accounts_file {name} line {line}"
        line = reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            errors.append(f"{where}: has {len(row)} field(s), the header {len(columns)}")
            continue
        yield where, {column: cell.strip() for column, cell in zip(columns, row, strict=True)}


def _shard_errors(config: Mapping[str, t.Any]) -> list[str]:
    count, index = config.get("shard_count", 1), config.get("shard_index", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return [f"shard_count: {count!r} is not allowed; give a whole number of at least 1"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        return [f"shard_index: {index!r} is not allowed; give a whole number from 0 to {count - 1}"]
    return []


def make_accounts(
    config: Mapping[str, t.Any],
    entries: list[AccountEntry],
    client: WeChatClient,
) -> dict[str, Account]:
    """Make the accounts of this run's shard, each with its token source, keyed by app_id.

    Args:
        config: The tap's settings.
        entries: The accounts the settings give (from :func:`read_entries`).
        client: The run's HTTP client, for stable tokens.

    Returns:
        The accounts of the run's shard, in the order given.
    """
    count, index = int(config.get("shard_count", 1)), int(config.get("shard_index", 0))
    timeout = float(config.get("access_token_command_timeout") or 60)
    top_command = config.get("access_token_command")
    # One copy of the environment for every token command, however many accounts: each
    # command gets it with its own WECHAT_APP_ID when it runs.
    environment = dict(os.environ)
    accounts: dict[str, Account] = {}
    for entry in entries:
        if count > 1 and shard_of(entry.app_id, count) != index:
            continue
        accounts[entry.app_id] = Account(
            entry.app_id, _authenticator(entry, top_command, client, timeout, environment)
        )
    return accounts


def _authenticator(
    entry: AccountEntry,
    top_command: str | None,
    client: WeChatClient,
    timeout: float,
    environment: Mapping[str, str],
) -> AccessTokenAuthenticator:
    if entry.credential == "app_secret":
        return StableTokenAuthenticator(entry.app_id, t.cast("str", entry.value), client)
    if entry.credential == "access_token":
        return ReadyTokenAuthenticator(entry.app_id, t.cast("str", entry.value))
    command = entry.value if entry.credential else top_command
    return CommandTokenAuthenticator(
        entry.app_id,
        t.cast("str", command),
        env=environment,
        app_id_variable=APP_ID_ENV,
        timeout=timeout,
        stop_event=client.stop_event,
    )
