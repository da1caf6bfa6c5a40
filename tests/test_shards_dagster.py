"""The Dagster job of ``orchestration/dagster_wechat`` end to end: shards of accounts in parallel.

The job runs in this process (``execute_job``) with Dagster's multiprocess executor: each shard's
step is a process of its own running the real ``meltano run tap-wechat-share target-postgres
--state-id-suffix shard-<i>-of-<n>``, in a throwaway copy of the project with its plugins
installed (as in ``test_meltano_e2e.py``). The tap reads the WeChat emulator; target-postgres and
Meltano's system database (``MELTANO_DATABASE_URI``, in a schema of its own) use the throwaway
PostgreSQL of ``tests/postgres.py``. The steps inherit this process's environment, as they
inherit the deployment's in production: the test sets the tap's, the target's and Meltano's
variables with ``monkeypatch`` after removing the caller's.

One test, four runs: 3 shards from no state; 3 shards again (incremental); 2 shards without
resharding (refused before any call); ``scripts/reshard --from 3 --to 2`` then 2 shards, which
read only ``lookback_days`` per account.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import time
import typing as t
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from orchestration.dagster_wechat.definitions import wechat_share_shards
from orchestration.shards import MeltanoCli, accounts_in, shard_state_ids
from tests.emulator import WeChatEmulator
from tests.test_meltano_e2e import (
    DAILY,
    HOURLY,
    LEGACY_TOKEN,
    MELTANO,
    REPO,
    SCRUBBED_PREFIXES,
    copy_as_cloned,
    days,
    loaded_day_rows,
    loaded_hour_rows,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dagster import JobExecutionResult

    from tests.postgres import PostgresServer

pytest_plugins = ("tests.postgres",)

ENVIRONMENT = "dev"
TODAY = dt.date(2024, 3, 20)
START = dt.date(2024, 3, 1)
FIRST_END = dt.date(2024, 3, 6)
SECOND_END = dt.date(2024, 3, 9)
LOOKBACK_DAYS = 3
"""The tap's default ``lookback_days``."""

ACCOUNTS = 30
APP_IDS = [f"wxshard{n:011d}" for n in range(1, ACCOUNTS + 1)]
SECRETS = {app_id: f"shard-secret-{app_id[-4:]}-not-real" for app_id in APP_IDS}


def shard_of(app_id: str, count: int) -> int:
    """The shard of an account, as the tap's ``shard_count`` setting documents it."""
    return int.from_bytes(hashlib.sha256(app_id.encode()).digest()[:8], "big") % count


