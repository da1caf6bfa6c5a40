"""A stand-in for the ``meltano`` command, for the Dagster job's own decisions (tests only).

The job runs ``meltano`` as a subprocess and reads its exit code, its output and its states; the
job's decisions (refuse a shard count, prepare the target once, retry a run that could not reach
WeChat and no other, name a failure's cause) depend on nothing else. This script answers those
commands as Meltano would, in Meltano's console format (``<time> [<level>] <name> <text>``),
without a tap, a target or a database: the real ones are in ``tests/test_shards_dagster.py``.

State lives in ``fake-meltano.json`` in the project directory: ``states`` (state id -> Singer
state), ``outcomes`` (what each ``meltano run`` does, in order: ``ok``, ``unreachable``,
``errcode`` or ``target``; ``ok`` once they are used up) and ``calls`` (every command line, in
order, with the run's shard settings).
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from pathlib import Path

STORE = Path("fake-meltano.json")
STAMP = "2026-12-01T08:30:00.000000Z"
BROKEN_PIPE_TAIL = [
    f"{STAMP} [error    ] meltano",
    "╭───────────────────── Traceback (most recent call last) ──────────────────────╮",
    "│ meltano/core/block/singer.py:194 in close_stdin                              │",
    "│ ❱ 194 │   │   │   await self.process_handle.stdin.wait_closed()              │",
    "╰──────────────────────────────────────────────────────────────────────────────╯",
    "BrokenPipeError",
    "",
    f"{STAMP} [info     ] meltano      Run completed",
]
SCHEMAS = {
    "share_hour": {"type": "object", "properties": {"app_id": {"type": "string"}}},
    "share_day": {"type": "object", "properties": {"app_id": {"type": "string"}}},
    "article_share": {"type": "object", "properties": {"app_id": {"type": "string"}}},
}
DESELECTED = {"article_share"}


def log(level: str, name: str, text: str) -> None:
    """Print a line as Meltano's console log does (the name padded to 12 characters)."""
    print(f"{STAMP} [{level:<9}] {name:<12} {text}", file=sys.stderr)


def run(store: dict[str, object], tap: str, target: str, suffix: str) -> int:
    """``meltano run TAP TARGET --state-id-suffix SUFFIX``: play the next outcome."""
    outcomes = store.setdefault("outcomes", [])
    assert isinstance(outcomes, list)
    outcome = outcomes.pop(0) if outcomes else "ok"
    index, count = (
        os.environ["TAP_WECHAT_SHARE_SHARD_INDEX"],
        os.environ["TAP_WECHAT_SHARE_SHARD_COUNT"],
    )
    log("info", tap, f"shard {index} of {count}: 1 of 1 account(s)")
    if outcome == "ok":
        states = store.setdefault("states", {})
        assert isinstance(states, dict)
        states[f"dev:{tap}-to-{target}:{suffix}"] = {"bookmarks": {}}
        log("info", "meltano", "Block run completed")
        return 0
    if outcome == "unreachable":
        log(
            "error",
            tap,
            "WeChat cannot be reached: could not connect to 127.0.0.1:9 (connection refused) for "
            "40 s; nothing was lost: run again later",
        )
        log("error", "meltano", "Extractor failed")
        return 1
    if outcome == "errcode":
        log(
            "error", tap, "wxfake000000000001 failed in share_day: errcode 40125: invalid appsecret"
        )
        log("error", tap, "1 of 1 accounts failed; the others were read and their state written:")
        log("error", "meltano", "Extractor failed")
        return 1
    # "target": the target fails, the tap's and Meltano's writes then meet a broken pipe.
    log("info", target, "Traceback (most recent call last):")
    log("info", target, '  File "target_postgres/connector.py", line 97, in prepare_schema')
    log("info", target, "    self.create_schema(schema_name)")
    log(
        "info",
        target,
        "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key value "
        'violates unique constraint "pg_namespace_nspname_index"',
    )
    log("info", target, "DETAIL:  Key (nspname)=(wechat) already exists.")
    log("info", tap, "Traceback (most recent call last):")
    log("info", tap, '  File "singer_sdk/io_base.py", line 60, in _write_message')
    log("info", tap, "BrokenPipeError: [Errno 32] Broken pipe")
    for line in BROKEN_PIPE_TAIL:
        print(line, file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Answer one ``meltano`` command line."""
    args = [arg for arg in argv if not arg.startswith("--environment=")]
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    calls = store.setdefault("calls", [])
    calls.append(
        {
            "args": args,
            "shard": os.environ.get("TAP_WECHAT_SHARE_SHARD_INDEX"),
            "sys_dir": os.environ.get("MELTANO_SYS_DIR_ROOT"),
        }
    )
    code = 0
    match args:
        case ["state", "list", "--pattern", pattern]:
            for state_id in store.get("states", {}):
                if fnmatch.fnmatchcase(state_id, pattern):
                    print(state_id)
        case ["invoke", "--dump=catalog", _tap]:
            streams = [
                {
                    "tap_stream_id": name,
                    "schema": schema,
                    "metadata": [
                        {"breadcrumb": [], "metadata": {"selected": name not in DESELECTED}}
                    ],
                }
                for name, schema in SCHEMAS.items()
            ]
            print(json.dumps({"streams": streams}))
        case ["invoke", _tap, "--test=schema"]:
            for name, schema in SCHEMAS.items():
                message = {"type": "SCHEMA", "stream": name, "schema": schema, "key_properties": []}
                print(json.dumps(message))
        case ["invoke", _target]:
            store["prepared"] = [json.loads(line)["stream"] for line in sys.stdin if line.strip()]
        case ["run", tap, target, "--state-id-suffix", suffix]:
            code = run(store, tap, target, suffix)
        case _:
            print(f"fake meltano: unexpected command {args}", file=sys.stderr)
            code = 2
    STORE.write_text(json.dumps(store))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
