"""The Dagster job of ``orchestration/dagster_wechat`` end to end: shards of accounts in parallel.

The job runs in this process (``execute_job``) with Dagster's multiprocess executor: each shard's
step is a process of its own running the real ``meltano run tap-wechat-share target-postgres
--state-id-suffix shard-<i>-of-<n>``, in a throwaway copy of the project with its plugins
installed (as in ``test_meltano_e2e.py``). The tap reads the WeChat emulator; target-postgres and
Meltano's system database (``MELTANO_DATABASE_URI``, in a schema of its own) use the throwaway
PostgreSQL of ``tests/postgres.py``. The steps inherit this process's environment, as they
inherit the deployment's in production: the test sets the tap's, the target's and Meltano's
variables with ``monkeypatch`` after removing the caller's.

One test, in order: a state of the unsharded ``meltano run`` (set with ``meltano state set``)
makes 3 shards refused, with the reshard command to run; with ``allow_new_shard_count``, a target
that cannot be reached fails the step that prepares the target, once, naming the cause; then the
first run of 3 shards into a schema that does not exist yet (the target's schema and tables are
prepared once before the shards start; shard 1's first try stops as when WeChat cannot be reached
and is retried after the delay); ``scripts/reshard --from 3 --to 2``; 2 shards with a later end
date, which read only ``lookback_days`` and the new days per account; 4 shards, refused with the
latest shard count (2), not the largest (3).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import typing as t
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from orchestration.dagster_wechat.definitions import shards_job
from orchestration.shards import MeltanoCli, accounts_in, shard_state_ids, state_id
from tests.emulator import WeChatEmulator
from tests.postgres import _psql as psql
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


def run_job(
    instance: DagsterInstance,
    root: Path,
    shard_count: int,
    *,
    allow_new_shard_count: bool = False,
    executable: Path = MELTANO,
) -> JobExecutionResult:
    """Run the Dagster job with ``shard_count`` shards, each step a process of its own."""
    started = time.monotonic()
    result = execute_job(
        reconstructable(shards_job),
        instance=instance,
        run_config={
            "ops": {
                "plan_shards": {
                    "config": {
                        "shard_count": shard_count,
                        "allow_new_shard_count": allow_new_shard_count,
                    }
                }
            },
            "resources": {
                "meltano": {
                    "config": {
                        "project_root": str(root),
                        "environment": ENVIRONMENT,
                        "executable": str(executable),
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


def failures(result: JobExecutionResult) -> dict[str, str]:
    """Step key -> the description of the ``Failure`` that failed it."""
    return {
        event.step_key or "": event.step_failure_data.user_failure_data.description or ""
        for event in result.all_events
        if event.event_type == DagsterEventType.STEP_FAILURE
        and event.step_failure_data.user_failure_data is not None
    }


def refused_in_plan(result: JobExecutionResult) -> str:
    """The refusal of a run that ``plan_shards`` stopped, before any other step."""
    assert not result.success
    started = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
    assert started == {"plan_shards"}
    return failures(result)["plan_shards"]


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
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """The emulator, and the environment of the job's steps (set here: the steps inherit it).

    The target's schema does not exist: the job's first run creates it.
    """
    target_schema = f"wechat_shards_{uuid.uuid4().hex[:12]}"
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
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": target_schema,
        # A shard's try stopped because WeChat cannot be reached is tried again 1 s later.
        "WECHAT_UNREACHABLE_RETRY_DELAY": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster"))
    try:
        yield Pipeline(
            emu=wechat,
            pg=postgres,
            schema=target_schema,
            project=project,
            meltano=MeltanoCli(project, ENVIRONMENT, str(MELTANO)),
            instance=instance,
        )
    finally:
        instance.dispose()
        postgres.drop_schema(system_schema)
        postgres.drop_schema(target_schema)
        wechat.stop()


def assert_shard_logged(messages: list[str], index: int, count: int) -> None:
    """The tap's line naming its shard reached Dagster's event log."""
    line = f"shard {index} of {count}: {len(own_accounts(index, count))} of {ACCOUNTS} account(s)"
    assert any(line in message for message in messages), line


def refuse_the_unsharded_state(p: Pipeline) -> None:
    """A state of the unsharded ``meltano run`` and none for 3 shards: refused, with the command."""
    unsharded = state_id(ENVIRONMENT)
    bookmark = {"replication_key": "ref_date", "replication_key_value": FIRST_END.isoformat()}
    partitions = [{"context": {"app_id": app_id}, **bookmark} for app_id in APP_IDS]
    p.meltano.set_state(unsharded, {"bookmarks": {"share_hour": {"partitions": partitions}}})
    refusal = refused_in_plan(run_job(p.instance, p.project, 3))
    assert f"scripts/reshard --from-state-id {unsharded} --to 3 first" in refusal
    assert p.emu.calls == []


def a_target_that_cannot_be_reached_fails_once(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preparing the target fails, naming the cause, before any shard starts."""
    # A port bound and not listening: every connection to it is refused.
    with socket.socket() as closed, monkeypatch.context() as patch:
        closed.bind(("127.0.0.1", 0))
        patch.setenv("TARGET_POSTGRES_PORT", str(closed.getsockname()[1]))
        failed = run_job(p.instance, p.project, 3, allow_new_shard_count=True)
    assert not failed.success
    started = {e.step_key for e in failed.all_events if e.event_type == DagsterEventType.STEP_START}
    assert started == {"plan_shards", "prepare_target"}
    message = failures(failed)["prepare_target"]
    assert message.startswith("preparing the target: meltano invoke target-postgres exited 1: ")
    assert "target-postgres: " in message
    assert "Connection refused" in message
    assert "BrokenPipe" not in message
    assert p.emu.calls == []


