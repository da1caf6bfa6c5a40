"""Streams: a shared base for WeChat's datacube endpoints, and the endpoints declared on it.

A datacube endpoint takes ``{"begin_date", "end_date"}`` (China dates, at most ``max_days`` days
apart, inclusive) and answers ``{"list": [rows]}``. :class:`DatacubeStream` does everything else
once: the days to read (start, bookmark, lookback, latest published day), the request windows,
several requests in flight with records still emitted in day order, tokens and their renewal,
errcodes, checking rows, and a bookmark after every completed window. An endpoint is declared by
its path, maximum span, key fields, count fields and schema (and, where they differ from the
defaults, the first day of its data, the objects that hold some of its fields, and its successor).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
import typing as t
from functools import cached_property

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE

from tap_wechat_share.client import (
    EndpointRetiredError,
    FatalError,
    StopRequestedError,
    UnreachedError,
    WeChatError,
)
from tap_wechat_share.dates import FIRST_DATA_DAY, Window, first_day_to_read, windows
from tap_wechat_share.lookahead import Stopping
from tap_wechat_share.run import Run, StreamCounts, Task, WindowResult
from tap_wechat_share.state import (
    REPLICATION_KEY,
    IndexedStateManager,
    StateError,
    read_bookmark,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Mapping

    from singer_sdk.helpers.types import Context, Record
    from singer_sdk.singerlib import Catalog

    from tap_wechat_share.accounts import Account

logger = logging.getLogger(__name__)

HOURS = frozenset(range(0, 2400, 100))
"""``ref_hour`` values: HHMM of the hour's start, 0 for [00:00, 01:00) up to 2300."""
SHARE_SCENES = {1: "friends", 2: "Moments", 255: "other"}
COUNT_FIELDS = ("share_count", "share_user")
"""The counts of ``share_hour`` and ``share_day`` rows."""
ARTICLE_SHARE_FIRST_DAY = dt.date(2025, 11, 1)
"""getarticleshare and getbizsummary keep data from this day on; earlier dates are not valid."""
MELTANO_PLUGIN = "tap-wechat-share"
# fromisoformat alone also reads ISO week dates ("2024-W18-3") from Python 3.11.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


SDK_PARTITION_LINES = ("Starting incremental sync of '",)
"""How the SDK's lines at INFO that it writes once per partition (here: per account) begin.

(Log records reach filters with their message already formatted: see redact.py.)"""


class PartitionLines(logging.Filter):
    """Moves the SDK's per-partition INFO lines of a stream's logger to DEBUG.

    Installed on a stream's logger (see ``DatacubeStream.quiet_partitions``) when the run has
    more than ``QUIET_ABOVE_ACCOUNTS`` accounts: with thousands of accounts they would be most
    of the log. Shown as DEBUG lines when the logger is at DEBUG, dropped otherwise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Let everything through but the SDK's per-partition lines, which become DEBUG."""
        if record.levelno != logging.INFO or not str(record.msg).startswith(SDK_PARTITION_LINES):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


class RowError(FatalError):
    """WeChat answered with a row the tap will not load (a key missing, an impossible value)."""


_DIGITS = re.compile(r"-?[0-9]+")


BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
"""What a target's BIGINT column holds: an integer beyond it stops the account here."""


def _as_int(value: object, field: str) -> int:
    if type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX:  # the usual case, first
        return value
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    # ASCII digits only: str.isdigit() also accepts "²" and int() then raises.
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value)
    if number is not None:
        if BIGINT_MIN <= number <= BIGINT_MAX:
            return number
        msg = f"a row has {field}={value!r}, beyond what a BIGINT holds (2**63 - 1)"
        raise RowError(msg)
    if value is None:
        msg = f"a row has no {field}"
    else:
        msg = f"a row has {field}={value!r}, not an integer"
    raise RowError(msg)


def _as_text(value: object, field: str) -> str:
    if isinstance(value, str) and value:
        return value
    msg = f"a row has no {field}" if value is None else f"a row has {field}={value!r}, not a text"
    raise RowError(msg)


