"""End to end through the real ``meltano`` CLI: the tap against the WeChat emulator, loaded by the
real MeltanoLabs ``target-postgres`` into a real PostgreSQL.

How it is isolated: the session fixture ``meltano_project`` copies the project (``meltano.yml``,
``pyproject.toml``, the tap's source, ...; not ``.git``, ``.venv``, ``.meltano`` or ``output``)
into a temporary directory and runs ``meltano install tap-wechat-share target-postgres`` there
once per session. The plugins' virtual environments, Meltano's system database and the pipeline
state all live in that copy's own ``.meltano/``, so the developer's ``.meltano/`` is never read or
written, and every session starts with no state; the copy is removed at the end. The plugins come
from PyPI through uv (``venv.backend: uv``): about 10 s here (the tap is the copy's own source,
installed editable). The one run of two ``meltano run``s takes about 30 s.

Everything is configured through environment variables, as in production: ``TAP_WECHAT_SHARE_*``
for the tap (pointing it at the emulator) and ``TARGET_POSTGRES_*`` for the target (pointing it at
the server of the ``postgres`` fixture, in a schema made for the test). They override the ``dev``
environment's settings in ``meltano.yml``. Variables of the caller's shell that could change the
run (``TAP_WECHAT_SHARE_*``, ``TARGET_*``, ``MELTANO_*``, ``PG*``, ...) are removed first.
"""

# SQL here is built from the names of schemas and tables the tests make themselves.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.emulator import WeChatEmulator, china_today

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.postgres import PostgresServer

pytest_plugins = ("tests.postgres",)

REPO = Path(__file__).resolve().parents[1]
MELTANO = Path(sys.executable).with_name("meltano")

APP_ID = "wxe2e0000000000001"
APP_SECRET = "e2e-secret-not-a-real-one"
TODAY = dt.date(2024, 3, 20)
"""The emulator's today: every day the tests read is published (yesterday and before)."""
START = dt.date(2024, 3, 1)
FIRST_END = dt.date(2024, 3, 10)
SECOND_END = dt.date(2024, 3, 14)
LOOKBACK_DAYS = 3
"""The tap's default ``lookback_days``: a resumed run reads the 3 days up to the bookmark again."""

HOURLY = "/datacube/getusersharehour"
DAILY = "/datacube/getusershare"
ARTICLE = "/datacube/getarticleshare"
BIZ = "/datacube/getbizsummary"
STABLE_TOKEN = "/cgi-bin/stable_token"
LEGACY_TOKEN = "/cgi-bin/token"
STATE_ID = "dev:tap-wechat-share-to-target-postgres"

# Variables of the caller's shell that would change what meltano, the plugins or psql do.
SCRUBBED_PREFIXES = (
    "TAP_WECHAT_SHARE_",
    "TARGET_",
    "MELTANO_",
    "DEMO_",
    "PG",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)


