"""The tap: its streams, the run it makes, how a run stops, and the end-of-run summary."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import time
import typing as t
from functools import cached_property

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.logging import StructuredFormatter

from tap_wechat_share.accounts import CREDENTIALS, AccountsError, make_accounts, read_entries
from tap_wechat_share.client import DEFAULT_API_URL, UNREACHABLE, WeChatClient
from tap_wechat_share.dates import FIRST_DATA_DAY, latest_published_day
from tap_wechat_share.lookahead import LookAhead, Stopping
from tap_wechat_share.output import OutputClosedError, RecordWriter
from tap_wechat_share.redact import install_log_redaction, register_secret
from tap_wechat_share.report import Report
from tap_wechat_share.run import Output, Run, Task, WindowResult
from tap_wechat_share.settings import (
    CONFIG_SCHEMA,
    DEFAULT_CONCURRENT_REQUESTS,
    DEFAULT_STATE_MESSAGE_INTERVAL,
    settings_errors,
)
from tap_wechat_share.state import leave_out_non_objects, take_in_old_shapes
from tap_wechat_share.streams import (
    ArticleShareStream,
    BizShareStream,
    DatacubeStream,
    ShareDayStream,
    ShareHourStream,
)

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from types import FrameType

    from tap_wechat_share.accounts import AccountEntry

STOP_GRACE_SECONDS = 2.0
"""After a stop, how long requests still running may take before the process exits anyway."""
EX_TEMPFAIL = 75
"""The exit code of a run stopped because WeChat cannot be reached: run again later."""


class TapWeChatShare(Tap):
    """Singer tap for WeChat Official Account share analytics (datacube share endpoints)."""

    name = "tap-wechat-share"
    # The SDK's writer, with RECORD messages encoded and flushed more cheaply: see output.py.
    message_writer_class = RecordWriter
    config_jsonschema = CONFIG_SCHEMA
    # No BATCH: bookmarks move per day, and the SDK would write STATE before the BATCH message
    # that carries those days (see settings.py's batch_config check).
    capabilities: t.ClassVar[list[t.Any]] = [
        capability for capability in Tap.capabilities if capability != PluginCapabilities.BATCH
    ]

    def __init__(self, **kwargs: t.Any) -> None:  # noqa: ANN401 - the SDK's Tap arguments
        """Make every log line of the run free of secrets before anything is logged."""
        install_log_redaction()
        self._stop_signal: int | None = None
        self._entries: list[AccountEntry] = []
        super().__init__(**kwargs)

    # Not mutated (scripts/mutation), nor _end_stopped and _end_output_closed below: only a
    # process of its own reaches them (the command line, a signal, a closed stdout), and mutmut
    # sees only the test process. tests/test_stopping.py and test_settings.py guard them.
    # pragma: no mutate start
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: t.Any = None,  # noqa: ANN401 - the SDK's _ConfigInput
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        """Run the tap from the command line; wrong settings end it with their reasons last.

        The SDK logs the reasons, then "Config validation failed"; tools that show only the last
        line of the output (``meltano config test``) then hide why. Here each reason is a line of
        its own, the last lines of the log, and the exit code is 1.
        """
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )
        except ConfigValidationError as exc:
            errors = exc.errors or [str(exc)]
            for error in errors:
                cls.logger.error("%s", error)  # noqa: TRY400 - no traceback: one line each
            if _structured_logging():
                # Each line above is a JSON record (Meltano's structured logging), and
                # `meltano config test` shows the last line as it is: end on the words.
                sys.stderr.write("; ".join(errors) + "\n")
            sys.exit(1)

    # pragma: no mutate end

    @override
    def discover_streams(self) -> list[DatacubeStream]:
        """Return the streams: ``share_hour``, ``share_day``, ``article_share``, ``biz_share``."""
        return [
            ShareHourStream(self),
            ShareDayStream(self),
            ArticleShareStream(self),
            BizShareStream(self),
        ]

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings and the accounts, beyond their JSON schema, before any API call.

        Every problem is one line naming the setting (or the file's line) and what to do.

        Raises:
            ConfigValidationError: If anything is wrong and ``raise_errors`` is set.
        """
        for key in CREDENTIALS:
            register_secret(self.config.get(key))
        self._entries, errors = check_config(self.config, latest_published_day())
        if not errors:
            return super()._validate_config(raise_errors=raise_errors)
        if raise_errors:
            raise ConfigValidationError(errors[0], errors=errors)
        return errors

    @cached_property
    def client(self) -> WeChatClient:
        """The run's HTTP client, shared by every stream and token source."""
        in_flight = int(self.config.get("max_concurrent_requests", DEFAULT_CONCURRENT_REQUESTS))
        return WeChatClient(
            self.config.get("api_url") or DEFAULT_API_URL,
            timeout=float(self.config.get("request_timeout", 30)),
            max_tries=int(self.config.get("max_tries", 5)),
            pool_size=max(10, in_flight),
        )

    @cached_property
    def run(self) -> Run:
        """This run: its accounts (this shard's), days, look-ahead and STATE pacing."""
        if not self._entries:
            self._entries = read_entries(self.config)
        accounts = make_accounts(self.config, self._entries, self.client)
        self.client.circuit.accounts_total = len(accounts)
        if (count := int(self.config.get("shard_count", 1))) > 1:
            self.logger.info(
                "shard %d of %d: %d of %d account(s)",
                int(self.config.get("shard_index", 0)),
                count,
                len(accounts),
                len(self._entries),
            )
        first, last, latest = self._run_range()
        run = Run(
            client=self.client,
            accounts=accounts,
            first_day=first,
            last_day=last,
            latest=latest,
            lookback_days=int(self.config.get("lookback_days", 3)),
            state_interval=float(
                self.config.get("state_message_interval", DEFAULT_STATE_MESSAGE_INTERVAL)
            ),
            output=self._output,
            all_app_ids=frozenset(entry.app_id for entry in self._entries),
        )
        report = Report(run, self.logger)
        run.on_progress = report.tick
        run.on_stream_end = report.stream_done
        self._report = report
        run.lookahead = LookAhead(
            self._plan(run),
            self._fetch,
            in_flight=int(self.config.get("max_concurrent_requests", DEFAULT_CONCURRENT_REQUESTS)),
            group=lambda task: task.app_id,
            skip=lambda app_id: bool(accounts[str(app_id)].failure),
            stopping=self._waiting,
        )
        return run

    def _waiting(self) -> bool:
        """Asked a few times a second while the run waits for WeChat: whether to stop.

        Also the moment for a progress line when one is due: a stream whose requests are slow
        still says how far it has got.
        """
        self._report.tick()
        return self._stop_signal is not None or self.client.circuit.is_open

    def _output(self) -> Output:
        writer = self.message_writer
        if isinstance(writer, RecordWriter):
            return Output(writer.state_bytes, writer.last_state_bytes, writer.bytes_written)
        return Output(0, 0, 0)  # pragma: no cover - the tap's writer is a RecordWriter

    def _run_range(self) -> tuple[dt.date, dt.date, dt.date]:
        """The first and last day of this run, clamped to what WeChat has, and the latest day."""
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
        return start, end, latest

    def _selected_streams(self) -> list[DatacubeStream]:
        """The streams ``sync_all`` will read, in its order."""
        return [
            t.cast("DatacubeStream", stream)
            for stream in self.streams.values()
            if stream.selected and not stream.parent_stream_type
        ]

    def _plan(self, run: Run) -> Iterator[Task]:
        """Every request of the run, in the order the streams will take their results.

        Runs lazily on the main thread (it reads the SDK's state), a little ahead of the reader.
        """
        for stream in self._selected_streams():
            for app_id, account in run.accounts.items():
                if account.failure:
                    continue
                try:
                    windows = stream.read_plan(app_id)
                except Exception:  # noqa: BLE001 - the stream reports it when it gets there
                    windows = []
                for window in windows:
                    if stream.name in run.retired:  # its held tasks were dropped: no more
                        break
                    yield Task(stream.name, app_id, window)

    def _fetch(self, task: Task) -> WindowResult:
        return t.cast("DatacubeStream", self.streams[task.stream]).fetch(task)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Ask the run to stop at the next safe point; a second signal ends it at once.

        Nothing is written here: a signal can arrive in the middle of a write to stdout, and
        the SDK's own handler (which writes STATE and exits from here) can then cut a message
        in two. The run notices the request where it waits for WeChat, between windows, and
        then tells requests in flight to end (the client's stop event).
        """
        del frame
        if self._stop_signal is not None:
            os._exit(128 + signum)
        self._stop_signal = signum

    def sync_all(self) -> None:  # type: ignore[misc]
        """Sync every stream of every account; end non-zero naming each account that failed.

        The SDK's ``sync_all``, with what happens around it: old state shapes taken in before
        it starts, and after it (or when it is stopped by a signal or a target that stopped
        reading) the failed accounts named at the very end of the log and the exit code set.
        Overridden, though the SDK marks it final, because a failed account or a stop must turn
        into a non-zero exit and a summary at the very end.
        """
        run = self.run
        self._prepare(run)
        try:
            super().sync_all()
            # With nothing after them (FULL_TABLE writes no final STATE), the last records
            # would otherwise wait for the writer to go, or for the process to exit.
            if isinstance(writer := self.message_writer, RecordWriter):
                writer.finish()
        except Stopping:
            self._end_stopped(run)
        except OutputClosedError:
            self._end_output_closed()
        finally:
            if run.lookahead:
                run.lookahead.close()
        if self._stop_signal is not None or run.client.circuit.check(final=True):
            self._end_stopped(run)
        hanging = self._wind_down(run)
        code = self._summarise(run)
        if hanging:  # pragma: no cover - a request that outlives its own deadline
            self._leave(code)
        if code:
            sys.exit(code)

    def _prepare(self, run: Run) -> None:
        """Get the run ready before its first request.

        Old state shapes are taken in, accounts with an unusable bookmark fail, and above
        ``QUIET_ABOVE_ACCOUNTS`` accounts the SDK's lines per account go to DEBUG.
        """
        leave_out_non_objects(self.state, self.logger)
        for stream in self._selected_streams():
            if isinstance(stream_state := self.state.get("bookmarks", {}).get(stream.name), dict):
                take_in_old_shapes(
                    stream_state, stream.name, list(run.accounts), run.all_app_ids, self.logger
                )
        for stream in self._selected_streams():
            stream.fail_unusable_bookmarks()
            stream.quiet_partitions(quiet=run.quiet)

    def _wind_down(self, run: Run) -> bool:
        """End what still runs on worker threads, so that nothing is logged after the summary.

        Requests of a failed account fetched ahead may still be retrying. Returns whether one
        still runs after ``STOP_GRACE_SECONDS`` (it hangs: the process leaves without it).
        """
        run.client.stop_event.set()  # requests, waits and token commands in flight end now
        if not run.lookahead:
            return False
        run.lookahead.close()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while run.lookahead.busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        return run.lookahead.busy()

    def _summarise(self, run: Run, *, unreached: bool = False) -> int:
        """Write the summary: per stream, then retired endpoints and failed accounts.

        Args:
            run: The run.
            unreached: The run stopped because WeChat cannot be reached: the accounts that
                failed on network faults only are counted, not named one by one.

        Returns:
            The exit code the failures call for (0 or 1).
        """
        self._report.summary([s.name for s in self._selected_streams()], unreached=unreached)
        for line in run.retired.values():
            self.logger.error("%s", line)
        failed = [
            account
            for account in run.failed()
            if not (unreached and account.app_id in run.unreached)
        ]
        if not failed:
            return 1 if run.retired else 0
        if len(run.accounts) == 1:
            self.logger.error("The account failed: %s", failed[0].failure)
            return 1
        if len(failed) == len(run.accounts):
            self.logger.error(
                "All %d accounts failed; the state holds what each read before it failed:",
                len(failed),
            )
        else:
            self.logger.error(
                "%d of %d accounts failed; the others were read and their state written:",
                len(failed),
                len(run.accounts),
            )
        for account in failed:
            self.logger.error("  %s", account.failure)
        return 1

    def _end_stopped(self, run: Run) -> t.NoReturn:  # pragma: no mutate block
        """End a run stopped by a signal, or because WeChat cannot be reached.

        A last STATE, requests in flight ended, the summary, and why the run stopped, last.
        """
        run.client.stop_event.set()  # requests, waits and token commands in flight end now
        try:
            self._state_writer.write_state(self.state)
        except OutputClosedError:
            self._end_output_closed()
        hanging = self._wind_down(run)
        circuit = run.client.circuit
        if self._stop_signal is None and circuit.is_open:
            self._summarise(run, unreached=circuit.retry_later)
            if circuit.retry_later:
                self.logger.error(
                    "%s: %s; requests of several accounts met such faults, and none has had "
                    "an answer since. Stopped; nothing was lost: the last STATE names only days "
                    "read completely, and the accounts not reached are read by the next run. "
                    "Run again later (exit code %d)",
                    UNREACHABLE,
                    circuit.reason,
                    EX_TEMPFAIL,
                )
                code = EX_TEMPFAIL
            else:
                self.logger.error(
                    "Stopped: %s. Nothing was lost: the last STATE names only days read "
                    "completely; run again once it is fixed",
                    circuit.reason,
                )
                code = 1
        else:
            signum = self._stop_signal or signal.SIGTERM
            self._summarise(run)
            self.logger.error(
                "Stopped by %s: the last STATE names only days read completely; run again to "
                "resume",
                signal.Signals(signum).name,
            )
            code = 128 + signum
        if hanging:
            self._leave(code)
        raise SystemExit(code)

    @staticmethod
    def _leave(code: int) -> t.NoReturn:  # pragma: no mutate block
        """Exit at once, a request still hanging: its answer would be discarded anyway.

        Everything the run owes its reader is written.
        """
        sys.stdout.flush()
        logging.shutdown()
        os._exit(code)

    def _end_output_closed(self) -> t.NoReturn:  # pragma: no mutate block
        self.logger.error(
            "The target stopped reading the tap's output (its stdin closed): stopping. Its last "
            "STATE says what it loaded; see the target's own log for why it stopped"
        )
        # Nothing more can reach the reader: send what Python would still flush to nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        raise SystemExit(1)


def _structured_logging() -> bool:
    """Whether the log goes out as JSON records (the SDK's structured logging, as Meltano sets)."""
    return any(
        isinstance(handler.formatter, StructuredFormatter)
        for handler in logging.getLogger().handlers
    )


def check_config(
    config: Mapping[str, t.Any], latest: dt.date | None = None
) -> tuple[list[AccountEntry], list[str]]:
    """Check the accounts and every other setting; return the accounts and one line per problem.

    Args:
        config: The settings.
        latest: The latest day WeChat has published (a later start_date is refused).

    Returns:
        The accounts the settings give (all shards; empty if they are wrong), and the problems.
    """
    try:
        entries = read_entries(config)
    except AccountsError as exc:
        return [], exc.errors + settings_errors(config, latest)
    return entries, settings_errors(config, latest)
