"""A PostgreSQL server for the tests, and the pytest fixtures that hand it out.

Two ways to get a server, chosen by one environment variable:

* ``TAP_WECHAT_SHARE_TEST_PG_DSN`` set: a libpq connection URI of an existing server, e.g.
  ``postgresql://user:secret@127.0.0.1:5432/dbname``. The tests use that database as given and
  work only inside schemas they create with unique names (``tap_wechat_share_test_<hex>``) and
  drop again at the end; nothing else on that server is touched.
* Not set (the default, and what CI does): a throwaway server is started. ``initdb`` and
  ``pg_ctl`` (from ``PATH``, else the newest ``/usr/lib/postgresql/<version>/bin``) create a new
  cluster in a fresh temporary directory, listening only on 127.0.0.1 on a free port, its unix
  socket inside that directory, with ``trust`` authentication for the user the cluster is made
  with. When the tests run as root, ``initdb``/``pg_ctl`` run as the ``postgres`` OS user
  (``runuser -u postgres``; PostgreSQL refuses to run as root) and the directory is handed to
  that user. At the end the server is stopped (``pg_ctl stop -m fast``) and the directory
  removed. No existing cluster is ever used or changed.

Queries go through the ``psql`` client (a subprocess), so the tests need no Python driver.

Fixtures: ``postgres`` (session scope) yields a :class:`PostgresServer`; ``postgres_schema``
(function scope) yields the name of a new empty schema in it and drops the schema afterwards.
A test module uses them with ``pytest_plugins = ("tests.postgres",)``.
"""

# SQL here is built from the names of schemas and tables the tests make themselves.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

DSN_ENV = "TAP_WECHAT_SHARE_TEST_PG_DSN"
"""Environment variable naming an existing server to use instead of starting one."""

OS_USER = "postgres"
"""The OS account that runs a throwaway server when the tests run as root."""

