"""Dagster definitions: the tap's accounts in shards, run in parallel, every morning in China.

The job ``wechat_share_shards`` has three kinds of steps:

* ``plan_shards`` reads the shard count (run config ``shard_count``, else the environment variable
  ``WECHAT_SHARD_COUNT``, else 1), checks the Meltano states (see below) and fans out one step per
  shard. Listing the states also creates or upgrades Meltano's system database once, before the
  shards start side by side (Meltano migrates it on first use, and simultaneous first uses race).
* ``run_shard`` (one per shard, in parallel) runs ``meltano run tap-wechat-share target-postgres
  --state-id-suffix shard-<i>-of-<n>`` in the Meltano project with ``TAP_WECHAT_SHARE_SHARD_INDEX``
  and ``TAP_WECHAT_SHARE_SHARD_COUNT`` set: the tap reads only shard ``i``'s accounts and Meltano
  keeps the run's state under its own id, ``<environment>:tap-wechat-share-to-target-postgres:
  shard-<i>-of-<n>``. A failing shard fails its step only; the others finish and keep their state.
  Each shard has a Meltano system directory of its own (``MELTANO_SYS_DIR_ROOT``,
  ``.meltano/shards/shard-<i>-of-<n>``, linking to the installed plugins): ``meltano run`` writes
  a plugin's catalog and state files to ``.meltano/run/<plugin>/`` whatever the state id, so two
  runs of one tap in one project directory delete each other's files (seen here: "No such file
  or directory: .meltano/run/tap-wechat-share/tap.properties.json"; meltano/meltano#8763).
* ``shards_done`` logs the state ids once every shard has finished.

The schedule ``wechat_share_daily`` starts it at 08:30 Asia/Shanghai, after WeChat publishes
yesterday's data (about 08:00 China time).

Where the steps run is configuration: ``WECHAT_DAGSTER_EXECUTOR`` picks Dagster's executor
(``multiprocess``, the default, on one machine; ``k8s``, ``celery`` or ``celery-k8s`` across
machines; see ``shard_executor``), and its settings are run config under ``execution: config:``.

Everything else comes from the environment of the steps, as for ``meltano run``:
``MELTANO_DATABASE_URI`` (Meltano's system database, which must be PostgreSQL or another server
database: shards write their states at the same time, and SQLite allows one writer), the tap's and
the target's settings and secrets (``TAP_WECHAT_SHARE_ACCOUNTS``, ``TARGET_POSTGRES_*``, ...).
Secrets are never put in run config, which Dagster stores. The resource ``meltano`` says where the
project is and which environment to use.

A changed shard count without ``scripts/reshard`` would read every account's whole history again:
``plan_shards`` refuses to start when states exist for another shard count but none for this one,
unless ``allow_new_shard_count`` is set (e.g. for the first sharded run).

How Meltano is run: a subprocess per step, here, and not with ``dagster-meltano``. Its latest
release (1.5.5, October 2024) needs ``dagster-shell``, whose last release (0.25.13) pins
``dagster==1.9.13``; with a current Dagster (1.13) the resolver falls back to ``dagster-shell``
0.11.14, which fails on import (``No module named 'dagster.core'``). It would not be better
anyway: it also runs ``meltano`` as a shell command in a subprocess, through a process-wide
singleton resource. Dagster's own ``PipesSubprocessClient`` expects the child to speak Dagster
Pipes, which Meltano does not (every step would warn that no Pipes message came). The step below
is a plain ``subprocess`` with what matters kept: Meltano's output goes to the step's log
(Dagster's compute logs), the tap's shard line is also logged as a Dagster event, a cancelled run
stops Meltano (SIGINT, then SIGKILL after a grace period), and a failure names the exit code and
the last lines of the log.
"""

# No `from __future__ import annotations`: Dagster reads the ops' annotations at run time.
import collections
import importlib
import os
import signal
import subprocess
import sys
import typing as t
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    Config,
    ConfigurableResource,
    Definitions,
    DynamicOut,
    DynamicOutput,
    ExecutorDefinition,
    Failure,
    Nothing,
    OpExecutionContext,
    Out,
    ScheduleDefinition,
    job,
    op,
)
from dagster import __version__ as dagster_version

from orchestration.shards import (
    EXTRACTOR,
    LOADER,
    MeltanoCli,
    MeltanoError,
    default_meltano,
    shard_counts_in,
    shard_suffix,
    state_id,
)

REPOSITORY = Path(__file__).resolve().parents[2]
SHARD_COUNT_ENV = "WECHAT_SHARD_COUNT"
SHARD_INDEX_SETTING = "TAP_WECHAT_SHARE_SHARD_INDEX"
SHARD_COUNT_SETTING = "TAP_WECHAT_SHARE_SHARD_COUNT"
STOP_GRACE_SECONDS = 30
LOG_TAIL_LINES = 20
OWN_DIRS = frozenset({"run", "logs", "shards"})
"""Directories of ``.meltano`` that each shard has of its own."""