def copy_as_cloned(source: Path, target: Path) -> None:
    """Copy what a fresh clone of ``source`` holds (with the work tree's changes) to ``target``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split(b"\0")):
        path = source / os.fsdecode(name)
        if path.is_file():  # not one deleted in the work tree
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


@dataclasses.dataclass(frozen=True)
class MeltanoProject:
    """A throwaway copy of the project with its plugins installed."""

    root: Path
    base_env: dict[str, str]
    install_seconds: float

    def run(self, *args: str, env: dict[str, str], timeout: float = 600) -> str:
        """Run ``meltano --environment=dev ARGS`` in the copy; return its standard output.

        Fails the test, showing the end of its output and log, if meltano exits non-zero.
        """
        out = subprocess.run(
            [str(MELTANO), "--environment=dev", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if out.returncode != 0:
            pytest.fail(
                f"meltano {' '.join(args)} exited {out.returncode}:\n"
                f"{out.stdout[-2000:]}\n{out.stderr[-8000:]}",
                pytrace=False,
            )
        return out.stdout


@pytest.fixture(scope="session")
def meltano_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeltanoProject]:
    """Copy the project to a temporary directory and ``meltano install`` it there, once.

    The copy (about 100 MB with its plugin environments) is removed at the end of the session.
    """
    if not MELTANO.exists():
        pytest.fail(f"meltano is not installed at {MELTANO}; run scripts/bootstrap")
    root = tmp_path_factory.mktemp("meltano") / "project"
    copy_as_cloned(REPO, root)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    base_env.update(
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_DISABLE_TRACKING="true",
        NO_COLOR="1",
    )
    started = time.monotonic()
    out = subprocess.run(
        [
            str(MELTANO),
            "install",
            "tap-wechat-share",
            "target-postgres",
            "target-duckdb",
            "dbt-postgres",
        ],
        cwd=root,
        env=base_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=900,
    )
    seconds = time.monotonic() - started
    if out.returncode != 0:
        pytest.fail(f"meltano install failed ({out.returncode}):\n{out.stdout[-6000:]}")
    print(f"\n[meltano] installed the plugins in {root} in {seconds:.1f} s")
    try:
        yield MeltanoProject(root=root, base_env=base_env, install_seconds=seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def wechat() -> Iterator[WeChatEmulator]:
    """The WeChat emulator, knowing the test app, with a fixed today."""
    emu = WeChatEmulator(apps={APP_ID: APP_SECRET}, today=TODAY).start()
    try:
        yield emu
    finally:
        emu.stop()


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def pipeline_env(
    project: MeltanoProject,
    emu: WeChatEmulator,
    pg: PostgresServer,
    schema: str,
    end_date: dt.date,
) -> dict[str, str]:
    """The environment of one ``meltano run``: the tap on the emulator, the target on ``pg``."""
    env = dict(project.base_env)
    env.update(
        TAP_WECHAT_SHARE_API_URL=emu.url,
        TAP_WECHAT_SHARE_APP_ID=APP_ID,
        TAP_WECHAT_SHARE_APP_SECRET=APP_SECRET,
        TAP_WECHAT_SHARE_START_DATE=START.isoformat(),
        TAP_WECHAT_SHARE_END_DATE=end_date.isoformat(),
        TARGET_POSTGRES_HOST=pg.host,
        TARGET_POSTGRES_PORT=str(pg.port),
        TARGET_POSTGRES_USER=pg.user,
        TARGET_POSTGRES_PASSWORD=pg.password,
        TARGET_POSTGRES_DATABASE=pg.database,
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema,
        # dbt-postgres reads the TARGET_POSTGRES_* connection and source schema by default;
        # its models go into the test's schema too, so that they are dropped with it.
        DBT_POSTGRES_SCHEMA=schema,
    )
    return env


HourRow = tuple[str, str, int, int, int, int]
DayRow = tuple[str, str, int, int, int]


def expected_hour_rows(emu: WeChatEmulator, last: dt.date) -> set[HourRow]:
    """What ``share_hour`` must hold after reading START..last: the emulator's rows."""
    return {
        (
            APP_ID,
            str(row["ref_date"]),
            int(row["ref_hour"]),
            int(row["share_scene"]),
            int(row["share_count"]),
            int(row["share_user"]),
        )
        for day in days(START, last)
        for row in emu.hourly_rows(APP_ID, day)
    }


def expected_day_rows(emu: WeChatEmulator, last: dt.date) -> set[DayRow]:
    """What ``share_day`` must hold after reading START..last: the emulator's rows."""
    return {
        (
            APP_ID,
            str(row["ref_date"]),
            int(row["share_scene"]),
            int(row["share_count"]),
            int(row["share_user"]),
        )
        for day in days(START, last)
        for row in emu.daily_rows(APP_ID, day)
    }


def _text(value: str | None) -> str:
    assert value is not None, "a NULL in a key or count column"
    return value


def loaded_hour_rows(pg: PostgresServer, schema: str) -> list[HourRow]:
    """Every row of ``share_hour`` (duplicates kept, so that they show)."""
    rows = pg.query(
        "SELECT app_id, ref_date, ref_hour, share_scene, share_count, share_user "
        f'FROM "{schema}".share_hour'
    )
    return [
        (_text(a), _text(d), int(_text(h)), int(_text(s)), int(_text(c)), int(_text(u)))
        for a, d, h, s, c, u in rows
    ]


def loaded_day_rows(pg: PostgresServer, schema: str) -> list[DayRow]:
    """Every row of ``share_day`` (duplicates kept, so that they show)."""
    rows = pg.query(
        f'SELECT app_id, ref_date, share_scene, share_count, share_user FROM "{schema}".share_day'
    )
    return [
        (_text(a), _text(d), int(_text(s)), int(_text(c)), int(_text(u))) for a, d, s, c, u in rows
    ]


def assert_tables_match(
    pg: PostgresServer, schema: str, emu: WeChatEmulator, last: dt.date
) -> None:
    """Both tables hold exactly the emulator's rows for START..last, each exactly once."""
    hour_rows = loaded_hour_rows(pg, schema)
    expected_hours = expected_hour_rows(emu, last)
    assert expected_hours, (
        "the emulator serves no rows for these days: the test would prove nothing"
    )
    assert len(hour_rows) == len(set(hour_rows)), "share_hour holds a row more than once"
    assert set(hour_rows) == expected_hours, (
        f"share_hour differs from the emulator: {len(set(hour_rows) - expected_hours)} extra, "
        f"{len(expected_hours - set(hour_rows))} missing"
    )
    day_rows = loaded_day_rows(pg, schema)
    expected_days = expected_day_rows(emu, last)
    assert len(day_rows) == len(set(day_rows)), "share_day holds a row more than once"
    assert set(day_rows) == expected_days, (
        f"share_day differs from the emulator: {len(set(day_rows) - expected_days)} extra, "
        f"{len(expected_days - set(day_rows))} missing"
    )
    # The same, keyed on the primary keys: no key is loaded twice.
    for table, key in (
        ("share_hour", "app_id, ref_date, ref_hour, share_scene"),
        ("share_day", "app_id, ref_date, share_scene"),
    ):
        total, distinct = pg.query(
            f'SELECT count(*), count(DISTINCT ({key})) FROM "{schema}".{table}'
        )[0]
        assert total == distinct, f"{table}: {total} rows but {distinct} distinct keys"