DB_USER = "tap_wechat_share"
DB_PASSWORD = "tap-wechat-share-test"
DB_NAME = "tap_wechat_share_test"
START_TIMEOUT_S = 60


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be had for the tests."""


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """How to reach a PostgreSQL server, and a way to query it with ``psql``."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """Return the process environment for libpq clients (``psql``) to reach this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGDATABASE=self.database,
            PGCONNECT_TIMEOUT="10",
        )
        return env

    def query(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run ``sql`` with ``psql`` and return the rows of its result as text.

        NULL comes back as ``None``; every other value as ``psql`` prints it.
        """
        # A marker for NULL that no real value has, since CSV output cannot tell NULL from ''.
        null = f"<null-{uuid.uuid4().hex}>"
        out = subprocess.run(
            [_psql(), "-X", "--csv", "-t", "-v", "ON_ERROR_STOP=1", "-P", f"null={null}"],
            input=sql,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if out.returncode != 0:
            msg = f"psql failed ({out.returncode}) on {sql!r}: {out.stderr.strip()}"
            raise RuntimeError(msg)
        return [
            tuple(None if value == null else value for value in row)
            for row in csv.reader(io.StringIO(out.stdout))
            if row
        ]

    def scalar(self, sql: str) -> str | None:
        """Run ``sql`` and return the single value of its single row."""
        rows = self.query(sql)
        if len(rows) != 1 or len(rows[0]) != 1:
            msg = f"expected one value from {sql!r}, got {rows!r}"
            raise AssertionError(msg)
        return rows[0][0]

    def create_schema(self, prefix: str = "tap_wechat_share_test") -> str:
        """Create a new, uniquely named, empty schema and return its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.query(f'CREATE SCHEMA "{name}"')
        return name

    def drop_schema(self, name: str) -> None:
        """Drop a schema made by :meth:`create_schema`, with everything in it."""
        self.query(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def table_exists(self, schema: str, table: str) -> bool:
        """Tell whether ``schema.table`` exists."""
        found = self.scalar(
            "SELECT count(*) FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}'"
        )
        return found == "1"


def _psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    bindir = _pg_bindir()
    if bindir is not None and (bindir / "psql").exists():
        return str(bindir / "psql")
    msg = "psql (the PostgreSQL client) is not installed"
    raise PostgresUnavailableError(msg)


def _pg_bindir() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or None if there is none."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def from_dsn(dsn: str) -> PostgresServer:
    """Parse a ``postgresql://user:password@host:port/dbname`` URI."""
    parts = urlsplit(dsn)
    if parts.scheme not in {"postgres", "postgresql"} or not parts.hostname:
        msg = f"{DSN_ENV} must look like postgresql://user:password@host:port/dbname"
        raise PostgresUnavailableError(msg)
    return PostgresServer(
        host=parts.hostname,
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or "postgres",
    )


class ThrowawayCluster:
    """A PostgreSQL cluster of its own in a temporary directory, started and removed by us."""

    def __init__(self) -> None:
        """Prepare (not yet start) a cluster."""
        bindir = _pg_bindir()
        if bindir is None:
            msg = (
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH nor in "
                f"/usr/lib/postgresql/*/bin; install them or set {DSN_ENV}"
            )
            raise PostgresUnavailableError(msg)
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root: Path | None = None
        self.port = 0
        self.running = False

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        assert self.root is not None
        return self.root / "data"

    def _run(self, args: Sequence[str], *, timeout: float = START_TIMEOUT_S) -> str:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=self.root,
        )
        if out.returncode != 0:
            msg = f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
            raise PostgresUnavailableError(msg)
        return out.stdout

    def start(self) -> PostgresServer:
        """Create the cluster and start the server; return how to reach it."""
        self.root = Path(tempfile.mkdtemp(prefix="tap-wechat-share-pg-"))
        if self.as_root:
            try:
                shutil.chown(self.root, user=OS_USER, group=None)
            except LookupError as exc:
                msg = f"running as root needs an OS user {OS_USER!r} to run PostgreSQL"
                raise PostgresUnavailableError(msg) from exc
            self.root.chmod(0o700)
        (self.root / "socket").mkdir()
        if self.as_root:
            shutil.chown(self.root / "socket", user=OS_USER, group=None)
        pwfile = self.root / "pwfile"
        pwfile.write_text(DB_PASSWORD + "\n", encoding="utf-8")
        if self.as_root:
            shutil.chown(pwfile, user=OS_USER, group=None)
        self._run(
            [
                "initdb",
                "--pgdata",
                str(self.datadir),
                "--username",
                DB_USER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            timeout=120,
        )
        pwfile.unlink()
        # The settings go into the data directory's own config file, which initdb just made.
        last_error: PostgresUnavailableError | None = None
        for _ in range(3):  # a free port can be taken by someone else before we bind it
            self.port = _free_port()
            conf = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.root / 'socket'}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "50",
            }
            with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as f:
                f.write("\n# tests/postgres.py\n")
                f.writelines(f"{key} = {value}\n" for key, value in conf.items())
            try:
                self._run(
                    [
                        "pg_ctl",
                        "--pgdata",
                        str(self.datadir),
                        "--log",
                        str(self.root / "server.log"),
                        "--wait",
                        "--timeout",
                        str(START_TIMEOUT_S),
                        "start",
                    ],
                    timeout=START_TIMEOUT_S + 10,
                )
            except PostgresUnavailableError as exc:
                last_error = exc
                continue
            self.running = True
            break
        else:
            log = self.root / "server.log"
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
            msg = f"PostgreSQL did not start: {last_error}\n{tail}"
            raise PostgresUnavailableError(msg)
        server = PostgresServer(
            host="127.0.0.1",
            port=self.port,
            user=DB_USER,
            password=DB_PASSWORD,
            database="postgres",
        )
        server.query(f'CREATE DATABASE "{DB_NAME}"')
        return dataclasses.replace(server, database=DB_NAME)

    def stop(self) -> None:
        """Stop the server (if it runs) and remove the directory."""
        if self.root is None:
            return
        try:
            if self.running:
                with contextlib.suppress(PostgresUnavailableError, subprocess.TimeoutExpired):
                    self._run(["pg_ctl", "--pgdata", str(self.datadir), "--mode", "fast", "stop"])
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Yield a server: the one named by ``TAP_WECHAT_SHARE_TEST_PG_DSN``, else a throwaway one."""
    dsn = os.environ.get(DSN_ENV, "").strip()
    if dsn:
        server = from_dsn(dsn)
        server.scalar("SELECT 1")  # fail early and clearly if it cannot be reached
        yield server
        return
    cluster = ThrowawayCluster()
    try:
        started = time.monotonic()
        server = cluster.start()
        print(
            f"\n[postgres] throwaway server on 127.0.0.1:{server.port} in {cluster.root} "
            f"({time.monotonic() - started:.1f} s to start)"
        )
        yield server
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (see the module docstring)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_schema(postgres: PostgresServer) -> Iterator[str]:
    """A new, empty, uniquely named schema, dropped after the test."""
    name = postgres.create_schema()
    try:
        yield name
    finally:
        postgres.drop_schema(name)
