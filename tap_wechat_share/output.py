"""Writing Singer messages: the SDK's writer, with RECORD and STATE messages made cheaper.

A backfill writes tens of thousands of RECORD messages, and the SDK's writer
(:class:`~singer_sdk.singerlib.encoding.SimpleSingerWriter`) spent most of the tap's own CPU time
per row on them: ``simplejson.dumps`` with options sets up a new encoder for every message, the
message is first copied into a dict, its ``time_extracted`` formatted anew, and stdout is flushed
after every message, one system call each. This writer writes the same text, more cheaply:

- RECORD: the SDK's fields (``type``, ``stream``, ``record``, ``version`` if set,
  ``time_extracted`` if set), encoded by one standard-library JSON encoder made once, with the
  same compact separators and ASCII escapes, a datetime written as ``isoformat(sep="T")`` and any
  other unknown value as ``str(value)``, as the SDK does. The records of a window share one
  ``time_extracted`` (see ``DatacubeStream._generate_record_messages``): it is formatted once.
  What the standard library would write differently from the SDK (a Decimal, NaN or infinity;
  never in this tap's records) goes to the SDK's serializer. Records are written to stdout
  together, in one write, before the next other message (a window's records before its STATE),
  every 64 KiB, when the sync ends (:meth:`RecordWriter.finish`), and at exit at the latest.
  So a record reaches the target at the latest with the STATE message that follows it, and the
  cost of a system call per record (and, with requests in flight, of handing the GIL to another
  thread at each one) is gone, even when ``PYTHONUNBUFFERED`` is set, as many container images
  do.
- Every message reaches stdout whole: lines are written with ``os.write`` until all of them is
  written (see ``_emit``), never twice (the held lines are let go of before the write), and a
  reader that closed stdout ends the run (:class:`OutputClosedError`) instead of a traceback.
- STATE: the SDK's serializer, without the deep copy of the state that ``StateMessage.to_dict``
  makes (``dataclasses.asdict``) only to encode it.

Every other message is serialized by the SDK's code, unchanged.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sys
import typing as t
import weakref

from singer_sdk.singerlib.encoding import SimpleSingerWriter
from singer_sdk.singerlib.encoding.simple import RecordMessage, StateMessage
from singer_sdk.singerlib.json import serialize_json

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message


class OutputClosedError(BaseException):
    """The reader of the tap's output (the target) closed it: nothing more can be delivered.

    A BaseException, so that no ``except Exception`` on the way (the SDK's among them) takes it
    for a failure of one stream or account: the run ends (see ``TapWeChatShare.sync_all``).
    """


PENDING_LIMIT = 64 * 1024
"""Characters of RECORD lines held before they are written without waiting for another message."""


def _default(value: object) -> object:
    """Encode what JSON has no type for as the SDK does; refuse what it writes otherwise.

    Raises:
        TypeError: For a Decimal (simplejson writes it as an exact number).
    """
    if isinstance(value, dt.datetime):
        return value.isoformat(sep="T")
    if isinstance(value, decimal.Decimal):
        msg = "a Decimal: left to the SDK's serializer"
        raise TypeError(msg)
    return str(value)


class RecordWriter(SimpleSingerWriter):
    """The SDK's message writer, with cheaper RECORD and STATE messages (see the module)."""

    def __init__(self) -> None:
        """Make the record encoder, once."""
        super().__init__()
        self._encode = json.JSONEncoder(
            separators=(",", ":"),
            allow_nan=False,  # the SDK writes NaN and infinities as null: left to its serializer
            default=_default,
        ).encode
        self._time: dt.datetime | None = None
        self._time_text = ""
        self._pending: list[str] = []
        self._pending_size = 0
        self.state_bytes = 0
        """Bytes of STATE messages written (see ``Run.state_due``)."""
        self.last_state_bytes = 0
        self.bytes_written = 0
        """Bytes of every message written or held to be written (RECORD lines when held)."""
        # Whatever is still held is written when the writer goes, or at exit at the latest
        # (before Python's last flush of stdout).
        weakref.finalize(self, _write_at_exit, self._pending)

    def serialize_message(self, message: Message) -> str:
        """Serialize a message into a line of JSON (without the newline).

        Args:
            message: A Singer message.

        Returns:
            The JSON text, as the SDK's writer would make it.
        """
        # Exact types: a subclass may carry more fields.
        if type(message) is RecordMessage:
            return self._serialize_record(message)
        if type(message) is StateMessage and message.value is not None:
            return serialize_json({"type": "STATE", "value": message.value})
        return super().serialize_message(message)

    def _serialize_record(self, message: RecordMessage) -> str:
        data: dict[str, t.Any] = {
            "type": "RECORD",
            "stream": message.stream,
            "record": message.record,
        }
        if message.version is not None:
            data["version"] = message.version
        if (extracted := message.time_extracted) is not None:
            if extracted is not self._time:
                self._time_text = extracted.isoformat(sep="T")
                self._time = extracted
            data["time_extracted"] = self._time_text
        try:
            return self._encode(data)
        except (TypeError, ValueError):
            return super().serialize_message(message)

    def write_message(self, message: Message) -> None:
        """Write a message to stdout: a RECORD soon, any other at once, then flush stdout.

        Args:
            message: A Singer message.
        """
        try:
            if type(message) is RecordMessage:
                line = self.serialize_message(message) + "\n"
                self._pending.append(line)
                self._pending_size += len(line)
                self.bytes_written += len(line)
                if self._pending_size >= PENDING_LIMIT:
                    self.write_records()
            else:
                self.write_records()
                line = self.format_message(message) + "\n"
                _emit(line)
                self.bytes_written += len(line)
                if type(message) is StateMessage:
                    self.state_bytes += len(line)
                    self.last_state_bytes = len(line)
        except (BrokenPipeError, ValueError) as exc:
            # ValueError: stdout was closed in this process (writing to a closed file).
            self._pending.clear()
            raise OutputClosedError from exc

    def write_records(self) -> None:
        """Write the RECORD lines held so far to stdout (without flushing it)."""
        _write_lines(self._pending)
        self._pending_size = 0

    def finish(self) -> None:
        """Write the RECORD lines still held: the run's last messages may be records.

        Raises:
            OutputClosedError: If the reader has gone.
        """
        try:
            self.write_records()
        except (BrokenPipeError, ValueError) as exc:
            self._pending.clear()
            raise OutputClosedError from exc


def _write_lines(lines: list[str]) -> None:
    """Write ``lines`` to stdout in one write, and empty the list first.

    Emptied before writing: whatever happens during the write (an interrupted call, a closed
    pipe), no line is ever written twice.
    """
    if lines:
        text = "".join(lines)
        lines.clear()
        _emit(text)


def _emit(text: str) -> None:
    """Write ``text`` to stdout whole, even when a signal interrupts the write.

    Not through ``sys.stdout.write``: when a signal arrives while a large write to a full pipe
    is blocked, CPython's text stream (3.11) drops the part of the text the interrupted
    system call did not write, and the reader gets half a message followed by the next one.
    ``os.write`` reports how much it wrote, so the rest is written after it. What was written
    through ``sys.stdout`` before (by print or the SDK) is flushed first, to keep the order.
    """
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (tests capture into memory)
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    view = memoryview(text.encode("utf-8"))
    while view:
        view = view[os.write(fd, view) :]


def _write_at_exit(lines: list[str]) -> None:
    """Write what is still held when the writer goes; stay silent if stdout is gone."""
    try:
        _write_lines(lines)
    except (OSError, ValueError):
        lines.clear()
