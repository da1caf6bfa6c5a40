"""The tap as a team adopts it: the built wheel, a new Meltano project, the README's first load.

* ``uv build`` makes an sdist and a wheel (built once per module, into a temporary directory);
  the wheel installs into a clean virtual environment and ``tap-wechat-share --about`` runs there.
* A new project: ``meltano init`` in an empty directory, the tap added from ``plugin.yml`` with
  ``--from-ref`` and its ``pip_url`` pointed at the wheel (as the README says), target-postgres
  added the same way from a definition file (this project's own, taken from ``meltano.yml``),
  then ``meltano run tap-wechat-share target-postgres`` against the emulator into PostgreSQL.
* The README's first-load block, extracted from README.md and run with bash exactly as written,
  in this checkout, with the emulator's and a throwaway database's values in the variables the
  block reads (and ``TAP_WECHAT_SHARE_API_URL`` and an end date, which it leaves alone).
  Meltano's system directory goes to a temporary directory (``MELTANO_SYS_DIR_ROOT``), so the
  checkout's ``.meltano/`` is never touched; a test checks that ``git status`` is unchanged.

Packages come through uv from its cache where it can (``--offline``), else from the index, as
``meltano install`` does. PostgreSQL is the session's server (``tests/postgres.py``); the README's
block gets a database of its own there (its schema, ``wechat``, is fixed), so with
``TAP_WECHAT_SHARE_TEST_PG_DSN`` the user needs the CREATEDB privilege.
"""

# SQL here is built from the names of schemas and databases the tests make themselves.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import tomllib
from ruamel.yaml import YAML

from tests.conftest import ROOT
from tests.emulator import (
    ARTICLE_PATH,
    DAILY_PATH,
    HOURLY_PATH,
    LEGACY_TOKEN_PATH,
    STABLE_TOKEN_PATH,
    WeChatEmulator,
)
from tests.test_meltano_e2e import SCRUBBED_PREFIXES

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.postgres import PostgresServer

pytest_plugins = ("tests.postgres",)

MELTANO = str(Path(sys.executable).with_name("meltano"))
PLUGIN_YML = str(ROOT / "plugin.yml")
UV = ROOT / ".tools" / "bin" / "uv"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]

APP_ID = "wxadopt000000001"
APP_SECRET = "adoption-secret-not-a-real-one"
TODAY = dt.date(2025, 11, 10)
"""The emulator's today; the days read are published ones."""
START = dt.date(2025, 11, 1)
"""The README block's start_date (and getarticleshare's first day)."""
END = dt.date(2025, 11, 4)


def uv(*args: str, cwd: Path = ROOT) -> None:
    """Run uv from its cache (``--offline``) if it can, else from the index."""
    command = [str(UV) if UV.exists() else "uv", *args]
    offline = subprocess.run([*command, "--offline"], cwd=cwd, capture_output=True, check=False)
    if offline.returncode != 0:
        run(command, cwd, dict(os.environ))


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would change Meltano, uv or the plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", NO_COLOR="1", **extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; fail the test with the end of its output if it fails."""
    out = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if out.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {out.returncode}:\n{out.stdout[-3000:]}\n"
            f"{out.stderr[-6000:]}",
            pytrace=False,
        )
    return out.stdout


