"""The tap's message writer writes exactly what the SDK's writer writes, flushing less often."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
from singer_sdk.singerlib.encoding import SimpleSingerWriter
from singer_sdk.singerlib.encoding.simple import (
    ActivateVersionMessage,
    Message,
    RecordMessage,
    SchemaMessage,
    StateMessage,
)

from tap_wechat_share.output import PENDING_LIMIT, RecordWriter
from tap_wechat_share.tap import TapWeChatShare

NOW = dt.datetime(2026, 11, 29, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
CHINA = dt.timezone(dt.timedelta(hours=8))

MESSAGES: list[Message] = [
    RecordMessage(
        stream="share_hour",
        record={"app_id": "wx1", "ref_date": "2026-11-01", "ref_hour": 0, "share_count": 3},
        time_extracted=NOW,
    ),
    RecordMessage(
        stream="s",
        record={"text": 'é中\u2028\U0001f600"\\\n', "none": None, "list": [1, 2.5, True]},
        time_extracted=NOW,
    ),
    RecordMessage(stream="s", record={"nested": {"at": NOW, "day": dt.date(2020, 1, 1)}}),
    RecordMessage(stream="s", record={"exact": decimal.Decimal("1.10")}, time_extracted=NOW),
    RecordMessage(stream="s", record={"nan": math.nan, "inf": math.inf}, version=3),
    RecordMessage(stream="s", record={"big": 10**30, "tuple": (1, 2), "key": {1: "int key"}}),
    RecordMessage(stream="s", record={}, time_extracted=dt.datetime(2020, 1, 1, tzinfo=CHINA)),
    StateMessage(value={"bookmarks": {"s": {"partitions": [{"context": {"app_id": "wx1"}}]}}}),
    StateMessage(value={"exact": decimal.Decimal("1.5"), "at": NOW}),
    SchemaMessage(stream="s", schema={"type": "object"}, key_properties=["a"]),
    ActivateVersionMessage(stream="s", version=1),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_writes_what_the_sdk_writes(message: Message) -> None:
    assert RecordWriter().serialize_message(message) == SimpleSingerWriter().serialize_message(
        message
    )


def test_records_of_a_window_share_one_formatted_time_extracted() -> None:
    writer = RecordWriter()
    first = writer.serialize_message(RecordMessage(stream="s", record={}, time_extracted=NOW))
    later = NOW + dt.timedelta(seconds=1)
    second = writer.serialize_message(RecordMessage(stream="s", record={}, time_extracted=later))
    assert first.endswith('"2026-11-29T03:04:05.678901+00:00"}')
    assert second.endswith('"2026-11-29T03:04:06.678901+00:00"}')


class CountingStdout(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_stdout_is_flushed_after_each_message_but_records() -> None:
    out = CountingStdout()
    writer = RecordWriter()
    with redirect_stdout(out):
        for message in MESSAGES:
            writer.write_message(message)
    # One flush per other message, and one per run of records written together before it.
    others = sum(not isinstance(m, RecordMessage) for m in MESSAGES)
    runs = sum(
        isinstance(m, RecordMessage)
        and (i + 1 == len(MESSAGES) or not isinstance(MESSAGES[i + 1], RecordMessage))
        for i, m in enumerate(MESSAGES)
    )
    assert out.flushes == others + runs - isinstance(MESSAGES[-1], RecordMessage)
    assert out.getvalue().splitlines() == [
        SimpleSingerWriter().serialize_message(m) for m in MESSAGES
    ]


def test_records_are_written_together_before_the_next_other_message() -> None:
    out = CountingStdout()
    writer = RecordWriter()
    records = [m for m in MESSAGES if isinstance(m, RecordMessage)]
    state = StateMessage(value={"bookmarks": {}})
    with redirect_stdout(out):
        for record in records:
            writer.write_message(record)
        assert out.getvalue() == ""
        writer.write_message(state)
    assert out.getvalue().splitlines() == [
        SimpleSingerWriter().serialize_message(m) for m in [*records, state]
    ]


def test_many_records_are_written_without_waiting_for_another_message() -> None:
    out = io.StringIO()
    writer = RecordWriter()
    record = RecordMessage(stream="s", record={"text": "x" * 1000}, time_extracted=NOW)
    with redirect_stdout(out):
        for _ in range(PENDING_LIMIT // 1000 + 1):
            writer.write_message(record)
    assert len(out.getvalue()) >= PENDING_LIMIT


def test_records_are_written_once_they_reach_the_limit_exactly() -> None:
    out = io.StringIO()
    writer = RecordWriter()
    empty = len(writer.serialize_message(RecordMessage(stream="s", record={"t": ""}))) + 1
    record = RecordMessage(stream="s", record={"t": "x" * (PENDING_LIMIT - empty)})
    with redirect_stdout(out):
        writer.write_message(record)
    assert len(out.getvalue()) == PENDING_LIMIT


def test_state_bytes_count_each_state_line_written() -> None:
    out = io.StringIO()
    writer = RecordWriter()
    with redirect_stdout(out):
        writer.write_message(StateMessage(value={"bookmarks": {}}))
        writer.write_message(RecordMessage(stream="s", record={"a": 1}))
        writer.write_message(StateMessage(value={"bookmarks": {"s": {"partitions": []}}}))
    states = [line for line in out.getvalue().splitlines(keepends=True) if '"STATE"' in line]
    assert writer.state_bytes == sum(len(line) for line in states)
    assert writer.last_state_bytes == len(states[-1])


def test_records_still_held_are_written_when_the_writer_goes() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        writer = RecordWriter()
        writer.write_message(MESSAGES[0])
        del writer
    assert out.getvalue() == SimpleSingerWriter().serialize_message(MESSAGES[0]) + "\n"


def test_records_still_held_are_written_at_exit() -> None:
    code = (
        "from tap_wechat_share.output import PENDING_LIMIT, RecordWriter\n"
        "from singer_sdk.singerlib.encoding.simple import RecordMessage\n"
        "writer = RecordWriter()\n"
        "writer.write_message(RecordMessage(stream='s', record={'a': 1}))\n"
        "raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert done.stdout == '{"type":"RECORD","stream":"s","record":{"a":1}}\n'


def test_the_tap_writes_with_it() -> None:
    assert TapWeChatShare.message_writer_class is RecordWriter