def watched_meltano(p: Pipeline, tmp: Path) -> Path:
    """The real ``meltano``, with two things added to each shard's ``meltano run``.

    Before the run starts, the tables its target will find in the target's schema are written to
    ``tmp/found-<shard index>``, one line per try (the shards' targets must find them ready,
    not race to create them). And shard 1's first try is the real tap against an ``api_url``
    that refuses connections: it stops as when WeChat cannot be reached, and the job must try
    the shard again (Meltano relays the tap's ERROR line, then exits 1).
    """
    marker = tmp / "shard-1-stopped"
    wrapper = tmp / "meltano"
    tables = (
        "SELECT coalesce(string_agg(table_name, ',' ORDER BY table_name), '') "  # noqa: S608
        f"FROM information_schema.tables WHERE table_schema = '{p.schema}'"
    )
    pg = " ".join(f"{k}={shlex.quote(v)}" for k, v in p.pg.env().items() if k.startswith("PG"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$2" = run ]; then\n'
        f'  {pg} {shlex.quote(psql())} -XtAc "{tables}" '
        f'>> "{tmp}/found-$TAP_WECHAT_SHARE_SHARD_INDEX"\n'
        f'  if [ "$TAP_WECHAT_SHARE_SHARD_INDEX" = 1 ] && [ ! -e "{marker}" ]; then\n'
        f'    touch "{marker}"\n'
        f'    TAP_WECHAT_SHARE_API_URL={refused} exec "{MELTANO}" "$@"\n'
        "  fi\n"
        "fi\n"
        f'exec "{MELTANO}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def run_three_shards_into_a_new_schema(p: Pipeline, tmp: Path) -> None:
    """3 shards from no state into a schema that does not exist: prepared once, then loaded."""
    exists = f"SELECT count(*) FROM pg_namespace WHERE nspname = '{p.schema}'"  # noqa: S608
    assert p.pg.scalar(exists) == "0", "the target's schema exists before the first run"
    first = run_job(
        p.instance, p.project, 3, allow_new_shard_count=True, executable=watched_meltano(p, tmp)
    )
    assert first.success, failures(first)
    ready = "article_share,biz_share,share_day,share_hour"
    found = {i: (tmp / f"found-{i}").read_text(encoding="utf-8").split() for i in range(3)}
    assert found == {0: [ready], 1: [ready, ready], 2: [ready]}, "a shard started unprepared"
    assert p.emu.wait_idle()
    assert_each_account_read_once(p.emu, START, FIRST_END)
    assert_tables_hold_served_rows(p.pg, p.schema, p.emu, FIRST_END)
    messages = step_messages(p.instance, first)
    assert any(
        "target-postgres: schema and tables ready for "
        "article_share, biz_share, share_day, share_hour" in m
        for m in messages
    )
    retried = [
        e.step_key for e in first.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert retried == ["run_shard[shard_1_of_3]"]
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
            APP_IDS, FIRST_END.isoformat()
        )
    for secret in SECRETS.values():
        assert secret not in reshard.stdout + reshard.stderr


def run_two_shards(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 shards after resharding, a later end date: each account reads from its lookback, once."""
    p.emu.reset_calls()
    monkeypatch.setenv("TAP_WECHAT_SHARE_END_DATE", SECOND_END.isoformat())
    third = run_job(p.instance, p.project, 2)
    assert third.success, failures(third)
    assert p.emu.wait_idle()
    resume = FIRST_END - dt.timedelta(days=LOOKBACK_DAYS - 1)
    assert_each_account_read_once(p.emu, resume, SECOND_END)
    new_days = (SECOND_END - FIRST_END).days
    assert all(len(read) == LOOKBACK_DAYS + new_days for read in hourly_days_read(p.emu).values())
    assert_tables_hold_served_rows(p.pg, p.schema, p.emu, SECOND_END)
    messages = step_messages(p.instance, third)
    for index, new_id in enumerate(shard_state_ids(ENVIRONMENT, 2)):
        assert_shard_logged(messages, index, 2)
        state = p.meltano.get_state(new_id)
        # Its own accounts read to SECOND_END; the other shard's passed through untouched.
        own = own_accounts(index, 2)
        assert bookmarks_by_account(state, "share_hour") == {
            app_id: (SECOND_END if app_id in own else FIRST_END).isoformat() for app_id in APP_IDS
        }


def refuse_four_shards_naming_the_latest_count(p: Pipeline) -> None:
    """States of 3 and of 2 shards, 2 run last: refused, resharding from 2 (not the largest, 3)."""
    p.emu.reset_calls()
    refusal = refused_in_plan(run_job(p.instance, p.project, 4))
    assert "states exist for 2, 3 shard(s) and the unsharded run" in refusal
    assert "scripts/reshard --from 2 --to 4 first" in refusal
    assert p.emu.calls == []


def test_dagster_job_first_run_into_a_new_schema_then_reshards_3_to_2(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = time.monotonic()
    for count in (2, 3):
        assert all(own_accounts(i, count) for i in range(count)), "a shard with no account"
    refuse_the_unsharded_state(pipeline)
    a_target_that_cannot_be_reached_fails_once(pipeline, monkeypatch)
    run_three_shards_into_a_new_schema(pipeline, tmp_path)
    reshard_3_to_2(pipeline)
    run_two_shards(pipeline, monkeypatch)
    refuse_four_shards_naming_the_latest_count(pipeline)
    print(f"\n[shards] six Dagster runs and a reshard in {time.monotonic() - started:.1f} s")