class MeltanoProject(ConfigurableResource):  # type: ignore[type-arg]  # as Dagster documents it
    """The Meltano project the steps run in.

    Attributes:
        project_root: The project's directory (``meltano.yml``); default: this repository.
        environment: The Meltano environment; empty: ``MELTANO_ENVIRONMENT``, else the project's
            ``default_environment``. It is part of the state ids.
        executable: The ``meltano`` executable; empty: the one installed with Dagster.
        extractor: The extractor's name in the project.
        loader: The loader's name in the project.
    """

    project_root: str = str(REPOSITORY)
    environment: str = ""
    executable: str = ""
    extractor: str = EXTRACTOR
    loader: str = LOADER

    def cli(self) -> MeltanoCli:
        """The project's ``meltano`` command line."""
        return MeltanoCli(
            Path(self.project_root), self.environment or None, self.executable or default_meltano()
        )

    def active_environment(self) -> str:
        """The environment of the runs' state ids."""
        if self.environment:
            return self.environment
        # Imported here: reshard.py is also a script, run as a file.
        from orchestration.reshard import project_environment  # noqa: PLC0415

        found = project_environment(Path(self.project_root))
        if not found:
            msg = "no Meltano environment: set the meltano resource's environment"
            raise Failure(description=msg)
        return found


class ShardsConfig(Config):
    """Run config of ``plan_shards``.

    Attributes:
        shard_count: How many shards (parallel runs of ``meltano run``); 0: the environment variable
            ``WECHAT_SHARD_COUNT``, else 1.
        allow_new_shard_count: Start even though states exist for another shard count and none
            for this one (every account of the new shards is then read from ``start_date``).
    """

    shard_count: int = 0
    allow_new_shard_count: bool = False


def configured_shard_count(config: ShardsConfig) -> int:
    """The shard count of a run: its config, else ``WECHAT_SHARD_COUNT``, else 1."""
    if config.shard_count:
        count = config.shard_count
    else:
        raw = os.environ.get(SHARD_COUNT_ENV, "").strip() or "1"
        if not raw.isdigit():
            msg = f"{SHARD_COUNT_ENV} must be a whole number of shards (1 or more), not {raw!r}"
            raise Failure(description=msg)
        count = int(raw)
    if count < 1:
        msg = f"shard_count must be 1 or more, not {count}"
        raise Failure(description=msg)
    return count


@op(out=DynamicOut(tuple), tags={"kind": "meltano"})
def plan_shards(
    context: OpExecutionContext, config: ShardsConfig, meltano: MeltanoProject
) -> Iterator[DynamicOutput[tuple[int, int]]]:
    """Check the shard count against the stored states and fan out one step per shard."""
    count = configured_shard_count(config)
    database = os.environ.get("MELTANO_DATABASE_URI", "")
    if count > 1 and (not database or database.startswith("sqlite")):
        msg = (
            "MELTANO_DATABASE_URI must name a PostgreSQL database (postgresql+psycopg://...) "
            f"for {count} shards: they write states at the same time; SQLite allows one writer"
        )
        raise Failure(description=msg)
    environment = meltano.active_environment()
    base = state_id(environment, extractor=meltano.extractor, loader=meltano.loader)
    try:
        existing = meltano.cli().state_ids(f"{base}:shard-*")
    except MeltanoError as exc:
        raise Failure(description=str(exc)) from exc
    others = sorted(shard_counts_in(existing, base) - {count})
    if others and count not in shard_counts_in(existing, base) and not config.allow_new_shard_count:
        old = others[-1]
        msg = (
            f"states exist for {', '.join(map(str, others))} shard(s) but none for {count}: run "
            f"scripts/reshard --from {old} --to {count} first (or set allow_new_shard_count to "
            "read the new shards' accounts from start_date)"
        )
        raise Failure(description=msg)
    context.log.info("%d shard(s) of %s", count, base)
    for index in range(count):
        yield DynamicOutput((index, count), mapping_key=f"shard_{index}_of_{count}")


def shard_sys_dir(project_root: Path, suffix: str) -> Path:
    """A Meltano system directory of the shard's own, sharing the installed plugins.

    It holds the shard's ``run/`` (catalog, config and state files handed to the plugins) and
    ``logs/``; every other directory of the project's ``.meltano`` (the plugins' installations:
    ``extractors/``, ``loaders/``, ...) is a symbolic link to the original.
    """
    base = Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or project_root / ".meltano")
    own = base / "shards" / suffix
    own.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        link = own / entry.name
        if entry.is_dir() and entry.name not in OWN_DIRS and not link.is_symlink():
            link.symlink_to(entry, target_is_directory=True)
    return own


