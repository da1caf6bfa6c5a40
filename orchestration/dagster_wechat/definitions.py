"""Dagster definitions: the tap's accounts in shards, run in parallel, every morning in China.

The job ``wechat_share_shards`` has four kinds of steps:

* ``plan_shards`` reads the shard count (run config ``shard_count``, else the environment variable
  ``WECHAT_SHARD_COUNT``, else 1) and checks the Meltano states (see below). Listing the states
  also creates or upgrades Meltano's system database once, before anything else uses it side by
  side (Meltano migrates it on first use, and simultaneous first uses race).
* ``prepare_target`` creates the target's schema and tables once, before the shards start:
  ``meltano invoke tap-wechat-share --test=schema`` writes the tap's SCHEMA messages (the very
  ones a run writes first), and ``meltano invoke target-postgres`` reads those of the streams
  selected in the catalog (``meltano invoke --dump=catalog tap-wechat-share``) and nothing else.
  target-postgres looks for a schema or table and then creates it, so several of them starting
  at once into a new schema race, and all but one fail
  (``UniqueViolation ... Key (nspname)=(...) already exists``); the same holds for a new table or
  column. Done once through the target itself, with its own settings and connection, it needs no
  database code here; the shards then find everything in place. Each run does it (three
  ``meltano invoke``, a few seconds): a new stream or column of a newer tap is prepared the same
  way.
* ``run_shard`` (one per shard, in parallel) runs ``meltano run tap-wechat-share target-postgres
  --state-id-suffix shard-<i>-of-<n>`` in the Meltano project with ``TAP_WECHAT_SHARE_SHARD_INDEX``
  and ``TAP_WECHAT_SHARE_SHARD_COUNT`` set: the tap reads only shard ``i``'s accounts and Meltano
  keeps the run's state under its own id, ``<environment>:tap-wechat-share-to-target-postgres:
  shard-<i>-of-<n>``. A failing shard fails its step only; the others finish and keep their state.
  A failure's message names its cause: the plugins' error lines and the last line of their
  tracebacks (see ``orchestration/meltano_log.py``), not the end of the log, which after a
  target's failure shows the tap's ``BrokenPipeError``. A run the tap stopped because WeChat
  cannot be reached (its ERROR line ``WeChat cannot be reached``) is retried after a delay; no
  other failure is (see ``unreachable_retry_policy``).
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
``plan_shards`` refuses to start when states exist for another shard count, or for the unsharded
``meltano run`` (state id ``<environment>:tap-wechat-share-to-target-postgres``), but none for
this count, unless ``allow_new_shard_count`` is set (e.g. for the first sharded run of a new
project). The refusal names the ``scripts/reshard`` command that carries the bookmarks over: from
the shard count of this job's latest run (each run records its count in the run tag
``wechat/shard_count``), or from the unsharded state id. The job does not carry a state over by
itself: only the operator knows which state is the current one (the unsharded runs' or an older
shard count's, perhaps run outside this Dagster), and resharding is one command.

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
the cause.
"""

# No `from __future__ import annotations`: Dagster reads the ops' annotations at run time.
import importlib
import json
import os
import signal
import subprocess
import sys
import typing as t
from collections.abc import Iterator
from pathlib import Path

from dagster import (
    Backoff,
    Config,
    ConfigurableResource,
    Definitions,
    DynamicOut,
    DynamicOutput,
    ExecutorDefinition,
    Failure,
    In,
    JobDefinition,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    ScheduleDefinition,
    job,
    op,
)
from dagster import __version__ as dagster_version

from orchestration.meltano_log import UNREACHABLE, MeltanoLog
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
SHARD_COUNT_TAG = "wechat/shard_count"
"""The run tag in which ``plan_shards`` records the run's shard count."""
STOP_GRACE_SECONDS = 30
OWN_DIRS = frozenset({"run", "logs", "shards"})
"""Directories of ``.meltano`` that each shard has of its own."""
PREPARE_DIR = "prepare"
"""``prepare_target``'s Meltano system directory, in ``.meltano/shards/``."""
RETRIES_ENV = "WECHAT_UNREACHABLE_RETRIES"
RETRY_DELAY_ENV = "WECHAT_UNREACHABLE_RETRY_DELAY"
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 300
RECENT_RUNS = 100
"""How many of the job's latest runs ``plan_shards`` looks through for the latest shard count."""


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
        allow_new_shard_count: Start even though states exist for another shard count (or for
            the unsharded run) and none for this one (every account of the new shards is then
            read from ``start_date``).
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


