"""Change the number of shards without reading history again (``scripts/reshard``).

Reads every old shard's state (``meltano state get``), merges the partitions of each stream into
one state (each account's bookmark kept; an account found twice keeps its later bookmark), and
sets that state for every new shard's state id (``meltano state set --force``). The new shards'
own states, if they exist already, are merged in too, so running it twice does no harm. The old
states are left as they are.

Each new shard then finds its accounts' bookmarks in its state and reads only ``lookback_days``
(and the new days) per account; the accounts of the other shards pass through its state untouched.

Usage, in the Meltano project, with ``MELTANO_DATABASE_URI`` (and ``MELTANO_ENVIRONMENT``) as the
runs have them::

    scripts/reshard --from 3 --to 2
    scripts/reshard --from-state-id prod:tap-wechat-share-to-target-postgres --to 4  # unsharded
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

if __package__ in {None, ""}:  # run as a file (scripts/reshard): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestration.shards import (
    EXTRACTOR,
    LOADER,
    MeltanoCli,
    MeltanoError,
    accounts_in,
    default_meltano,
    merge_states,
    shard_state_ids,
)

DEFAULT_ENVIRONMENT = re.compile(r"^default_environment:\s*['\"]?([\w.-]+)", re.MULTILINE)


def project_environment(project_root: Path) -> str | None:
    """The environment ``meltano run`` uses: ``MELTANO_ENVIRONMENT``, else ``meltano.yml``'s."""
    if os.environ.get("MELTANO_ENVIRONMENT"):
        return os.environ["MELTANO_ENVIRONMENT"]
    meltano_yml = project_root / "meltano.yml"
    if meltano_yml.exists():
        found = DEFAULT_ENVIRONMENT.search(meltano_yml.read_text(encoding="utf-8"))
        if found:
            return found[1]
    return None


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        msg = f"a shard count is at least 1, not {number}"
        raise argparse.ArgumentTypeError(msg)
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="scripts/reshard",
        description=(
            "Merge the old shards' Meltano states and set the result for every new shard, so "
            "that a new shard count reads only lookback_days per account."
        ),
    )
    parser.add_argument("--from", dest="old_count", type=_positive, help="the old number of shards")
    parser.add_argument(
        "--from-state-id",
        action="append",
        default=[],
        metavar="ID",
        help="a further state id to merge (e.g. the unsharded run's); repeatable",
    )
    parser.add_argument(
        "--to", dest="new_count", type=_positive, required=True, help="the new number of shards"
    )
    parser.add_argument(
        "--environment", help="Meltano environment (default: MELTANO_ENVIRONMENT, else meltano.yml)"
    )
    parser.add_argument("--extractor", default=EXTRACTOR)
    parser.add_argument("--loader", default=LOADER)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument("--meltano", default=default_meltano(), help="the meltano executable")
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be set; set nothing"
    )
    args = parser.parse_args(argv)
    if args.old_count is None and not args.from_state_id:
        parser.error("give --from N (the old shard count) or --from-state-id ID")
    return args


def main(argv: list[str] | None = None) -> int:
    """Reshard; return the exit code."""
    args = parse_args(argv)
    environment = args.environment or project_environment(args.project_root)
    if not environment:
        print(
            "reshard: no Meltano environment: give --environment or set MELTANO_ENVIRONMENT",
            file=sys.stderr,
        )
        return 2
    meltano = MeltanoCli(args.project_root, environment, args.meltano)
    names = {"extractor": args.extractor, "loader": args.loader}
    old_ids = [
        *(shard_state_ids(environment, args.old_count, **names) if args.old_count else []),
        *args.from_state_id,
    ]
    new_ids = shard_state_ids(environment, args.new_count, **names)
    try:
        old_states = [meltano.get_state(old_id) for old_id in old_ids]
        if not any(any(accounts_in(state).values()) for state in old_states):
            print(
                f"reshard: no bookmarks in {', '.join(old_ids)}: nothing to carry over "
                "(check --from, --environment and MELTANO_DATABASE_URI)",
                file=sys.stderr,
            )
            return 1
        current = [meltano.get_state(new_id) for new_id in new_ids if new_id not in old_ids]
        merged = merge_states([*old_states, *current])
        for stream, app_ids in sorted(accounts_in(merged).items()):
            print(f"{stream}: {len(app_ids)} account(s) with a bookmark")
        for new_id in new_ids:
            if args.dry_run:
                print(f"would set {new_id}")
                continue
            meltano.set_state(new_id, merged)
            print(f"set {new_id}")
    except MeltanoError as exc:
        print(f"reshard: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