def _stop(process: subprocess.Popen[str]) -> None:
    """Stop Meltano as Ctrl-C would (it stops its plugins), then for good after a grace period."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@op(out=Out(str), tags={"kind": "meltano"})
def run_shard(context: OpExecutionContext, meltano: MeltanoProject, shard: tuple[int, int]) -> str:
    """Run ``meltano run EXTRACTOR LOADER --state-id-suffix shard-<i>-of-<n>`` for one shard.

    Returns:
        The state id the run kept its state under.
    """
    index, count = shard
    suffix = shard_suffix(index, count)
    cli = meltano.cli()
    command = cli.command("run", meltano.extractor, meltano.loader, "--state-id-suffix", suffix)
    env = {
        **os.environ,
        SHARD_INDEX_SETTING: str(index),
        SHARD_COUNT_SETTING: str(count),
        "MELTANO_SYS_DIR_ROOT": str(shard_sys_dir(Path(meltano.project_root), suffix)),
    }
    env.setdefault("NO_COLOR", "1")
    context.log.info("%s: meltano run %s %s", suffix, meltano.extractor, meltano.loader)
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    process = subprocess.Popen(  # noqa: S603 - the executable and arguments are ours
        command,
        cwd=meltano.project_root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
        for line in process.stdout:
            # The step's own stderr is Dagster's compute log of the step.
            sys.stderr.write(line)
            tail.append(line.rstrip())
            if f"shard {index} of {count}:" in line:
                context.log.info(line.strip())
        process.wait()
    finally:
        _stop(process)
    if process.returncode != 0:
        last = "\n".join(tail)
        msg = f"{suffix}: meltano run exited {process.returncode}; the end of its log:\n{last}"
        raise Failure(description=msg)
    environment = meltano.active_environment()
    return state_id(environment, suffix, extractor=meltano.extractor, loader=meltano.loader)


@op(tags={"kind": "meltano"}, out=Out(Nothing))
def shards_done(context: OpExecutionContext, state_ids: list[str]) -> None:
    """Log the state ids every shard wrote."""
    context.log.info("%d shard(s) done: %s", len(state_ids), ", ".join(sorted(state_ids)))


EXECUTOR_ENV = "WECHAT_DAGSTER_EXECUTOR"
EXECUTORS = {
    "multiprocess": ("dagster", "multiprocess_executor"),
    "k8s": ("dagster_k8s", "k8s_job_executor"),
    "celery": ("dagster_celery", "celery_executor"),
    "celery-k8s": ("dagster_celery_k8s", "celery_k8s_job_executor"),
}
"""``WECHAT_DAGSTER_EXECUTOR`` -> (module, executor): where the shards' steps run."""


def shard_executor() -> ExecutorDefinition:
    """The executor the environment names: the job's code stays the same on every platform.

    ``multiprocess`` (the default): each step a process on the machine of the run.
    ``k8s``: each step a Kubernetes Job (``dagster-k8s``). ``celery``: each step a task for
    Celery workers on any machine (``dagster-celery``); ``celery-k8s``: Celery queues, each step
    a Kubernetes Job (``dagster-celery-k8s``). Their settings (image, namespace, secrets, broker,
    ``max_concurrent``, ...) are run config under ``execution: config:``.
    """
    name = os.environ.get(EXECUTOR_ENV, "").strip() or "multiprocess"
    if name not in EXECUTORS:
        msg = f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, not {name!r}"
        raise ValueError(msg)
    module_name, attribute = EXECUTORS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.replace("_", "-")
        msg = (
            f"{EXECUTOR_ENV}={name} needs the {package} package: install the version that "
            f"goes with dagster {dagster_version} where the code location runs"
        )
        raise ImportError(msg) from exc
    return t.cast("ExecutorDefinition", getattr(module, attribute))


@job(
    executor_def=shard_executor(),
    resource_defs={"meltano": MeltanoProject()},
    description="The tap's accounts in shards, one parallel meltano run per shard.",
)
def wechat_share_shards() -> None:
    """One ``meltano run`` per shard, in parallel, then a summary."""
    shards_done(plan_shards().map(run_shard).collect())


wechat_share_daily = ScheduleDefinition(
    name="wechat_share_daily",
    job=wechat_share_shards,
    cron_schedule="30 8 * * *",
    execution_timezone="Asia/Shanghai",
    description="Every day at 08:30 China time, after WeChat publishes yesterday's data.",
)

defs = Definitions(jobs=[wechat_share_shards], schedules=[wechat_share_daily])