class _FieldRule(t.NamedTuple):
    """How one field of a record is read from a row (worked out once per stream)."""

    field: str
    holder: str | None
    """The object of the row that holds the field (e.g. ``detail``); None: the row itself."""
    label: str
    """The field as messages name it, e.g. ``detail.share_user``."""
    read: Callable[[object, str], t.Any]
    is_count: bool
    """Whether it is a count (a negative value stops)."""


class DatacubeStream(Stream):
    """Base for one datacube endpoint, partitioned by account (``app_id``).

    Rows are checked before anything is emitted for their window:

    - a row dated outside the requested window is dropped, and counted in a warning (WeChat has
      been seen to return rows years before the requested day);
    - an exact duplicate of a row in the same answer is dropped;
    - a row missing a key field or a count, or with an impossible value (``ref_hour`` not one of
      0, 100, ..., 2300, a negative count, an unreadable ``ref_date``, an empty ``msgid``), or two
      different rows for the same key, stop the account with a message naming the row: nothing
      of that window is loaded;
    - a ``share_scene`` other than 1, 2 and 255 is loaded, with a warning (WeChat may add scenes);
    - a key field the schema types as a string is taken as WeChat gives it (a non-empty string);
      every other key field and count is an integer, and integers given as strings of digits
      (``"12"``) are read as integers; any other type stops, and so does an integer beyond
      what a BIGINT column holds (-2**63 to 2**63 - 1): the target would refuse it;
    - a field WeChat gives inside an object of the row (``detail.share_user``) is read from there
      (see ``held_in``).

    The bookmark (``replication_key_value`` of the account's partition) is the last day read
    completely. It moves after each window (never backwards), in memory; a STATE message goes
    out at most every ``state_message_interval`` seconds and at the end of the stream, always
    after the records of the days it names. The latest published day does not count as read
    while its answer is empty (WeChat may not have published it yet): the next run asks again.
    No day of an answer that says ``is_delay: true`` (not final yet) counts as read: its rows are
    emitted, the bookmark stays before it, and the next run reads it again. After a window that
    did not count as read in full, the account's bookmark does not move again in this run.

    An endpoint WeChat has retired (errcode 47009) ends its stream for every account; the other
    streams go on, the stream's bookmarks are kept, and the run ends non-zero with one line on
    what to select instead (see ``successor``).
    """

    path: t.ClassVar[str]
    """The endpoint's path, e.g. ``/datacube/getusersharehour``."""
    max_days: t.ClassVar[int]
    """The endpoint's maximum span per request, in days, both ends included."""
    primary_keys: t.ClassVar[tuple[str, ...]]
    """``app_id``, then the fields that identify a row within an account, ``ref_date`` first."""
    count_fields: t.ClassVar[tuple[str, ...]] = COUNT_FIELDS
    """The counts of a row: required, non-negative integers."""
    held_in: t.ClassVar[Mapping[str, str]] = {}
    """Fields WeChat gives inside an object of the row: field -> that object's key."""
    first_data_day: t.ClassVar[dt.date] = FIRST_DATA_DAY
    """The first day the endpoint has data for; earlier days are never asked."""
    successor: t.ClassVar[str | None] = None
    """The stream to select instead if WeChat retires this one's endpoint."""

    replication_key = REPLICATION_KEY
    is_sorted = True
    # STATE is paced by time (see ``_checkpoint``), not every N records.
    STATE_MSG_FREQUENCY = sys.maxsize
    # Records are built here from checked values of the schema's types: no conforming needed.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    @property
    def key_fields(self) -> tuple[str, ...]:
        """The fields that identify a row within an account.

        Taken from the class, not the instance: a run with a catalog sets ``primary_keys`` on
        the instance to the catalog's ``key_properties`` (a list, which a user may change), and
        the checks of rows must follow the endpoint, not the catalog.
        """
        return type(self).primary_keys[1:]

    @property
    def run(self) -> Run:
        """The run this stream belongs to (made by the tap when it starts syncing)."""
        return t.cast("Run", self._tap.run)  # type: ignore[attr-defined]

    @property
    def partitions(self) -> list[dict[str, t.Any]]:
        """One partition per account of the run, each with its own bookmark."""
        if self._partitions is None:
            self._partitions = [{"app_id": app_id} for app_id in self.run.accounts]
        return self._partitions

    _partitions: list[dict[str, t.Any]] | None = None

    @property
    def state_manager(self) -> IndexedStateManager:
        """The SDK's state manager, with partitions found in constant time (see state.py)."""
        if not isinstance(self._state_manager, IndexedStateManager):
            self._state_manager = IndexedStateManager(
                tap_name=self.tap_name,
                stream_name=self.name,
                tap_state=self._tap_state,
                state_partitioning_keys=self.state_partitioning_keys,
                is_sorted=self.is_sorted,
                check_sorted=self.check_sorted,
            )
        return self._state_manager

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Do nothing per record: the bookmark moves per completed window (see ``_checkpoint``).

        The SDK would move it to each record's ``ref_date``, naming a day whose other rows are
        not yet emitted, and never past days without rows.
        """

    # Per-record work done once. The SDK's per-record path is most of the tap's CPU time per row
    # in a backfill; these overrides keep its output and skip only what cannot change it.

    @cached_property
    def _new_scenes(self) -> set[int]:
        """The undocumented share_scene values already warned about in this run."""
        return set()

    _time_extracted: dt.datetime | None = None
    """When the window whose records are being emitted was handed over (see ``get_records``)."""
    _checked_mask: object = None
    _sdk_path = False

    def apply_catalog(self, catalog: Catalog) -> None:
        """Apply a catalog as the SDK does, except what would make the tap wrong.

        - The bookmark's key is ``ref_date`` whatever the catalog says: a catalog without a
          replication key would otherwise make the SDK read the stream FULL_TABLE and write a
          null key into the state (and the next run would read everything again).
          ``replication-method: FULL_TABLE`` in the catalog is honoured: the stream is read
          from ``start_date``, ignoring bookmarks (with ACTIVATE_VERSION messages if asked).
        - A catalog schema without some of the stream's properties: records then carry exactly
          the catalog's properties, conformed by the SDK at ``ROOT_ONLY`` (at ``NONE`` it would
          pass them through).
        """
        super().apply_catalog(catalog)
        self.replication_key = REPLICATION_KEY
        if set(self.effective_schema.get("properties", {})) != set(self.schema["properties"]):
            self.TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY

    def _generate_record_messages(self, record: Record) -> Generator[RecordMessage, None, None]:
        """Make a record's RECORD message(s), as the SDK does with per-record work done once.

        Per record, the SDK (0.54) removes deselected properties, conforms types, applies the
        stream maps, and stamps ``time_extracted`` with the clock. Here:

        - a catalog that deselects properties or drops them from the schema gets the SDK's code
          unchanged; otherwise there is nothing to remove (decided once per selection mask,
          from the schema's properties, which are every record's keys);
        - conforming is a no-op at ``TypeConformanceLevel.NONE`` (records are built from checked
          values of the schema's types in ``parse_rows``): skipped;
        - the stream maps apply as in the SDK;
        - ``time_extracted`` is the time the record's window was handed over to be emitted,
          read once per window instead of once per record: the same instant within the few
          milliseconds a window's records take to write.
        """
        mask = self.mask
        if mask is not self._checked_mask:
            self._checked_mask = mask
            self._sdk_path = self.TYPE_CONFORMANCE_LEVEL != TypeConformanceLevel.NONE or not all(
                mask[("properties", name)] for name in self.schema["properties"]
            )
        if self._sdk_path:
            yield from super()._generate_record_messages(record)
            return
        extracted = self._time_extracted or dt.datetime.now(dt.timezone.utc)
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=extracted,
                )

    def generate_child_contexts(
        self, record: Record, context: Context | None
    ) -> Iterable[Context | None]:
        """Yield no child context when the stream has no child streams (these never have).

        The SDK's default yields one per record, and then copies it and evaluates the stream
        map's filter for child streams that do not exist.
        """
        if self.child_streams:  # pragma: no cover - no child streams are declared
            yield from super().generate_child_contexts(record, context)

    def quiet_partitions(self, *, quiet: bool) -> None:
        """Move the SDK's per-partition INFO lines to DEBUG (``quiet``), or leave them at INFO."""
        for old in [f for f in self.logger.filters if isinstance(f, PartitionLines)]:
            self.logger.removeFilter(old)  # the logger outlives a tap made in the same process
        if quiet:
            self.logger.addFilter(PartitionLines())

    def finalize_state_progress_markers(self, state: dict[str, t.Any] | None = None) -> None:
        """Finalize as the SDK does; the stream has been read to its end (its last progress line).

        The SDK calls it right after a stream's sync.
        """
        super().finalize_state_progress_markers(state)
        if state is None:
            self.run.on_stream_end(self.name)

    def _counts(self) -> StreamCounts:
        """This stream's counts; made when its first account is read."""
        run = self.run
        if (counts := run.counts.get(self.name)) is None:
            requests = 0
            for app_id, account in run.accounts.items():
                if account.failure:
                    continue
                try:
                    requests += len(self.read_plan(app_id))
                except StateError:
                    continue
            counts = run.begin_stream(self.name, self.path, requests)
        return counts

    def read_plan(self, app_id: str) -> list[Window]:
        """Return the windows this run asks for ``app_id``, from its bookmark and the settings.

        Reads the SDK's state, so it runs on the main thread only.

        Raises:
            StateError: If the account's bookmark is unusable (see state.py).
        """
        run = self.run
        bookmark = self.bookmark(app_id)
        if self.name in run.retired:
            return []
        first = first_day_to_read(self.first_day, bookmark, run.lookback_days)
        return list(windows(first, run.last_day, self.max_days))

    def bookmark(self, app_id: str) -> dt.date | None:
        """The account's bookmark in this stream (None: none, or the stream is read FULL_TABLE).

        Raises:
            StateError: If the bookmark is unusable (see state.py), or the account has two
                partitions in the state.
        """
        if self.replication_method == REPLICATION_FULL_TABLE:
            return None
        try:
            state = self.state_manager.find_context_state({"app_id": app_id})
        except ValueError:  # the SDK's refusal of two partitions for one account
            msg = (
                f"the state holds more than one partition for {self.name} {app_id}; keep one "
                "(meltano state edit), then run again"
            )
            raise StateError(msg) from None
        return None if state is None else read_bookmark(state, self.name, app_id, self.run.latest)

    def fail_unusable_bookmarks(self) -> None:
        """Fail, before any request of the run, every account whose bookmark here is unusable.

        So that such an account is read in none of its streams, not in those read before
        this one.
        """
        for app_id, account in self.run.accounts.items():
            if account.failure:
                continue
            try:
                self.bookmark(app_id)
            except StateError as exc:
                self._fail(account, exc)

    @cached_property
    def first_day(self) -> dt.date:
        """The first day this stream reads: the run's, or the endpoint's first day if later.

        Said once at INFO when the run's start is earlier (a setting for every stream, not an
        error for this one).
        """
        first = self.run.first_day
        if first >= self.first_data_day:
            return first
        self.logger.info(
            "%s: WeChat keeps its data from %s on; start_date %s is earlier, so %s is read from %s",
            self.name,
            self.first_data_day,
            first,
            self.name,
            self.first_data_day,
        )
        return self.first_data_day

    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Read the account's days, one window after another, and yield their rows in order.

        The windows' requests were usually sent ahead (see lookahead.py). An account that fails
        (any error, whatever its type) is recorded on the run and skipped for the rest of it;
        the other accounts go on.

        Args:
            context: The partition, ``{"app_id": ...}``.

        Yields:
            Records, in day order.
        """
        if context is None:  # pragma: no cover - the SDK always passes a partition
            return
        run = self.run
        counts = self._counts()
        account = run.accounts[context["app_id"]]
        plan = self._account_plan(account)
        if plan is None:
            self._count_account(counts, account)
            return
        state = self.get_context_state(context)
        lookahead = run.lookahead
        held = False  # a window was not read in full: the bookmark stays before it
        delayed: list[Window] = []
        taken = 0
        for window in plan:
            task = Task(self.name, account.app_id, window)
            try:
                result = lookahead.take(task) if lookahead else self.fetch(task)
            except StopRequestedError:
                raise Stopping from None  # the run is stopping: not this account's failure
            except EndpointRetiredError as exc:
                taken += 1
                counts.requests_done += 1
                self._retire(exc)
                break
            except Exception as exc:  # noqa: BLE001 - whatever it is, it ends this account only
                taken += 1
                counts.requests_done += 1
                self._fail(account, exc)
                break
            finally:
                run.on_progress()
            taken += 1
            counts.requests_done += 1
            counts.records += len(result.records)
            self._time_extracted = dt.datetime.now(dt.timezone.utc)
            yield from result.records
            if result.read_through is not None and not held:
                self._checkpoint(state, result.read_through)
            held = held or result.read_through != window.end
            if result.delayed:
                delayed.append(window)
        self._time_extracted = None
        counts.requests -= len(plan) - taken  # not made: the account failed, or the stream ended
        self._count_account(counts, account)
        self._warn_delayed(account.app_id, delayed)

    def _count_account(self, counts: StreamCounts, account: Account) -> None:
        counts.accounts_done += 1
        if account.failure:
            counts.accounts_failed += 1
            counts.accounts_unreached += account.app_id in self.run.unreached

    def _account_plan(self, account: Account) -> list[Window] | None:
        """The account's windows in this stream; None if it has nothing to do here.

        Nothing to do: the stream's endpoint is retired (said once, in the summary), the account
        failed earlier in the run, or its bookmark is unusable (the account fails now).
        """
        if self.name in self.run.retired:
            return None
        if account.failure:
            self.logger.warning(
                "Skipping %s for %s: the account failed earlier in this run",
                self.name,
                account.app_id,
            )
            return None
        try:
            plan = self.read_plan(account.app_id)
        except StateError as exc:
            self._fail(account, exc)
            return None
        self._log_plan(account.app_id, plan)
        return plan

    def _warn_delayed(self, app_id: str, delayed: list[Window]) -> None:
        """One warning per account and run naming the days WeChat says are not final."""
        if delayed:
            self.logger.warning(
                "%s %s: WeChat says %s not final yet (is_delay); loaded as they are now, and "
                "read again by the next run",
                app_id,
                self.name,
                ", ".join(map(str, delayed)) + (" is" if len(delayed) == 1 else " are"),
            )

    def _log_plan(self, app_id: str, plan: list[Window]) -> None:
        level = logging.DEBUG if self.run.quiet else logging.INFO
        if not plan:
            self.logger.log(level, "%s %s is up to date", app_id, self.name)
            return
        self.logger.log(
            level,
            "%s %s: reading %s to %s in %d request(s)",
            app_id,
            self.name,
            plan[0].begin,
            plan[-1].end,
            len(plan),
        )

    def _fail(self, account: Account, error: BaseException) -> None:
        reason = account.fail(error)
        if isinstance(error, UnreachedError):
            # WeChat's host gave no answer: not this account's trouble. Said once for all in
            # the summary (named there, or counted if the run stops as WeChat cannot be
            # reached); a line each at scale would be hundreds of lines of one fault.
            self.run.unreached.add(account.app_id)
            self.logger.log(
                logging.DEBUG if self.run.quiet else logging.ERROR,
                "%s failed in %s: %s",
                account.app_id,
                self.name,
                reason,
            )
        else:
            self.logger.error("%s failed in %s: %s", account.app_id, self.name, reason)
        if self.run.lookahead:
            self.run.lookahead.drop(account.app_id)

    def _retire(self, error: EndpointRetiredError) -> None:
        """End this stream for every account: WeChat has retired its endpoint."""
        run = self.run
        if self.name in run.retired:
            return
        self.logger.warning(
            "%s: WeChat answered that %s is offline (errcode %s); %s stops for every account, "
            "the other streams go on",
            self.name,
            self.path,
            error.errcode,
            self.name,
        )
        run.retired[self.name] = self.retirement_line(error)
        if run.lookahead:  # its tasks fetched ahead will never be taken: make room for others
            run.lookahead.drop_where(lambda task: task.stream == self.name)

    def retirement_line(self, error: EndpointRetiredError) -> str:
        """The end-of-run line for this stream's retired endpoint: what happened, what to do."""
        others = [name for name in self._tap.streams if name != self.name]
        kept = " and ".join(filter(None, [", ".join(others[:-1]), others[-1]]))
        if self.successor:
            instead = f"{self.successor} is the stream that replaces it"
        else:
            instead = "WeChat names no successor that this tap reads"
        return (
            f"{self.name}: WeChat has retired its endpoint {self.path} (errcode "
            f"{error.errcode}: {error.errmsg}); {self.name} was stopped for every account and "
            f"its bookmarks are kept, the other streams were read. Deselect it, keeping "
            f"{kept} selected: `meltano select {MELTANO_PLUGIN} '*' '*'` then "
            f"`meltano select {MELTANO_PLUGIN} --exclude {self.name} '*'` (an exclusion alone "
            f"deselects every stream); {instead}"
        )

    def _checkpoint(self, state: dict[str, t.Any], read_through: dt.date) -> None:
        """Move the account's bookmark to ``read_through`` (never back); write STATE if due."""
        day = read_through.isoformat()
        current = state.get("replication_key_value")
        if isinstance(current, str) and current >= day:
            return
        state["replication_key"] = REPLICATION_KEY
        state["replication_key_value"] = day
        self.state_manager.is_flushed = False
        if self.run.state_due():
            self._write_state_message()

    def fetch(self, task: Task) -> WindowResult:
        """Make one window's request and check its rows (on a worker thread).

        Any error that is not one of the tap's own becomes one that names the account, stream
        and days, so that the account stops with a readable line and the others go on.
        """
        account = self.run.accounts[task.app_id]
        window = task.window
        what = f"{account.app_id} {self.name} {window}"
        if self.name in self.run.retired:  # fetched ahead before the retirement was seen
            msg = f"{what}: the endpoint is retired"
            raise EndpointRetiredError(47009, msg)
        try:
            body = self._request(account, window, what)
            records = self.parse_rows(body, window, account.app_id, what)
            return WindowResult(
                records,
                self.read_through(window, records, body),
                delayed=body.get("is_delay") is True,
            )
        except (WeChatError, StopRequestedError):
            raise
        except Exception as exc:
            self.logger.debug("%s: unexpected error", what, exc_info=True)
            msg = (
                f"{what}: unexpected {type(exc).__name__}: {exc}; the other accounts go on. "
                "Please report this (the log at DEBUG has the traceback)"
            )
            raise FatalError(msg) from None

    def read_through(
        self, window: Window, records: list[dict[str, t.Any]], body: dict[str, t.Any]
    ) -> dt.date | None:
        """Return the last day of ``window`` that counts as read, or None if none does.

        Every day counts, except the latest published day while its answer is empty (WeChat
        may not have published it yet, at 08:00:01), and every day of an answer that says
        ``is_delay: true`` (WeChat's figures for it are not final): the next run asks again.

        Args:
            window: The days asked for.
            records: The window's checked records.
            body: WeChat's answer (an endpoint may say there that days are not final).

        Returns:
            The day the bookmark may move to.
        """
        if body.get("is_delay") is True:
            return None
        last = window.end
        if last == self.run.latest and not any(r["ref_date"] == last.isoformat() for r in records):
            last -= dt.timedelta(days=1)
        return last if last >= window.begin else None

    def _request(self, account: Account, window: Window, what: str) -> dict[str, t.Any]:
        """One request for ``window``, carrying the account's token (renewed once if refused)."""
        payload = {"begin_date": window.begin.isoformat(), "end_date": window.end.isoformat()}
        return self.run.client.post(
            self.path,
            payload,
            authenticator=account.authenticator,
            what=what,
            required="list",
            account=account.app_id,
        )

    def parse_rows(
        self,
        body: dict[str, t.Any],
        window: Window,
        app_id: str,
        what: str = "",
    ) -> list[dict[str, t.Any]]:
        """Check an answer's rows and turn them into records (rules: see the class docstring).

        Args:
            body: WeChat's decoded answer, already free of errcodes.
            window: The days that were asked for.
            app_id: The account, written on every record.
            what: Words for messages, e.g. ``wx... share_hour 2024-05-01``.

        Returns:
            The records, sorted by their key.

        Raises:
            RowError: For a row the tap will not load.
        """
        rows = body.get("list")
        if not isinstance(rows, list):
            msg = f"{what}: WeChat's answer has no list of rows (list: {str(rows)[:40]!r})"
            raise RowError(msg)
        records: dict[tuple[t.Any, ...], dict[str, t.Any]] = {}
        outside: list[str] = []
        duplicates = 0
        key_fields = self.key_fields
        rules = self._field_rules
        # ref_date -> whether it lies in the window: a day's rows share one date, checked once.
        inside: dict[str, bool] = {}
        for row in rows:
            try:
                record = self._row_to_record(row, app_id, rules, inside, window)
            except RowError as exc:
                msg = f"{what}: {exc}; row: {row!r}"
                raise RowError(msg) from None
            if not inside[record["ref_date"]]:
                outside.append(record["ref_date"])
                continue
            key = tuple([record[field] for field in key_fields])
            if (seen := records.get(key)) is not None:
                if seen != record:
                    named = dict(zip(key_fields, key, strict=True))
                    msg = f"{what}: two different rows for {named}"
                    raise RowError(msg)
                duplicates += 1
                continue
            records[key] = record
        if outside:
            self.logger.warning(
                "%s: dropped %d row(s) dated outside the requested days (%s)",
                what,
                len(outside),
                ", ".join(sorted(set(outside))[:5]),
            )
        if duplicates:
            self.logger.warning("%s: dropped %d exact duplicate row(s)", what, duplicates)
        return [records[key] for key in sorted(records)]

    @cached_property
    def _field_rules(self) -> tuple[_FieldRule, ...]:
        """How each field after ``ref_date`` is read: key fields, then counts."""
        cls = type(self)
        properties = t.cast("dict[str, t.Any]", cls.schema)["properties"]
        rules = []
        for field in cls.primary_keys[2:] + cls.count_fields:
            holder = cls.held_in.get(field)
            text = field not in cls.count_fields and "string" in properties[field]["type"]
            rules.append(
                _FieldRule(
                    field,
                    holder,
                    f"{holder}.{field}" if holder else field,
                    _as_text if text else _as_int,
                    field in cls.count_fields,
                )
            )
        return tuple(rules)

    def _row_to_record(
        self,
        row: object,
        app_id: str,
        rules: tuple[_FieldRule, ...],
        inside: dict[str, bool],
        window: Window,
    ) -> dict[str, t.Any]:
        """Check a row and make its record; note in ``inside`` whether its date is in ``window``.

        A ``ref_date`` already in ``inside`` was checked for an earlier row of the answer.
        """
        if not isinstance(row, dict):
            msg = f"a row is a {type(row).__name__}, not an object"
            raise RowError(msg)
        ref_date = row.get("ref_date")
        if not isinstance(ref_date, str) or ref_date not in inside:
            try:
                day = dt.date.fromisoformat(ref_date) if isinstance(ref_date, str) else None
            except ValueError:
                day = None
            if day is None or not _ISO_DATE.fullmatch(ref_date):  # type: ignore[arg-type]
                msg = f"a row has ref_date={ref_date!r}, not a YYYY-MM-DD date"
                raise RowError(msg)
            inside[ref_date] = day in window  # type: ignore[index]
        record: dict[str, t.Any] = {"app_id": app_id, "ref_date": ref_date}
        for field, holder, label, read, is_count in rules:
            if holder is None:
                value = read(row.get(field), label)
            else:
                held = row.get(holder)
                value = read(held.get(field) if isinstance(held, dict) else None, label)
            if is_count and value < 0:
                msg = f"a row has {label}={value}, a negative count"
                raise RowError(msg)
            record[field] = value
        if "ref_hour" in record and record["ref_hour"] not in HOURS:
            msg = f"a row has ref_hour={record['ref_hour']}, not one of 0, 100, ..., 2300"
            raise RowError(msg)
        scene = record.get("share_scene")
        if scene is not None and scene not in SHARE_SCENES and scene not in self._new_scenes:
            self._new_scenes.add(scene)  # one warning per scene and run, not one per row
            self.logger.warning(
                "%s: share_scene %s is not one WeChat documents (1, 2, 255); loaded as is",
                app_id,
                scene,
            )
        return record


_SCENE = th.Property(
    "share_scene",
    th.IntegerType,
    required=True,
    description="Where it was shared: 1 friends (chats), 2 Moments, 255 other.",
)
_COUNTS = (
    th.Property("share_count", th.IntegerType, required=True, description="Times shared."),
    th.Property("share_user", th.IntegerType, required=True, description="People who shared."),
)
_APP_ID = th.Property("app_id", th.StringType, required=True, description="The account's AppID.")
_REF_DATE = th.Property(
    "ref_date", th.DateType, required=True, description="The China date (Asia/Shanghai)."
)


class ShareHourStream(DatacubeStream):
    """Shares per hour and scene (``getusersharehour``: one day per request)."""

    name = "share_hour"
    path = "/datacube/getusersharehour"
    max_days = 1
    primary_keys = ("app_id", "ref_date", "ref_hour", "share_scene")
    successor = "article_share"
    schema = th.PropertiesList(
        _APP_ID,
        _REF_DATE,
        th.Property(
            "ref_hour",
            th.IntegerType,
            required=True,
            description="Hour as WeChat gives it, HHMM of its start: 0, 100, ..., 2300.",
        ),
        _SCENE,
        *_COUNTS,
    ).to_dict()


class ShareDayStream(DatacubeStream):
    """Shares per day and scene (``getusershare``: up to 7 days per request)."""

    name = "share_day"
    path = "/datacube/getusershare"
    max_days = 7
    primary_keys = ("app_id", "ref_date", "share_scene")
    successor = "biz_share"
    schema = th.PropertiesList(_APP_ID, _REF_DATE, _SCENE, *_COUNTS).to_dict()


class ArticleShareStream(DatacubeStream):
    """People who shared each published article, per day (``getarticleshare``: one day a request).

    WeChat keeps this data from 2025-11-01 on. Its answers say whether the day's figures are
    final (``is_delay``); a day that is not is loaded and read again by the next run.
    """

    name = "article_share"
    path = "/datacube/getarticleshare"
    max_days = 1
    primary_keys = ("app_id", "ref_date", "msgid")
    count_fields = ("share_user",)
    held_in: t.ClassVar[Mapping[str, str]] = {"share_user": "detail"}
    first_data_day = ARTICLE_SHARE_FIRST_DAY
    schema = th.PropertiesList(
        _APP_ID,
        _REF_DATE,
        th.Property(
            "msgid",
            th.StringType,
            required=True,
            description=(
                "The published article as WeChat names it: the message's msg_data_id, an "
                "underscore, and the article's index in that message (e.g. 2247490098_1)."
            ),
        ),
        th.Property(
            "share_user",
            th.IntegerType,
            required=True,
            description="People who shared the article that day (WeChat's detail.share_user).",
        ),
    ).to_dict()


class BizShareStream(DatacubeStream):
    """People who shared the account's published content, per day (``getbizsummary``).

    The account's daily overview (one row per day, one day a request, data from 2025-11-01 on,
    ``is_delay`` as for ``article_share``). Only ``detail.share_user`` is loaded: the answer's
    other figures (reads, likes, ...) are not share analytics and their meaning is not confirmed.
    """

    name = "biz_share"
    path = "/datacube/getbizsummary"
    max_days = 1
    primary_keys = ("app_id", "ref_date")
    count_fields = ("share_user",)
    held_in: t.ClassVar[Mapping[str, str]] = {"share_user": "detail"}
    first_data_day = ARTICLE_SHARE_FIRST_DAY
    schema = th.PropertiesList(
        _APP_ID,
        _REF_DATE,
        th.Property(
            "share_user",
            th.IntegerType,
            required=True,
            description=(
                "People who shared the account's published content that day (WeChat's "
                "detail.share_user); not the sum of article_share's figures, since one person "
                "may share several articles."
            ),
        ),
    ).to_dict()
