"""Catalogs as users write them (in process, and once through the CLI); the fast record path
against the SDK's.

The fast path (``DatacubeStream._generate_record_messages`` and ``output.RecordWriter``) must
write exactly what the SDK's own path writes, byte for byte, for the same records, catalog and
stream maps, with every optional field of a RECORD message set.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import subprocess
import typing as t

import pytest
from singer_sdk import Stream
from singer_sdk.singerlib import Catalog, RecordMessage
from singer_sdk.singerlib.encoding import SimpleSingerWriter

from tap_wechat_share.output import RecordWriter
from tap_wechat_share.tap import TapWeChatShare
from tests.conftest import (
    APP_ID,
    TAP_EXECUTABLE,
    TapOutput,
    bookmark,
    hourly_rows,
    run_tap,
    sync,
)

if t.TYPE_CHECKING:
    from pathlib import Path

    from tests.emulator import WeChatEmulator

HOURLY = "/datacube/getusersharehour"


def discovered(config: dict[str, t.Any], tmp_path: Path, *, cli: bool = False) -> dict[str, t.Any]:
    """The catalog ``--discover`` writes (in this process unless ``cli``)."""
    if not cli:
        return copy.deepcopy(TapWeChatShare(config=config).catalog_dict)
    path = tmp_path / "discover-config.json"
    path.write_text(json.dumps(config))
    out = subprocess.run(
        [TAP_EXECUTABLE, "--config", str(path), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    )
    return t.cast("dict[str, t.Any]", json.loads(out.stdout))


def entry(catalog: dict[str, t.Any], stream: str) -> dict[str, t.Any]:
    return next(s for s in catalog["streams"] if s["tap_stream_id"] == stream)


def stream_metadata(stream_entry: dict[str, t.Any]) -> dict[str, t.Any]:
    return next(m["metadata"] for m in stream_entry["metadata"] if m["breadcrumb"] == [])


def run_with(
    catalog: dict[str, t.Any],
    config: dict[str, t.Any],
    tmp_path: Path,
    state: dict[str, t.Any] | None = None,
    *,
    cli: bool = False,
) -> TapOutput:
    """Run the tap with ``catalog``: in this process, or through ``--catalog`` if ``cli``."""
    if not cli:
        return sync(config, state, catalog)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return run_tap(config, tmp_path, state, extra_args=("--catalog", str(path)))


@pytest.mark.parametrize("way", [pytest.param("cli", marks=pytest.mark.process), "in-process"])
def test_a_catalog_without_replication_key_still_bookmarks_ref_date(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path, way: str
) -> None:
    cli = way == "cli"
    catalog = discovered(config, tmp_path, cli=cli)
    for stream in catalog["streams"]:
        # Nothing left to say it is incremental: the SDK alone would read it FULL_TABLE.
        stream.pop("replication_key", None)
        stream.pop("replication_method", None)
        for key in ("valid-replication-keys", "replication-key", "forced-replication-method"):
            stream_metadata(stream).pop(key, None)
    out = run_with(catalog, config, tmp_path, cli=cli)
    assert out.exit_code == 0, out.stderr
    partition = out.final_state["bookmarks"]["share_hour"]["partitions"][0]
    assert partition["replication_key"] == "ref_date"
    assert partition["replication_key_value"] == "2026-11-10"
    emulator.reset_calls()
    again = run_with(catalog, config | {"lookback_days": 1}, tmp_path, out.final_state, cli=cli)
    assert again.exit_code == 0
    assert [c.begin_date for c in emulator.calls_to(HOURLY)] == ["2026-11-10"]


def test_full_table_in_the_catalog_reads_from_start_date_with_activate_version(
    emulator: WeChatEmulator, config: dict[str, t.Any], tmp_path: Path
) -> None:
    state = sync(config).final_state
    catalog = discovered(config, tmp_path)
    for stream in catalog["streams"]:
        stream_metadata(stream)["forced-replication-method"] = "FULL_TABLE"
        stream["replication_method"] = "FULL_TABLE"
    emulator.reset_calls()
    out = run_with(catalog, config | {"emit_activate_version_messages": True}, tmp_path, state)
    assert out.exit_code == 0, out.stderr
    # Every day from start_date, though the state says all is read.
    assert sorted(c.begin_date or "" for c in emulator.calls_to(HOURLY)) == [
        f"2026-11-{d:02d}" for d in range(1, 11)
    ]
    versions = [m for m in out.messages if m["type"] == "ACTIVATE_VERSION"]
    assert {m["stream"] for m in versions} == {
        "share_hour",
        "share_day",
        "article_share",
        "biz_share",
    }
    version = next(m["version"] for m in versions if m["stream"] == "share_hour")
    records = [m for m in out.messages if m["type"] == "RECORD" and m["stream"] == "share_hour"]
    assert {m["version"] for m in records} == {version}
    assert [m["record"] for m in records] == hourly_rows(emulator, "2026-11-01", "2026-11-10")


def test_a_property_removed_from_the_catalog_schema_is_not_in_records(
    config: dict[str, t.Any], tmp_path: Path
) -> None:
    catalog = discovered(config, tmp_path)
    del entry(catalog, "share_hour")["schema"]["properties"]["share_user"]
    out = run_with(catalog, config | {"end_date": "2026-11-02"}, tmp_path)
    assert out.exit_code == 0, out.stderr
    schema = next(m for m in out.messages if m["type"] == "SCHEMA" and m["stream"] == "share_hour")
    assert "share_user" not in schema["schema"]["properties"]
    assert out.records("share_hour")
    assert all("share_user" not in r for r in out.records("share_hour"))
    assert all("share_user" in r for r in out.records("share_day"))


def test_a_deselected_property_is_not_in_records(config: dict[str, t.Any], tmp_path: Path) -> None:
    catalog = discovered(config, tmp_path)
    for item in entry(catalog, "share_day")["metadata"]:
        if item["breadcrumb"] == ["properties", "share_count"]:
            item["metadata"]["selected"] = False
    out = run_with(catalog, config | {"end_date": "2026-11-02"}, tmp_path)
    assert out.exit_code == 0, out.stderr
    assert out.records("share_day")
    assert all("share_count" not in r for r in out.records("share_day"))
    assert bookmark(out.final_state, "share_day", APP_ID) == "2026-11-02"


# The fast path against the SDK's own -------------------------------------------------------------


def unchanged(catalog: dict[str, t.Any]) -> None:
    del catalog


SCENARIOS: dict[str, tuple[dict[str, t.Any], t.Callable[[dict[str, t.Any]], object]]] = {
    "as discovered": ({}, unchanged),
    "stream map": (
        {
            "stream_maps": {
                "share_hour": {"share_user": "__NULL__", "shares": "share_count * 2"},
                "shares_alias": {"__source__": "share_hour", "__key_properties__": ["ref_date"]},
            }
        },
        unchanged,
    ),
    "filtered by a map": (
        {"stream_maps": {"share_hour": {"__filter__": "share_count > 1"}}},
        unchanged,
    ),
    "property deselected": (
        {},
        lambda catalog: [
            item["metadata"].update(selected=False)
            for item in entry(catalog, "share_hour")["metadata"]
            if item["breadcrumb"] == ["properties", "share_count"]
        ],
    ),
    "property dropped from the schema": (
        {},
        lambda catalog: entry(catalog, "share_hour")["schema"]["properties"].pop("share_user"),
    ),
}
RECORDS = [
    {
        "app_id": APP_ID,
        "ref_date": "2026-11-01",
        "ref_hour": hour,
        "share_scene": scene,
        "share_count": count,
        "share_user": 1,
    }
    for hour, scene, count in [(0, 1, 1), (100, 2, 5), (2300, 255, 3), (1200, 7, 0)]
]
NOW = dt.datetime(2026, 11, 29, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_fast_record_path_writes_what_the_sdks_own_path_writes(
    scenario: str, config: dict[str, t.Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, edit = SCENARIOS[scenario]
    catalog = discovered(config, tmp_path)
    edit(catalog)
    tap = TapWeChatShare(
        config=config | settings, catalog=Catalog.from_dict(copy.deepcopy(catalog))
    )
    stream = tap.streams["share_hour"]
    stream._stream_version = 1_700_000_000  # every optional field set
    stream._time_extracted = NOW  # type: ignore[attr-defined]
    monkeypatch.setattr("singer_sdk.streams.core.utc_now", lambda: NOW)
    fast = [m for r in RECORDS for m in stream._generate_record_messages(copy.deepcopy(r))]
    sdk = [m for r in RECORDS for m in Stream._generate_record_messages(stream, copy.deepcopy(r))]
    assert [dataclasses.asdict(m) for m in fast] == [dataclasses.asdict(m) for m in sdk]
    ours, theirs = RecordWriter(), SimpleSingerWriter()
    assert [ours.serialize_message(m) for m in fast] == [theirs.serialize_message(m) for m in sdk]
    if scenario != "filtered by a map":
        assert len(fast) >= len(RECORDS)


def test_the_writer_writes_every_field_of_a_record_message_as_the_sdk_does() -> None:
    """If the SDK adds a field to RECORD messages, this fails until the writer knows it."""
    samples: dict[str, t.Any] = {
        "stream": "share_hour",
        "record": RECORDS[0],
        "version": 3,
        "time_extracted": NOW,
    }
    fields = [f.name for f in dataclasses.fields(RecordMessage) if f.init]
    missing = [name for name in fields if name not in samples and name != "type"]
    assert not missing, f"RecordMessage has fields the writer was not checked with: {missing}"
    message = RecordMessage(**{name: samples[name] for name in fields if name != "type"})
    assert RecordWriter().serialize_message(message) == SimpleSingerWriter().serialize_message(
        message
    )