def assert_daily_windows(calls: list[Any], first: dt.date, last: dt.date) -> None:
    """The getusershare calls cover first..last once, in windows of at most 7 days."""
    covered: list[dt.date] = []
    for call in calls:
        assert call.outcome == "ok", call
        begin = dt.date.fromisoformat(call.begin_date)
        end = dt.date.fromisoformat(call.end_date)
        assert begin <= end, call
        assert (end - begin).days + 1 <= 7, call
        covered.extend(days(begin, end))
    assert sorted(covered) == days(first, last)


def bookmarks(state_json: str) -> dict[str, set[str]]:
    """Stream name -> the bookmarks (``replication_key_value``) of its partitions in a state."""
    state = json.loads(state_json[state_json.index("{") :])
    found: dict[str, set[str]] = {}
    for stream, stream_state in state.get("singer_state", state).get("bookmarks", {}).items():
        values = {
            str(part["replication_key_value"])[:10]
            for part in stream_state.get("partitions", [])
            if "replication_key_value" in part
        }
        if "replication_key_value" in stream_state:
            values.add(str(stream_state["replication_key_value"])[:10])
        found[stream] = values
    return found


def test_postgres_fixture_serves_a_fresh_schema(
    postgres: PostgresServer, postgres_schema: str
) -> None:
    assert postgres.scalar("SELECT 1") == "1"
    tables = postgres.scalar(
        f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{postgres_schema}'"
    )
    assert tables == "0"
    postgres.query(f'CREATE TABLE "{postgres_schema}".t (a int, b text)')
    postgres.query(f"""INSERT INTO "{postgres_schema}".t VALUES (1, NULL), (2, 'x,"y"')""")
    assert postgres.query(f'SELECT a, b FROM "{postgres_schema}".t ORDER BY a') == [
        ("1", None),
        ("2", 'x,"y"'),
    ]
    assert postgres.table_exists(postgres_schema, "t")


def test_meltano_run_into_postgres_then_incremental(
    meltano_project: MeltanoProject,
    wechat: WeChatEmulator,
    postgres: PostgresServer,
    postgres_schema: str,
) -> None:
    schema = postgres_schema
    emulator = wechat

    # ---- First run: START..FIRST_END, no state yet.
    started = time.monotonic()
    meltano_project.run(
        "run",
        "tap-wechat-share",
        "target-postgres",
        env=pipeline_env(meltano_project, emulator, postgres, schema, FIRST_END),
    )
    first_seconds = time.monotonic() - started
    assert emulator.wait_idle()

    hour_calls = emulator.calls_to(HOURLY)
    assert all(call.outcome == "ok" for call in hour_calls), hour_calls
    assert all(call.app_id == APP_ID for call in emulator.calls), emulator.calls
    # getusersharehour spans one day: exactly one call per day, each day once.
    assert all(call.begin_date == call.end_date for call in hour_calls), hour_calls
    assert sorted(str(call.begin_date) for call in hour_calls) == [
        day.isoformat() for day in days(START, FIRST_END)
    ]
    assert_daily_windows(emulator.calls_to(DAILY), START, FIRST_END)
    # One stable token for the whole run (both streams share it), never the legacy endpoint.
    assert len(emulator.calls_to(STABLE_TOKEN)) == 1
    assert emulator.calls_to(LEGACY_TOKEN) == []

    assert postgres.table_exists(schema, "share_hour")
    assert postgres.table_exists(schema, "share_day")
    assert_tables_match(postgres, schema, emulator, FIRST_END)
    state = meltano_project.run(
        "state",
        "get",
        STATE_ID,
        env=pipeline_env(meltano_project, emulator, postgres, schema, FIRST_END),
    )
    assert bookmarks(state) == {
        "share_hour": {FIRST_END.isoformat()},
        "share_day": {FIRST_END.isoformat()},
        # Their data begins on 2025-11-01: no day to read in 2024.
        "article_share": set(),
        "biz_share": set(),
    }

    # ---- Second run, later end date: the lookback days and the new days only.
    emulator.reset_calls()
    started = time.monotonic()
    meltano_project.run(
        "run",
        "tap-wechat-share",
        "target-postgres",
        env=pipeline_env(meltano_project, emulator, postgres, schema, SECOND_END),
    )
    second_seconds = time.monotonic() - started
    assert emulator.wait_idle()

    resume = FIRST_END - dt.timedelta(days=LOOKBACK_DAYS - 1)  # the 3 days up to the bookmark
    hour_calls = emulator.calls_to(HOURLY)
    assert all(call.outcome == "ok" for call in hour_calls), hour_calls
    assert all(call.begin_date == call.end_date for call in hour_calls), hour_calls
    assert sorted(str(call.begin_date) for call in hour_calls) == [
        day.isoformat() for day in days(resume, SECOND_END)
    ]
    assert len(hour_calls) == LOOKBACK_DAYS + (SECOND_END - FIRST_END).days
    assert_daily_windows(emulator.calls_to(DAILY), resume, SECOND_END)
    assert len(emulator.calls_to(STABLE_TOKEN)) == 1
    assert emulator.calls_to(LEGACY_TOKEN) == []

    assert_tables_match(postgres, schema, emulator, SECOND_END)
    state = meltano_project.run(
        "state",
        "get",
        STATE_ID,
        env=pipeline_env(meltano_project, emulator, postgres, schema, SECOND_END),
    )
    assert bookmarks(state) == {
        "share_hour": {SECOND_END.isoformat()},
        "share_day": {SECOND_END.isoformat()},
        "article_share": set(),
        "biz_share": set(),
    }

    print(
        f"\n[meltano] install {meltano_project.install_seconds:.1f} s, first run "
        f"{first_seconds:.1f} s, incremental run {second_seconds:.1f} s"
    )