def own_accounts(index: int, count: int) -> set[str]:
    return {app_id for app_id in APP_IDS if shard_of(app_id, count) == index}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the project with tap-wechat-share and target-postgres installed."""
    root = tmp_path_factory.mktemp("shards") / "project"
    copy_as_cloned(REPO, root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", MELTANO_DISABLE_TRACKING="true")
    started = time.monotonic()
    out = subprocess.run(
        [str(MELTANO), "install", "tap-wechat-share", "target-postgres"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        pytest.fail(f"meltano install failed ({out.returncode}):\n{out.stdout[-6000:]}")
    print(f"\n[shards] meltano install in {time.monotonic() - started:.1f} s")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_job(instance: DagsterInstance, root: Path, shard_count: int) -> JobExecutionResult:
    """Run the Dagster job with ``shard_count`` shards, each step a process of its own."""
    started = time.monotonic()
    result = execute_job(
        reconstructable(wechat_share_shards),
        instance=instance,
        run_config={
            "ops": {"plan_shards": {"config": {"shard_count": shard_count}}},
            "resources": {
                "meltano": {
                    "config": {
                        "project_root": str(root),
                        "environment": ENVIRONMENT,
                        "executable": str(MELTANO),
                    }
                }
            },
            "execution": {"config": {"max_concurrent": shard_count}},
        },
    )
    print(f"[shards] job with {shard_count} shard(s) in {time.monotonic() - started:.1f} s")
    return result


def step_messages(instance: DagsterInstance, result: JobExecutionResult) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(result.run_id)]


def hourly_days_read(emu: WeChatEmulator) -> dict[str, list[str]]:
    """app_id -> the days of its getusersharehour calls, in order, repeats kept."""
    read: dict[str, list[str]] = collections.defaultdict(list)
    for call in emu.calls_to(HOURLY):
        assert call.outcome == "ok", call
        assert call.app_id is not None
        assert call.begin_date is not None
        assert call.begin_date == call.end_date, call
        read[call.app_id].append(call.begin_date)
    return {app_id: sorted(found) for app_id, found in read.items()}


def daily_days_read(emu: WeChatEmulator) -> dict[str, list[str]]:
    """app_id -> the days its getusershare calls covered, repeats kept."""
    read: dict[str, list[str]] = collections.defaultdict(list)
    for call in emu.calls_to(DAILY):
        assert call.outcome == "ok", call
        assert call.app_id is not None
        assert call.begin_date is not None
        assert call.end_date is not None
        first, last = dt.date.fromisoformat(call.begin_date), dt.date.fromisoformat(call.end_date)
        read[call.app_id].extend(day.isoformat() for day in days(first, last))
    return {app_id: sorted(found) for app_id, found in read.items()}


def assert_each_account_read_once(emu: WeChatEmulator, first: dt.date, last: dt.date) -> None:
    """Every account's days first..last were asked for exactly once, by both streams.

    A day asked for twice is an account read by two shards.
    """
    expected = [day.isoformat() for day in days(first, last)]
    assert hourly_days_read(emu) == dict.fromkeys(APP_IDS, expected)
    assert daily_days_read(emu) == dict.fromkeys(APP_IDS, expected)
    assert emu.calls_to(LEGACY_TOKEN) == []


def assert_tables_hold_served_rows(
    pg: PostgresServer, schema: str, emu: WeChatEmulator, last: dt.date
) -> None:
    """The union of the shards' loads is exactly the emulator's rows, each row once."""
    hours = loaded_hour_rows(pg, schema)
    served_hours = {
        (
            app_id,
            str(r["ref_date"]),
            int(r["ref_hour"]),
            int(r["share_scene"]),
            int(r["share_count"]),
            int(r["share_user"]),
        )
        for app_id in APP_IDS
        for day in days(START, last)
        for r in emu.hourly_rows(app_id, day)
    }
    assert served_hours
    assert len(hours) == len(set(hours)), "share_hour holds a row twice"
    assert set(hours) == served_hours
    day_rows = loaded_day_rows(pg, schema)
    served_days = {
        (
            app_id,
            str(r["ref_date"]),
            int(r["share_scene"]),
            int(r["share_count"]),
            int(r["share_user"]),
        )
        for app_id in APP_IDS
        for day in days(START, last)
        for r in emu.daily_rows(app_id, day)
    }
    assert len(day_rows) == len(set(day_rows)), "share_day holds a row twice"
    assert set(day_rows) == served_days


def bookmarks_by_account(state: dict[str, t.Any], stream: str) -> dict[str, str]:
    return {
        part["context"]["app_id"]: str(part["replication_key_value"])[:10]
        for part in state["bookmarks"][stream]["partitions"]
        if part.get("replication_key_value")
    }


@dataclass(frozen=True)
class Pipeline:
    """What the runs of one test share."""

    emu: WeChatEmulator
    pg: PostgresServer
    schema: str
    project: Path
    meltano: MeltanoCli
    instance: DagsterInstance


@pytest.fixture
def pipeline(
    project: Path,
    postgres: PostgresServer,
    postgres_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """The emulator, and the environment of the job's steps (set here: the steps inherit it)."""
    wechat = WeChatEmulator(apps=SECRETS, today=TODAY).start()
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES):
            monkeypatch.delenv(name)
    # The steps import the job from the working directory Dagster records: the repository.
    monkeypatch.chdir(REPO)
    # Meltano's system database: the throwaway server, in a schema of its own.
    system_schema = postgres.create_schema("meltano_system")
    accounts = [
        {"app_id": app_id, "app_secret": SECRETS[app_id]}
        if n % 2
        else {"app_id": app_id, "access_token": wechat.issue_token(app_id)}
        for n, app_id in enumerate(APP_IDS)
    ]
    env = {
        "MELTANO_DATABASE_URI": (
            f"postgresql+psycopg://{quote(postgres.user)}:{quote(postgres.password)}@"
            f"{postgres.host}:{postgres.port}/{postgres.database}"
            f"?options={quote(f'-csearch_path={system_schema}')}"
        ),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_DISABLE_TRACKING": "true",
        "NO_COLOR": "1",
        "TAP_WECHAT_SHARE_API_URL": wechat.url,
        # The dev environment's demo app is blanked: accounts excludes the top-level credentials.
        "TAP_WECHAT_SHARE_APP_ID": "",
        "TAP_WECHAT_SHARE_APP_SECRET": "",
        "TAP_WECHAT_SHARE_ACCOUNTS": json.dumps(accounts),
        "TAP_WECHAT_SHARE_START_DATE": START.isoformat(),
        "TAP_WECHAT_SHARE_END_DATE": FIRST_END.isoformat(),
        "TARGET_POSTGRES_HOST": postgres.host,
        "TARGET_POSTGRES_PORT": str(postgres.port),
        "TARGET_POSTGRES_USER": postgres.user,
        "TARGET_POSTGRES_PASSWORD": postgres.password,
        "TARGET_POSTGRES_DATABASE": postgres.database,
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": postgres_schema,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    try:
        yield Pipeline(
            emu=wechat,
            pg=postgres,
            schema=postgres_schema,
            project=project,
            meltano=MeltanoCli(project, ENVIRONMENT, str(MELTANO)),
            instance=instance,
        )
    finally:
        instance.dispose()
        postgres.drop_schema(system_schema)
        wechat.stop()


def assert_shard_logged(messages: list[str], index: int, count: int) -> None:
    """The tap's line naming its shard reached Dagster's event log."""
    line = f"shard {index} of {count}: {len(own_accounts(index, count))} of {ACCOUNTS} account(s)"
    assert any(line in message for message in messages), line


def run_three_shards_twice(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """3 shards from no state, then again with a later end date (incremental)."""
    first = run_job(p.instance, p.project, 3)
    assert first.success
    assert p.emu.wait_idle()
    assert_each_account_read_once(p.emu, START, FIRST_END)
    assert_tables_hold_served_rows(p.pg, p.schema, p.emu, FIRST_END)
    messages = step_messages(p.instance, first)
    ids = shard_state_ids(ENVIRONMENT, 3)
    assert ids[0] == "dev:tap-wechat-share-to-target-postgres:shard-0-of-3"
    for index, shard_id in enumerate(ids):
        assert_shard_logged(messages, index, 3)
        own = own_accounts(index, 3)
        state = p.meltano.get_state(shard_id)
        # article_share and biz_share keep data from 2025-11-01 on: nothing to read or bookmark
        # in 2024.
        expected = {
            "share_hour": own,
            "share_day": own,
            "article_share": set(),
            "biz_share": set(),
        }
        assert accounts_in(state) == expected, shard_id
    assert f"3 shard(s) done: {', '.join(ids)}" in messages

    p.emu.reset_calls()
    monkeypatch.setenv("TAP_WECHAT_SHARE_END_DATE", SECOND_END.isoformat())
    second = run_job(p.instance, p.project, 3)
    assert second.success
    assert p.emu.wait_idle()
    resume = FIRST_END - dt.timedelta(days=LOOKBACK_DAYS - 1)
    assert_each_account_read_once(p.emu, resume, SECOND_END)
    assert_tables_hold_served_rows(p.pg, p.schema, p.emu, SECOND_END)
    # Its states' bookmarks (every account at SECOND_END) are checked after resharding.


def refuse_two_shards_without_reshard(p: Pipeline) -> None:
    """A new shard count with no states of its own stops before any meltano run or API call."""
    p.emu.reset_calls()
    refused = run_job(p.instance, p.project, 2)
    assert not refused.success
    failures = [
        event for event in refused.all_events if event.event_type == DagsterEventType.STEP_FAILURE
    ]
    assert [event.step_key for event in failures] == ["plan_shards"]
    errors = [str(event.step_failure_data.error) for event in failures if event.step_failure_data]
    assert "scripts/reshard --from 3 --to 2" in "\n".join(errors)
    assert p.emu.calls == []


def reshard_3_to_2(p: Pipeline) -> None:
    """The documented script, run in the project, sets the merged state for both new shards."""
    reshard = subprocess.run(
        [str(REPO / "scripts" / "reshard"), "--from", "3", "--to", "2"],
        cwd=p.project,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert reshard.returncode == 0, reshard.stderr[-3000:]
    assert f"share_hour: {ACCOUNTS} account(s) with a bookmark" in reshard.stdout
    for new_id in shard_state_ids(ENVIRONMENT, 2):
        assert f"set {new_id}" in reshard.stdout
        state = p.meltano.get_state(new_id)
        assert bookmarks_by_account(state, "share_hour") == dict.fromkeys(
            APP_IDS, SECOND_END.isoformat()
        )
    for secret in SECRETS.values():
        assert secret not in reshard.stdout + reshard.stderr


def run_two_shards(p: Pipeline) -> None:
    """2 shards after resharding, no new day: each account reads its lookback_days, once."""
    p.emu.reset_calls()
    third = run_job(p.instance, p.project, 2)
    assert third.success
    assert p.emu.wait_idle()
    resume = SECOND_END - dt.timedelta(days=LOOKBACK_DAYS - 1)
    assert_each_account_read_once(p.emu, resume, SECOND_END)
    assert all(len(read) == LOOKBACK_DAYS for read in hourly_days_read(p.emu).values())
    assert_tables_hold_served_rows(p.pg, p.schema, p.emu, SECOND_END)
    messages = step_messages(p.instance, third)
    for index, new_id in enumerate(shard_state_ids(ENVIRONMENT, 2)):
        assert_shard_logged(messages, index, 2)
        state = p.meltano.get_state(new_id)
        # Its own accounts and, passed through untouched, the other shard's.
        assert bookmarks_by_account(state, "share_hour") == dict.fromkeys(
            APP_IDS, SECOND_END.isoformat()
        )


def test_dagster_job_runs_shards_in_parallel_then_reshards_3_to_2(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    for count in (2, 3):
        assert all(own_accounts(i, count) for i in range(count)), "a shard with no account"
    run_three_shards_twice(pipeline, monkeypatch)
    refuse_two_shards_without_reshard(pipeline)
    reshard_3_to_2(pipeline)
    run_two_shards(pipeline)
    print(f"\n[shards] four Dagster runs and a reshard in {time.monotonic() - started:.1f} s")