def _latest_count(context: OpExecutionContext, counts: set[int]) -> int | None:
    """The shard count among ``counts`` of this job's latest run that recorded one, if any."""
    for record in context.instance.get_runs(limit=RECENT_RUNS):
        if record.run_id == context.run_id or record.job_name != context.job_name:
            continue
        raw = record.tags.get(SHARD_COUNT_TAG, "")
        if raw.isdigit() and int(raw) in counts:
            return int(raw)
    return None


def refusal(count: int, others: list[int], unsharded: str | None, latest: int | None) -> str:
    """The line refusing a shard count that has no states while other states exist.

    Args:
        count: The shard count asked for.
        others: The other shard counts that have states, in order.
        unsharded: The unsharded run's state id, if it has a state.
        latest: Which of ``others`` this job ran last, if known.
    """
    found = [f"{', '.join(map(str, others))} shard(s)"] if others else []
    if unsharded:
        found.append(f"the unsharded run ({unsharded})")
    head = f"states exist for {' and '.join(found)} but none for {count} shard(s): run "
    tail = " first (or set allow_new_shard_count to read every account from start_date)"
    if latest is None and len(others) == 1 and not unsharded:
        latest = others[0]
    if latest is not None:
        return f"{head}scripts/reshard --from {latest} --to {count}{tail}"
    choices = [f"--from {other}" for other in others]
    if unsharded:
        choices.append(f"--from-state-id {unsharded}")
    if len(choices) == 1:
        return f"{head}scripts/reshard {choices[0]} --to {count}{tail}"
    either = f"{', '.join(choices[:-1])} or {choices[-1]}"
    return f"{head}scripts/reshard {either} --to {count}, whichever ran last,{tail}"


@op(
    out={"shards": DynamicOut(tuple), "checked": Out(Nothing)},
    tags={"kind": "meltano"},
)
def plan_shards(
    context: OpExecutionContext, config: ShardsConfig, meltano: MeltanoProject
) -> Iterator[Output[None] | DynamicOutput[tuple[int, int]]]:
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
        existing = meltano.cli().state_ids(f"{base}*")
    except MeltanoError as exc:
        raise Failure(description=str(exc)) from exc
    counts = shard_counts_in(existing, base)
    others = sorted(counts - {count})
    unsharded = base if base in existing else None
    if count not in counts and (others or unsharded) and not config.allow_new_shard_count:
        latest = _latest_count(context, set(others))
        raise Failure(description=refusal(count, others, unsharded, latest))
    context.instance.add_run_tags(context.run_id, {SHARD_COUNT_TAG: str(count)})
    context.log.info("%d shard(s) of %s", count, base)
    yield Output(None, "checked")
    for index in range(count):
        yield DynamicOutput(
            (index, count), output_name="shards", mapping_key=f"shard_{index}_of_{count}"
        )


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