def meltano(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """Run ``meltano ARGS`` in ``cwd``; fail the test if it fails."""
    return run([MELTANO, *args], cwd, env)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``uv build``'s sdist and wheel of this checkout, in a directory of their own."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    uv("build", "--quiet", "--out-dir", str(out))
    print(f"\n[adoption] uv build in {time.monotonic() - started:.1f} s")
    return out


@pytest.fixture
def wechat() -> Iterator[WeChatEmulator]:
    emu = WeChatEmulator(apps={APP_ID: APP_SECRET}, today=TODAY).start()
    try:
        yield emu
    finally:
        emu.stop()


def days() -> list[dt.date]:
    return [START + dt.timedelta(days=n) for n in range((END - START).days + 1)]


def expected_rows(emu: WeChatEmulator) -> dict[str, set[tuple[str, ...]]]:
    """The emulator's rows for START..END per stream, keyed as the tables are."""
    hour: set[tuple[str, ...]] = {
        (APP_ID, str(day), str(r["ref_hour"]), str(r["share_scene"]), str(r["share_count"]))
        for day in days()
        for r in emu.hourly_rows(APP_ID, day)
    }
    daily: set[tuple[str, ...]] = {
        (APP_ID, str(day), str(r["share_scene"]), str(r["share_count"]), str(r["share_user"]))
        for day in days()
        for r in emu.daily_rows(APP_ID, day)
    }
    article: set[tuple[str, ...]] = {
        (APP_ID, str(day), str(r["msgid"]), str(cast("dict[str, int]", r["detail"])["share_user"]))
        for day in days()
        for r in emu.article_rows(APP_ID, day)
    }
    return {"share_hour": hour, "share_day": daily, "article_share": article}


def loaded_rows(pg: PostgresServer, schema: str) -> dict[str, list[tuple[str | None, ...]]]:
    """What the tables hold, duplicates kept, in the same shape as :func:`expected_rows`."""
    columns = {
        "share_hour": "app_id, ref_date, ref_hour, share_scene, share_count",
        "share_day": "app_id, ref_date, share_scene, share_count, share_user",
        "article_share": "app_id, ref_date, msgid, share_user",
    }
    return {
        table: pg.query(f'SELECT {cols} FROM "{schema}".{table}') for table, cols in columns.items()
    }


def assert_loaded_once(pg: PostgresServer, schema: str, emu: WeChatEmulator) -> None:
    """Every stream's table holds the emulator's rows for START..END, each once."""
    expected = expected_rows(emu)
    for table, rows in loaded_rows(pg, schema).items():
        assert expected[table], f"the emulator serves no {table} rows: the test proves nothing"
        assert len(rows) == len(set(rows)), f"{table} holds a row more than once"
        assert set(rows) == expected[table], f"{table} differs from the emulator"
    assert [c.app_id for c in emu.calls_to(STABLE_TOKEN_PATH)] == [APP_ID]
    assert emu.calls_to(LEGACY_TOKEN_PATH) == []
    for path in (HOURLY_PATH, DAILY_PATH, ARTICLE_PATH):
        assert emu.calls_to(path), f"no call to {path}"


# --------------------------------------------------------------------------- packaging


def test_the_sdist_and_wheel_hold_what_they_should(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    assert sdist.name == f"tap_wechat_share-{VERSION}.tar.gz"
    assert wheel.name == f"tap_wechat_share-{VERSION}-py3-none-any.whl"
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "plugin.yml"} <= in_sdist
    assert {"tap_wechat_share/tap.py", "docs/operations.md"} <= in_sdist
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(f"tap_wechat_share-{VERSION}.dist-info/METADATA").decode()
        entry_points = archive.read(f"tap_wechat_share-{VERSION}.dist-info/entry_points.txt")
    modules = {path.relative_to(ROOT).as_posix() for path in ROOT.glob("tap_wechat_share/*.py")}
    assert modules | {"tap_wechat_share/py.typed"} <= in_wheel
    assert not {name for name in in_wheel if name.startswith(("tests/", "docs/"))}
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    assert b"tap-wechat-share = tap_wechat_share.tap:TapWeChatShare.cli" in entry_points


def test_the_wheel_installs_into_a_clean_environment_and_runs(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    env = clean_env()
    started = time.monotonic()
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    uv("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel))
    print(f"\n[adoption] clean venv with the wheel in {time.monotonic() - started:.1f} s")
    about = json.loads(
        run([str(venv / "bin" / "tap-wechat-share"), "--about", "--format=json"], tmp_path, env)
    )
    assert about["name"] == "tap-wechat-share"
    assert about["version"] == VERSION
    assert {"app_id", "app_secret", "start_date"} <= set(about["settings"]["properties"])
    code = "import tap_wechat_share as t; print(t.__version__); print(t.__file__)"
    version, location = run([str(venv / "bin" / "python"), "-c", code], tmp_path, env).split()
    assert version == VERSION
    assert Path(location).is_relative_to(venv), "the tap was imported from outside the clean venv"


# --------------------------------------------------------------------------- a new Meltano project


def test_a_new_meltano_project_adopts_the_tap_from_plugin_yml(
    dist: Path,
    wechat: WeChatEmulator,
    postgres: PostgresServer,
    postgres_schema: str,
    tmp_path: Path,
) -> None:
    (wheel,) = dist.glob("*.whl")
    env = clean_env()
    started = time.monotonic()
    meltano("init", "project", cwd=tmp_path, env=env)
    project = tmp_path / "project"
    # The tap, as the README says: add it from plugin.yml, then point pip_url at the wheel.
    add = ("add", "--no-install", "--plugin-type")
    meltano(*add, "extractor", "tap-wechat-share", "--from-ref", PLUGIN_YML, cwd=project, env=env)
    yaml = YAML()
    meltano_yml = project / "meltano.yml"
    config = yaml.load(meltano_yml)
    (tap,) = config["plugins"]["extractors"]
    assert tap["name"] == "tap-wechat-share"
    assert "utilities" not in config["plugins"], "a stray utility was added"
    tap["pip_url"] = str(wheel)
    yaml.dump(config, meltano_yml)
    # The target the same way, from a definition file: this project's own.
    ours = YAML(typ="safe", pure=True).load(ROOT / "meltano.yml")
    (loader,) = (p for p in ours["plugins"]["loaders"] if p["name"] == "target-postgres")
    definition = tmp_path / "target-postgres.yml"
    YAML().dump({k: v for k, v in loader.items() if k != "config"}, definition)
    meltano(*add, "loader", "target-postgres", "--from-ref", str(definition), cwd=project, env=env)
    meltano("install", cwd=project, env=env)
    installed = time.monotonic()
    # Settings as a user gives them: with `meltano config set`, or in the environment.
    meltano("config", "set", "tap-wechat-share", "start_date", str(START), cwd=project, env=env)
    env.update(
        TAP_WECHAT_SHARE_APP_ID=APP_ID,
        TAP_WECHAT_SHARE_END_DATE=str(END),
        TAP_WECHAT_SHARE_APP_SECRET=APP_SECRET,
        TAP_WECHAT_SHARE_API_URL=wechat.url,
        TARGET_POSTGRES_HOST=postgres.host,
        TARGET_POSTGRES_PORT=str(postgres.port),
        TARGET_POSTGRES_USER=postgres.user,
        TARGET_POSTGRES_PASSWORD=postgres.password,
        TARGET_POSTGRES_DATABASE=postgres.database,
        TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=postgres_schema,
    )
    meltano("run", "tap-wechat-share", "target-postgres", cwd=project, env=env)
    print(
        f"\n[adoption] meltano init, add and install in {installed - started:.1f} s, "
        f"config and run in {time.monotonic() - installed:.1f} s"
    )
    assert_loaded_once(postgres, postgres_schema, wechat)
    tap_venv = project / ".meltano" / "extractors" / "tap-wechat-share" / "venv"
    (dist_info,) = tap_venv.glob("lib/python*/site-packages/tap_wechat_share-*.dist-info")
    assert dist_info.name == f"tap_wechat_share-{VERSION}.dist-info"
    origin = json.loads((dist_info / "direct_url.json").read_text(encoding="utf-8"))
    assert origin["url"].endswith("/" + wheel.name), "the tap was not installed from the wheel"


# --------------------------------------------------------------------------- the README's block


def readme_first_load_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- first-load:start -->", 1)[1].split("<!-- first-load:end -->")[0]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def fresh_database(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A new database on the session's server: the block makes its own schema, ``wechat``."""
    name = f"tap_wechat_share_readme_{uuid.uuid4().hex[:12]}"
    postgres.query(f'CREATE DATABASE "{name}"')
    try:
        yield dataclasses.replace(postgres, database=name)
    finally:
        postgres.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkout_state() -> tuple[list[str], list[tuple[str, int]]]:
    """``git status`` of the checkout (caches left out) and the entries of its ``.meltano/``."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    caches = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")
    sys_dir = ROOT / ".meltano"
    entries = sorted((entry.name, entry.stat().st_mtime_ns) for entry in sys_dir.glob("*")) + (
        [("meltano.db", (sys_dir / "meltano.db").stat().st_mtime_ns)]
        if (sys_dir / "meltano.db").exists()
        else []
    )
    return [line for line in status if not any(c in line for c in caches)], entries


def test_the_readme_first_load_block_runs_as_written(
    wechat: WeChatEmulator, fresh_database: PostgresServer, tmp_path: Path
) -> None:
    block = readme_first_load_block()
    assert "meltano run tap-wechat-share target-postgres" in block
    pg = fresh_database
    env = clean_env(
        WECHAT_APP_ID=APP_ID,
        WECHAT_APP_SECRET=APP_SECRET,
        PGHOST=pg.host,
        PGPORT=str(pg.port),
        PGUSER=pg.user,
        PGPASSWORD=pg.password,
        PGDATABASE=pg.database,
        # Not in the block: where WeChat is, and the last day (the emulator's days are in 2025).
        TAP_WECHAT_SHARE_API_URL=wechat.url,
        TAP_WECHAT_SHARE_END_DATE=str(END),
        MELTANO_SYS_DIR_ROOT=str(tmp_path / "meltano-sys"),
    )
    env["PATH"] = os.defpath  # the block must put meltano on PATH itself
    before = checkout_state()
    started = time.monotonic()
    out = run(["/bin/bash", "-euo", "pipefail", "-c", block], ROOT, env)
    print(f"\n[adoption] the README's first-load block in {time.monotonic() - started:.1f} s")
    assert checkout_state() == before, "the block changed the checkout or its .meltano/"
    assert_loaded_once(pg, "wechat", wechat)
    per_day = [line.split("|") for line in out.splitlines() if line.strip()[:4] == "2025"]
    assert [(d.strip(), int(n)) for d, n in per_day] == [
        (str(day), sum(1 for r in expected_rows(wechat)["share_hour"] if r[1] == str(day)))
        for day in days()
    ]
    shutil.rmtree(tmp_path / "meltano-sys", ignore_errors=True)