ACCOUNT_SECRETS = {
    "wxe2e00000000000a1": "e2e-secret-a-not-real",
    "wxe2e00000000000b2": "e2e-secret-b-not-real",
    "wxe2e00000000000c3": "e2e-secret-c-not-real",
    "wxe2e00000000000d4": "e2e-secret-d-not-real",
}


def test_meltano_run_four_accounts_one_failing_then_each_resumes(
    meltano_project: MeltanoProject,
    postgres: PostgresServer,
    postgres_schema: str,
    tmp_path: Path,
) -> None:
    """Issue 3's acceptance run, through Meltano into PostgreSQL.

    Four accounts: app_secret, a ready token, a token command (a stand-in for a central token
    service) and a wrong secret. The three good ones load exactly and get bookmarks; the run ends
    non-zero naming the failing one last; a second run resumes each from its own bookmark.
    """
    a, b, c, d = ACCOUNT_SECRETS
    schema = postgres_schema
    with WeChatEmulator(apps=ACCOUNT_SECRETS, today=TODAY) as emu:
        token_service = tmp_path / "token_service.py"
        token_service.write_text(
            "import json, urllib.request\n"
            f"body = json.dumps({{'grant_type': 'client_credential', 'appid': {c!r},"
            f" 'secret': {ACCOUNT_SECRETS[c]!r}, 'force_refresh': False}}).encode()\n"
            f"print(json.loads(urllib.request.urlopen({emu.url + STABLE_TOKEN!r}, body).read())"
            "['access_token'])\n"
        )
        accounts = [
            {"app_id": a, "app_secret": ACCOUNT_SECRETS[a]},
            {"app_id": b, "access_token": emu.issue_token(b)},
            {"app_id": c, "access_token_command": f"{sys.executable} {token_service}"},
            {"app_id": d, "app_secret": "a-wrong-secret"},
        ]

        def env(end: dt.date) -> dict[str, str]:
            run_env = pipeline_env(meltano_project, emu, postgres, schema, end)
            # The dev environment's demo app is blanked: accounts excludes top-level app_id.
            run_env["TAP_WECHAT_SHARE_APP_ID"] = ""
            run_env["TAP_WECHAT_SHARE_APP_SECRET"] = ""
            run_env["TAP_WECHAT_SHARE_ACCOUNTS"] = json.dumps(accounts)
            return run_env

        # The Meltano project is shared by the session: start from no state.
        meltano_project.run("state", "clear", "--force", STATE_ID, env=env(FIRST_END))

        first = subprocess.run(
            [str(MELTANO), "--environment=dev", "run", "tap-wechat-share", "target-postgres"],
            cwd=meltano_project.root,
            env=env(FIRST_END),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert first.returncode != 0
        assert "1 of 4 accounts failed" in first.stderr
        assert f"{d}" in first.stderr.split("1 of 4 accounts failed", 1)[1]
        assert "errcode 40125" in first.stderr
        for secret in [*ACCOUNT_SECRETS.values(), accounts[1]["access_token"]]:
            assert secret not in first.stderr + first.stdout

        hours = loaded_hour_rows(postgres, schema)
        assert len(hours) == len(set(hours))
        for app_id in (a, b, c):
            served = {
                (
                    app_id,
                    str(r["ref_date"]),
                    int(r["ref_hour"]),
                    int(r["share_scene"]),
                    int(r["share_count"]),
                    int(r["share_user"]),
                )
                for day in days(START, FIRST_END)
                for r in emu.hourly_rows(app_id, day)
            }
            assert {row for row in hours if row[0] == app_id} == served
        assert not [row for row in hours if row[0] == d]

        # Meltano keeps the good accounts' bookmarks of the failed run.
        state = meltano_project.run("state", "get", STATE_ID, env=env(FIRST_END))
        state_json = json.loads(state[state.index("{") :])
        singer_state = state_json.get("singer_state", state_json)
        marks = {
            part["context"]["app_id"]: part.get("replication_key_value")
            for part in singer_state["bookmarks"]["share_hour"]["partitions"]
        }
        assert {k: v for k, v in marks.items() if v} == dict.fromkeys((a, b, c), "2024-03-10")

        # Second run, the secret fixed: each account resumes from its own bookmark.
        emu.reset_calls()
        accounts[3]["app_secret"] = ACCOUNT_SECRETS[d]
        meltano_project.run("run", "tap-wechat-share", "target-postgres", env=env(SECOND_END))
        firsts: dict[str, str] = {}
        for call in emu.calls_to(HOURLY):
            assert call.app_id is not None
            assert call.begin_date is not None
            firsts[call.app_id] = min(firsts.get(call.app_id, "9999"), call.begin_date)
        resume = (FIRST_END - dt.timedelta(days=LOOKBACK_DAYS - 1)).isoformat()
        assert firsts == {a: resume, b: resume, c: resume, d: START.isoformat()}
        hours = loaded_hour_rows(postgres, schema)
        assert len(hours) == len(set(hours))
        assert {row[0] for row in hours} == set(ACCOUNT_SECRETS)


# Meltano as users drive it ---------------------------------------------------------------------


def test_meltano_yml_is_kept_in_the_order_meltano_writes(tmp_path: Path) -> None:
    """`meltano select` changes only what it selects, not the order of the whole file."""
    shutil.copy(REPO / "meltano.yml", tmp_path / "meltano.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env |= {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1"}
    subprocess.run(
        [str(MELTANO), "select", "tap-wechat-share", "share_hour", "*"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    before = (REPO / "meltano.yml").read_text().splitlines()
    after = (tmp_path / "meltano.yml").read_text().splitlines()
    added = [line for line in after if line not in before]
    assert added == ["    select:", "    - share_hour.*"]
    assert [line for line in after if line in before] == before


def test_meltano_config_test_shows_the_taps_own_reason(meltano_project: MeltanoProject) -> None:
    env = meltano_project.base_env | {"TAP_WECHAT_SHARE_LOOKBACK_DAYS": "-1"}
    out = subprocess.run(
        [str(MELTANO), "--environment=dev", "config", "test", "tap-wechat-share"],
        cwd=meltano_project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode != 0
    assert "lookback_days: -1 is not allowed; give a whole number of at least 0" in (
        out.stdout + out.stderr
    )


def test_the_dev_environment_runs_into_duckdb_with_no_variable(
    meltano_project: MeltanoProject,
) -> None:
    """`meltano run tap-wechat-share target-duckdb`, as meltano.yml's header shows it."""
    # The emulator where the dev environment expects it, with its demo app. The dev environment
    # reads from its start_date to the latest published day: the emulator's today is China's.
    emulator = WeChatEmulator(
        {"wxdemo0000000001": "emulator-demo-secret"}, today=china_today(), port=8765
    )
    with emulator:
        out = subprocess.run(
            [str(MELTANO), "run", "tap-wechat-share", "target-duckdb"],
            cwd=meltano_project.root,
            env=meltano_project.base_env,  # no TAP_, TARGET_, MELTANO_ or DEMO_ variable
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    assert out.returncode == 0, out.stderr[-3000:]
    python = meltano_project.root / ".meltano/loaders/target-duckdb/venv/bin/python"
    count = subprocess.run(
        [
            str(python),
            "-c",
            (
                "import duckdb; print(duckdb.connect('output/warehouse.duckdb', read_only=True)"
                ".execute(\"select count(*) from wechat.share_hour where ref_date = '2026-11-01'\")"
                ".fetchone()[0])"
            ),
        ],
        cwd=meltano_project.root,
        capture_output=True,
        text=True,
        check=True,
    )
    served = len(emulator.hourly_rows("wxdemo0000000001", dt.date(2026, 11, 1)))
    assert served > 0
    assert int(count.stdout) == served


ARTICLE_TODAY = dt.date(2025, 11, 9)
ARTICLE_START = dt.date(2025, 10, 30)
"""Before getarticleshare's first day (2025-11-01): those days are never asked of it."""
ARTICLE_END = dt.date(2025, 11, 8)
"""Yesterday for the emulator: the day WeChat says is not final in the first run (a day with
articles shared, so that its provisional figures differ from the final ones)."""


def loaded_article_rows(pg: PostgresServer, schema: str) -> list[tuple[str, str, str, int]]:
    """Every row of ``article_share`` (duplicates kept, so that they show)."""
    rows = pg.query(f'SELECT app_id, ref_date, msgid, share_user FROM "{schema}".article_share')
    return [(_text(a), _text(d), _text(m), int(_text(u))) for a, d, m, u in rows]


def served_article_rows(
    emu: WeChatEmulator, first: dt.date, last: dt.date, *, delayed: dt.date | None = None
) -> set[tuple[str, str, str, int]]:
    """What ``article_share`` must hold for first..last (``delayed``: that day is provisional)."""
    return {
        (APP_ID, str(row["ref_date"]), str(row["msgid"]), int(row["detail"]["share_user"]))  # type: ignore[index]
        for day in days(first, last)
        for row in emu.article_rows(APP_ID, day, delayed=day == delayed)
    }


def loaded_biz_rows(pg: PostgresServer, schema: str) -> list[tuple[str, str, int]]:
    """Every row of ``biz_share`` (duplicates kept, so that they show)."""
    rows = pg.query(f'SELECT app_id, ref_date, share_user FROM "{schema}".biz_share')
    return [(_text(a), _text(d), int(_text(u))) for a, d, u in rows]


def served_biz_rows(
    emu: WeChatEmulator, first: dt.date, last: dt.date, *, delayed: dt.date | None = None
) -> set[tuple[str, str, int]]:
    """What ``biz_share`` must hold for first..last (``delayed``: that day is provisional)."""
    return {
        (APP_ID, str(row["ref_date"]), int(row["detail"]["share_user"]))  # type: ignore[index]
        for day in days(first, last)
        for row in emu.biz_rows(APP_ID, day, delayed=day == delayed)
    }


def test_meltano_run_merges_a_delayed_day_and_deselects_a_retired_stream(
    meltano_project: MeltanoProject, postgres: PostgresServer, postgres_schema: str
) -> None:
    """Issues 12, 21 and 22 through Meltano into PostgreSQL.

    First run: WeChat says the latest day is not final (``is_delay``) and has retired
    getusershare. The run ends non-zero with one line naming biz_share; article_share and
    biz_share hold the provisional figures (never asked before 2025-11-01) and share_hour
    loads. The two ``meltano select`` commands of that line are run as a user would (no
    --environment). Second run: share_day is not asked, the delayed day is read again (in both
    streams) and the target's merge leaves its final figures, once. That run is
    ``meltano run tap-wechat-share target-postgres dbt-postgres:run dbt-postgres:test``: the dbt
    models are built and tested over every stream (with share_day rows for two days put in by
    hand), and each of their rows must be what the emulator's figures make of them.
    """
    schema = postgres_schema
    meltano_yml = meltano_project.root / "meltano.yml"
    original = meltano_yml.read_text()
    with WeChatEmulator(apps={APP_ID: APP_SECRET}, today=ARTICLE_TODAY) as emu:
        emu.delay_latest = True
        emu.retire(DAILY)
        env = pipeline_env(meltano_project, emu, postgres, schema, ARTICLE_END)
        env["TAP_WECHAT_SHARE_START_DATE"] = ARTICLE_START.isoformat()
        # No lookback: only the bookmark, held before the delayed day, brings that day back.
        env["TAP_WECHAT_SHARE_LOOKBACK_DAYS"] = "0"
        meltano_project.run("state", "clear", "--force", STATE_ID, env=env)
        try:
            first = subprocess.run(
                [str(MELTANO), "--environment=dev", "run", "tap-wechat-share", "target-postgres"],
                cwd=meltano_project.root,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert first.returncode != 0
            lines = [
                line for line in first.stderr.splitlines() if "has retired its endpoint" in line
            ]
            assert len(lines) == 1, first.stderr[-4000:]
            assert "share_day" in lines[0]
            assert "biz_share is the stream that replaces it" in lines[0]
            first_day = dt.date(2025, 11, 1)
            assert min(str(c.begin_date) for c in emu.calls_to(ARTICLE)) == first_day.isoformat()
            assert sorted(str(c.begin_date) for c in emu.calls_to(BIZ)) == [
                day.isoformat() for day in days(first_day, ARTICLE_END)
            ]
            assert set(loaded_article_rows(postgres, schema)) == served_article_rows(
                emu, first_day, ARTICLE_END, delayed=ARTICLE_END
            )
            assert set(loaded_biz_rows(postgres, schema)) == served_biz_rows(
                emu, first_day, ARTICLE_END, delayed=ARTICLE_END
            )
            assert set(loaded_hour_rows(postgres, schema)) == expected_hour_rows_from(
                emu, ARTICLE_START, ARTICLE_END
            )

            commands = re.findall(r"`(meltano select [^`]+)`", lines[0])
            assert len(commands) == 2
            for command in commands:
                subprocess.run(
                    [str(MELTANO), *shlex.split(command)[1:]],
                    cwd=meltano_project.root,
                    env=env,
                    capture_output=True,
                    check=True,
                    timeout=120,
                )

            # For the dbt models (issue 22): share_day rows for two days, as if getusershare had
            # answered them before its retirement: one before biz_share's first day (the sharers
            # come from share_day), one after (biz_share's win); every day's figures come from
            # share_day where it has the day, else from share_hour. The second run reads neither
            # day again.
            share_days = (ARTICLE_START + dt.timedelta(days=1), first_day + dt.timedelta(days=2))
            day_rows = insert_share_day_rows(postgres, schema, emu, share_days)

            emu.delay_latest = False
            emu.reset_calls()
            # Load and model in one command (issue 22), then the models' tests.
            meltano_project.run(
                "run",
                "tap-wechat-share",
                "target-postgres",
                "dbt-postgres:run",
                "dbt-postgres:test",
                env=env,
            )
            assert emu.calls_to(DAILY) == []
            assert [c.begin_date for c in emu.calls_to(ARTICLE)] == [ARTICLE_END.isoformat()]
            articles = loaded_article_rows(postgres, schema)
            assert len(articles) == len(set(articles))
            assert set(articles) == served_article_rows(emu, first_day, ARTICLE_END)
            assert set(articles) != served_article_rows(
                emu, first_day, ARTICLE_END, delayed=ARTICLE_END
            )
            assert [c.begin_date for c in emu.calls_to(BIZ)] == [ARTICLE_END.isoformat()]
            biz = loaded_biz_rows(postgres, schema)
            assert len(biz) == len(set(biz))
            assert set(biz) == served_biz_rows(emu, first_day, ARTICLE_END)
            assert set(biz) != served_biz_rows(emu, first_day, ARTICLE_END, delayed=ARTICLE_END)
            assert set(loaded_hour_rows(postgres, schema)) == expected_hour_rows_from(
                emu, ARTICLE_START, ARTICLE_END
            )
            assert_models_match(
                postgres,
                schema,
                hours=spanning_hour_rows(emu),
                days=day_rows,
                articles=served_article_rows(emu, first_day, ARTICLE_END),
                biz=served_biz_rows(emu, first_day, ARTICLE_END),
            )
        finally:
            meltano_yml.write_text(original)


def insert_share_day_rows(
    pg: PostgresServer, schema: str, emu: WeChatEmulator, share_days: tuple[dt.date, ...]
) -> set[DayRow]:
    """Insert the emulator's getusershare rows of ``share_days`` into ``share_day``; return them."""
    rows = {
        (
            APP_ID,
            str(r["ref_date"]),
            int(r["share_scene"]),
            int(r["share_count"]),
            int(r["share_user"]),
        )
        for day in share_days
        for r in emu.daily_rows(APP_ID, day)
    }
    assert {row[1] for row in rows} == {str(day) for day in share_days}, "a day without rows"
    pg.query(
        f'INSERT INTO "{schema}".share_day '
        "(app_id, ref_date, share_scene, share_count, share_user) VALUES "
        + ", ".join(f"('{a}', '{d}', {s}, {c}, {u})" for a, d, s, c, u in rows)
    )
    return rows


def spanning_hour_rows(emu: WeChatEmulator) -> set[HourRow]:
    """The emulator's getusersharehour rows of ARTICLE_START..ARTICLE_END.

    They hold a day without any share inside their span: wechat_share_by_hour counts it as a day
    of 0 shares.
    """
    hours = expected_hour_rows_from(emu, ARTICLE_START, ARTICLE_END)
    hour_days = sorted({row[1] for row in hours})
    assert len(hour_days) < (ARTICLE_END - ARTICLE_START).days + 1
    assert (hour_days[0], hour_days[-1]) == (str(ARTICLE_START), str(ARTICLE_END))
    return hours


def expected_hour_rows_from(emu: WeChatEmulator, first: dt.date, last: dt.date) -> set[HourRow]:
    """The emulator's getusersharehour rows for first..last."""
    return {
        (
            APP_ID,
            str(row["ref_date"]),
            int(row["ref_hour"]),
            int(row["share_scene"]),
            int(row["share_count"]),
            int(row["share_user"]),
        )
        for day in days(first, last)
        for row in emu.hourly_rows(APP_ID, day)
    }


# The dbt models (issue 22) ----------------------------------------------------------------------

ArticleRow = tuple[str, str, str, int]
BizRow = tuple[str, str, int]
Text = tuple[str | None, ...]


def model_rows(pg: PostgresServer, schema: str, model: str, columns: str) -> list[Text]:
    """Every row of the dbt model ``model`` (as psql's text, NULL as None)."""
    return pg.query(f'SELECT {columns} FROM "{schema}".{model}')


def _bounds(parts: list[int]) -> tuple[str | None, str, str]:
    """share_user (exact for one part only), share_user_low, share_user_high, as text."""
    exact = str(parts[0]) if len(parts) == 1 else None
    return exact, str(max(parts)), str(sum(parts))


def assert_models_match(
    pg: PostgresServer,
    schema: str,
    *,
    hours: set[HourRow],
    days: set[DayRow],
    articles: set[ArticleRow],
    biz: set[BizRow],
) -> None:
    """The four marts hold exactly what the WeChat rows loaded (the emulator's) make of them."""
    assert hours, "no hourly rows: the test would prove nothing"
    # wechat_share_daily: share_day's rows where it has the day, else the hours' sums.
    day_keys = {(app, day) for app, day, *_ in days}
    hour_sums: dict[tuple[str, str, int], int] = {}
    for app, day, _hour, scene, count, _users in hours:
        if (app, day) not in day_keys:
            hour_sums[app, day, scene] = hour_sums.get((app, day, scene), 0) + count
    expected_daily = {
        (app, day, str(scene), str(count), str(users), "share_day")
        for app, day, scene, count, users in days
    } | {
        (app, day, str(scene), str(count), None, "share_hour")
        for (app, day, scene), count in hour_sums.items()
    }
    daily = model_rows(
        pg,
        schema,
        "wechat_share_daily",
        "app_id, ref_date, share_scene, share_count, share_user, source",
    )
    assert len(daily) == len(set(daily)), "wechat_share_daily holds a row twice"
    assert set(daily) == expected_daily

    # wechat_share_by_hour: totals per hour and scene, days = the account's span of days.
    totals: dict[tuple[str, int, int], int] = {}
    span: dict[str, list[dt.date]] = {}
    for app, day, hour, scene, count, _users in hours:
        totals[app, hour, scene] = totals.get((app, hour, scene), 0) + count
        span.setdefault(app, []).append(dt.date.fromisoformat(day))
    loaded_days = {app: (max(d) - min(d)).days + 1 for app, d in span.items()}
    expected_by_hour = {
        (
            app,
            str(hour),
            str(scene),
            str(loaded_days[app]),
            str(total),
            str((Decimal(total) / loaded_days[app]).quantize(Decimal("0.01"), ROUND_HALF_UP)),
        )
        for (app, hour, scene), total in totals.items()
    }
    by_hour = model_rows(
        pg,
        schema,
        "wechat_share_by_hour",
        "app_id, ref_hour, share_scene, days, share_count_total, share_count_avg",
    )
    assert set(by_hour) == expected_by_hour
    assert len(by_hour) == len(expected_by_hour)

    # wechat_article_share_totals: per article, its days with sharers and their sum.
    per_article: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for app, day, msgid, users in articles:
        per_article.setdefault((app, msgid), []).append((day, users))
    expected_articles = {
        (
            app,
            msgid,
            min(day for day, users in shared if users > 0),
            max(day for day, users in shared if users > 0),
            str(sum(1 for _day, users in shared if users > 0)),
            str(sum(users for _day, users in shared)),
        )
        for (app, msgid), shared in per_article.items()
    }
    article_totals = model_rows(
        pg,
        schema,
        "wechat_article_share_totals",
        "app_id, msgid, first_shared, last_shared, days_shared, share_user_total",
    )
    assert len(article_totals) == len(expected_articles)
    assert set(article_totals) == expected_articles

    # wechat_account_sharers_daily: biz_share, else share_day's scenes, else share_hour's parts.
    parts: dict[tuple[str, str], tuple[str, list[int]]] = {}
    for app, day, _hour, _scene, _count, users in hours:
        parts.setdefault((app, day), ("share_hour", []))[1].append(users)
    for app, day, _scene, _count, users in days:
        if parts.get((app, day), ("",))[0] != "share_day":
            parts[app, day] = ("share_day", [])
        parts[app, day][1].append(users)
    for app, day, users in biz:
        parts[app, day] = ("biz_share", [users])
    expected_sharers = {
        (app, day, *_bounds(users), source) for (app, day), (source, users) in parts.items()
    }
    sharers = model_rows(
        pg,
        schema,
        "wechat_account_sharers_daily",
        "app_id, ref_date, share_user, share_user_low, share_user_high, source",
    )
    assert len(sharers) == len(expected_sharers)
    assert set(sharers) == expected_sharers
