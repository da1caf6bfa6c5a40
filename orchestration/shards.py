"""Shards of the tap's accounts in Meltano: their state ids, and merging their states.

Each shard is one ``meltano run tap-wechat-share target-postgres --state-id-suffix
shard-<i>-of-<n>`` with ``TAP_WECHAT_SHARE_SHARD_INDEX=<i>`` and
``TAP_WECHAT_SHARE_SHARD_COUNT=<n>``.
Meltano names the state of such a run ``<environment>:<extractor>-to-<loader>:<suffix>``
(``generate_state_id`` in ``meltano/core/block/extract_load.py``), so two shards never share a
state id: Meltano replaces lists when it merges states, and two runs writing one id would drop
each other's partitions.

Changing the number of shards (``scripts/reshard``) merges the partitions of every old shard's
state into one state and sets that state for every new shard's id. Each new shard then finds its
own accounts' bookmarks there and reads only ``lookback_days`` per account; the tap passes the
other accounts' partitions through untouched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

EXTRACTOR = "tap-wechat-share"
LOADER = "target-postgres"
SHARD_SUFFIX = re.compile(r"^shard-(?P<index>\d+)-of-(?P<count>\d+)$")

SingerState = dict[str, t.Any]


def shard_suffix(index: int, count: int) -> str:
    """The ``--state-id-suffix`` of shard ``index`` of ``count``: ``shard-<index>-of-<count>``."""
    if count < 1 or not 0 <= index < count:
        msg = f"shard {index} of {count}: the index must be 0 to count - 1, and count at least 1"
        raise ValueError(msg)
    return f"shard-{index}-of-{count}"


def state_id(
    environment: str,
    suffix: str | None = None,
    *,
    extractor: str = EXTRACTOR,
    loader: str = LOADER,
) -> str:
    """The state id Meltano gives ``meltano run EXTRACTOR LOADER [--state-id-suffix SUFFIX]``."""
    parts = [environment, f"{extractor}-to-{loader}", suffix]
    return ":".join(part for part in parts if part)


def shard_state_ids(
    environment: str, count: int, *, extractor: str = EXTRACTOR, loader: str = LOADER
) -> list[str]:
    """The state ids of the ``count`` shards, in shard order."""
    return [
        state_id(environment, shard_suffix(i, count), extractor=extractor, loader=loader)
        for i in range(count)
    ]


def _bookmark_of(partition: Mapping[str, t.Any]) -> str:
    # Bookmarks are ISO dates (or date-times) of one format, so their text orders like the days.
    value = partition.get("replication_key_value")
    return "" if value is None else str(value)


def merge_states(states: Iterable[Mapping[str, t.Any]]) -> SingerState:
    """Merge Singer states partition by partition.

    Every stream's partitions (one per account, keyed by their ``context``) are gathered from all
    the states; when a partition is in several, the one with the later bookmark
    (``replication_key_value``) is kept, so that a shard's stale copy of another shard's account
    never wins over that account's own, newer bookmark. Other stream-level keys are kept from the
    first state that has them; ``currently_syncing`` and other top-level keys are dropped.

    Args:
        states: Singer states (the ``singer_state`` of ``meltano state get``).

    Returns:
        One Singer state, ``{"bookmarks": {stream: {"partitions": [...]}}}``, partitions sorted
        by their context.
    """
    streams: dict[str, dict[str, t.Any]] = {}
    partitions: dict[str, dict[str, dict[str, t.Any]]] = {}
    for state in states:
        for stream, stream_state in (state.get("bookmarks") or {}).items():
            merged = streams.setdefault(stream, {})
            for key, value in stream_state.items():
                if key != "partitions":
                    merged.setdefault(key, value)
            by_context = partitions.setdefault(stream, {})
            for partition in stream_state.get("partitions") or []:
                key = json.dumps(partition.get("context"), sort_keys=True)
                kept = by_context.get(key)
                if kept is None or _bookmark_of(partition) > _bookmark_of(kept):
                    by_context[key] = dict(partition)
    for stream, by_context in partitions.items():
        streams[stream]["partitions"] = [by_context[key] for key in sorted(by_context)]
    return {"bookmarks": streams}


def accounts_in(state: Mapping[str, t.Any]) -> dict[str, set[str]]:
    """Stream -> the app_ids whose partitions in ``state`` have a bookmark."""
    return {
        stream: {
            str(partition["context"]["app_id"])
            for partition in stream_state.get("partitions") or []
            if _bookmark_of(partition) and "app_id" in (partition.get("context") or {})
        }
        for stream, stream_state in (state.get("bookmarks") or {}).items()
    }


def default_meltano() -> str:
    """The ``meltano`` executable: the one next to this Python if there is one, else on PATH."""
    beside = Path(sys.executable).with_name("meltano")
    if beside.exists():
        return str(beside)
    return shutil.which("meltano") or "meltano"


class MeltanoError(RuntimeError):
    """A ``meltano`` command failed."""


@dataclass(frozen=True)
class MeltanoCli:
    """The ``meltano`` command line of one project, for its state commands.

    Attributes:
        project_root: The Meltano project's directory (where ``meltano.yml`` is).
        environment: The Meltano environment (``--environment``); None: Meltano's choice
            (``MELTANO_ENVIRONMENT``, else the project's ``default_environment``).
        executable: The ``meltano`` executable.
        env: The process environment of the commands; None: this process's.
    """

    project_root: Path
    environment: str | None = None
    executable: str = field(default_factory=default_meltano)
    env: Mapping[str, str] | None = None

    def command(self, *args: str) -> list[str]:
        """The argument list of ``meltano [--environment=E] ARGS``."""
        environment = [f"--environment={self.environment}"] if self.environment else []
        return [self.executable, *environment, *args]

    def run(self, *args: str) -> str:
        """Run ``meltano ARGS`` in the project; return its standard output.

        Raises:
            MeltanoError: If it exits non-zero (with the end of its standard error).
        """
        done = subprocess.run(  # noqa: S603 - the executable and arguments are ours
            self.command(*args),
            cwd=self.project_root,
            env=None if self.env is None else dict(self.env),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            msg = f"meltano {' '.join(args[:2])} exited {done.returncode}: {tail}"
            raise MeltanoError(msg)
        return done.stdout

    def state_ids(self, pattern: str = "*") -> list[str]:
        """The state ids in Meltano's system database that match a glob ``pattern``."""
        out = self.run("state", "list", "--pattern", pattern)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def get_state(self, state_id: str) -> SingerState:
        """The Singer state stored for ``state_id`` (``{}`` if there is none)."""
        out = self.run("state", "get", state_id)
        stored = json.loads(out[out.index("{") :]) if "{" in out else {}
        return t.cast("SingerState", stored.get("singer_state") or {})

    def set_state(self, state_id: str, state: Mapping[str, t.Any]) -> None:
        """Replace the state stored for ``state_id`` with the Singer state ``state``."""
        self.run("state", "set", "--force", state_id, json.dumps({"singer_state": state}))


def shard_counts_in(ids: Sequence[str], base: str) -> set[int]:
    """The shard counts ``n`` of the ids ``<base>:shard-<i>-of-<n>`` among ``ids``."""
    counts: set[int] = set()
    for found in ids:
        head, _, suffix = found.rpartition(":")
        match = SHARD_SUFFIX.match(suffix)
        if head == base and match:
            counts.add(int(match["count"]))
    return counts