def run_meltano(  # noqa: PLR0913 - the keyword ones are one call's own
    context: OpExecutionContext,
    command: list[str],
    log: MeltanoLog,
    *,
    cwd: str,
    env: dict[str, str],
    stdin: str | None = None,
    watch: str = "",
) -> tuple[int, str]:
    """Run a ``meltano`` command; its output to the step's log and to ``log``.

    Args:
        context: The step's context.
        command: The command line.
        log: Reads Meltano's output (standard error, and standard output if not captured).
        cwd: The Meltano project's directory.
        env: The command's environment.
        stdin: Text for its standard input; None: none. Its standard output is then returned
            (as for ``meltano invoke``); otherwise it goes to the log with standard error.
        watch: Lines holding this text are also logged as Dagster events.

    Returns:
        The exit code, and the standard output if ``stdin`` was given (else "").

    Raises:
        Failure: If the command cannot be started (no retry).
    """
    piped = stdin is not None
    try:
        process = subprocess.Popen(  # noqa: S603 - the executable and arguments are ours
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if piped else subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        msg = f"could not start {command[0]}: {exc.strerror or exc}"
        raise Failure(description=msg, allow_retries=False) from exc
    try:
        lines: t.Iterable[str]
        if piped:
            out, err = process.communicate(stdin)
            lines = err.splitlines(keepends=True)
        else:
            out = ""
            assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
            lines = process.stdout
        for line in lines:
            # The step's own stderr is Dagster's compute log of the step.
            sys.stderr.write(line)
            log.feed(line)
            if watch and watch in line:
                context.log.info(line.strip())
        process.wait()
    finally:
        _stop(process)
    return process.returncode, out


def _failure(log: MeltanoLog, head: str, *, allow_retries: bool = False) -> Failure:
    return Failure(
        description=log.describe(head),
        metadata={"end of the log": MetadataValue.text("\n".join(log.tail))},
        allow_retries=allow_retries,
    )


def selected_streams(catalog: str) -> set[str]:
    """The streams selected in a catalog (``meltano invoke --dump=catalog``'s, with the rules)."""
    selected = set()
    for stream in json.loads(catalog).get("streams") or []:
        top: dict[str, t.Any] = next(
            (
                m.get("metadata", {})
                for m in stream.get("metadata", [])
                if m.get("breadcrumb") == []
            ),
            {},
        )
        if top.get("selected", top.get("selected-by-default", False)):
            selected.add(str(stream.get("tap_stream_id") or stream.get("stream")))
    return selected


def schema_messages(out: str, selected: set[str]) -> list[str]:
    """The SCHEMA messages among the lines ``out`` of the ``selected`` streams."""
    kept = []
    for line in out.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        is_schema = isinstance(message, dict) and message.get("type") == "SCHEMA"
        if is_schema and message.get("stream") in selected:
            kept.append(line)
    return kept


@op(ins={"checked": In(Nothing)}, out=Out(Nothing), tags={"kind": "meltano"})
def prepare_target(context: OpExecutionContext, meltano: MeltanoProject) -> None:
    """Create the target's schema and tables once, before the shards run side by side.

    The tap writes its catalog (``--dump=catalog``: which streams are selected) and its SCHEMA
    messages (``--test=schema``: no request to WeChat, no record), and the target reads those of
    the selected streams: it creates what is missing (the schema, a table, a column) as at the
    start of a run, alone, so that the shards' targets, started at once, find it all in place
    instead of racing to create it.
    """
    root = meltano.project_root
    sys_dir = shard_sys_dir(Path(root), PREPARE_DIR)
    env = {**os.environ, "MELTANO_SYS_DIR_ROOT": str(sys_dir)}
    env.setdefault("NO_COLOR", "1")
    cli = meltano.cli()
    outputs = []
    # The catalog says which streams are selected (Meltano's select rules); --test=schema writes
    # every stream's SCHEMA message, as a run would (stream maps included).
    for args in (("--dump=catalog", meltano.extractor), (meltano.extractor, "--test=schema")):
        tap_log = MeltanoLog(meltano.extractor, meltano.loader, invoked=meltano.extractor)
        code, out = run_meltano(
            context, cli.command("invoke", *args), tap_log, cwd=root, env=env, stdin=""
        )
        if code != 0:
            head = f"preparing the target: meltano invoke {' '.join(args)} exited {code}"
            raise _failure(tap_log, head)
        outputs.append(out)
    catalog, out = outputs
    try:
        selected = selected_streams(catalog)
    except (ValueError, AttributeError, TypeError) as exc:
        msg = f"preparing the target: the catalog of {meltano.extractor} is not JSON: {exc}"
        raise Failure(description=msg, allow_retries=False) from exc
    messages = schema_messages(out, selected)
    target_log = MeltanoLog(meltano.extractor, meltano.loader, invoked=meltano.loader)
    command = cli.command("invoke", meltano.loader)
    code, _ = run_meltano(
        context, command, target_log, cwd=root, env=env, stdin="".join(f"{m}\n" for m in messages)
    )
    if code != 0:
        raise _failure(
            target_log, f"preparing the target: meltano invoke {meltano.loader} exited {code}"
        )
    streams = sorted(json.loads(m)["stream"] for m in messages)
    context.log.info("%s: schema and tables ready for %s", meltano.loader, ", ".join(streams))


@op(ins={"target_ready": In(Nothing)}, out=Out(str), tags={"kind": "meltano"})
def run_shard(context: OpExecutionContext, meltano: MeltanoProject, shard: tuple[int, int]) -> str:
    """Run ``meltano run EXTRACTOR LOADER --state-id-suffix shard-<i>-of-<n>`` for one shard.

    Returns:
        The state id the run kept its state under.

    Raises:
        Failure: If the run fails; retried (see ``unreachable_retry_policy``) only if the tap
            stopped because WeChat cannot be reached.
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
    log = MeltanoLog(meltano.extractor, meltano.loader)
    code, _ = run_meltano(
        context, command, log, cwd=meltano.project_root, env=env, watch=f"shard {index} of {count}:"
    )
    if code != 0:
        head = f"{suffix}: meltano run exited {code}"
        if log.retryable():
            head += f" ({UNREACHABLE}: tried again after a delay, if tries are left)"
        raise _failure(log, head, allow_retries=log.retryable())
    environment = meltano.active_environment()
    return state_id(environment, suffix, extractor=meltano.extractor, loader=meltano.loader)


@op(tags={"kind": "meltano"}, out=Out(Nothing))
def shards_done(context: OpExecutionContext, state_ids: list[str]) -> None:
    """Log the state ids every shard wrote."""
    context.log.info("%d shard(s) done: %s", len(state_ids), ", ".join(sorted(state_ids)))


def _whole_number(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit():
        msg = f"{name} must be a whole number (0 or more), not {raw!r}"
        raise ValueError(msg)
    return int(raw)


def unreachable_retry_policy() -> RetryPolicy | None:
    """The shard step's retry policy: a run stopped because WeChat cannot be reached.

    When WeChat cannot be reached (network faults across accounts), the tap stops soon with an
    ERROR line saying ``WeChat cannot be reached`` and a last STATE; the step fails with
    ``Failure(allow_retries=True)`` and Dagster runs it again after a delay:
    ``WECHAT_UNREACHABLE_RETRIES`` times at most (default 3; 0: never), the n-th time after n x
    ``WECHAT_UNREACHABLE_RETRY_DELAY`` seconds (default 300: after 5, 10 and 15 minutes, so an
    outage of up to half an hour costs minutes, not a day). Every other failure (an account's
    errcode, a failed account, the target, the configuration) is a ``Failure`` with
    ``allow_retries=False``: trying again would fail again. Both variables are read where the
    job's code is loaded (the code location, and each step's process).

    Returns:
        The policy, or None for no retries.

    Raises:
        ValueError: If a variable is not a whole number.
    """
    retries = _whole_number(RETRIES_ENV, DEFAULT_RETRIES)
    delay = _whole_number(RETRY_DELAY_ENV, DEFAULT_RETRY_DELAY)
    if retries == 0:
        return None
    return RetryPolicy(max_retries=retries, delay=delay, backoff=Backoff.LINEAR)


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


def shards_job() -> JobDefinition:
    """The job ``wechat_share_shards``, its executor and retry policy as the environment says."""

    @job(
        name="wechat_share_shards",
        executor_def=shard_executor(),
        resource_defs={"meltano": MeltanoProject()},
        description="The tap's accounts in shards, one parallel meltano run per shard.",
    )
    def wechat_share_shards() -> None:
        """Check, prepare the target, one ``meltano run`` per shard in parallel, a summary."""
        shards, checked = plan_shards()
        ready = prepare_target(checked)
        shard_run = run_shard.with_retry_policy(unreachable_retry_policy())  # type: ignore[arg-type]
        shards_done(shards.map(lambda shard: shard_run(shard=shard, target_ready=ready)).collect())

    return wechat_share_shards


wechat_share_shards = shards_job()

wechat_share_daily = ScheduleDefinition(
    name="wechat_share_daily",
    job=wechat_share_shards,
    cron_schedule="30 8 * * *",
    execution_timezone="Asia/Shanghai",
    description="Every day at 08:30 China time, after WeChat publishes yesterday's data.",
)

defs = Definitions(jobs=[wechat_share_shards], schedules=[wechat_share_daily])
