"""Merging shard states (orchestration/shards.py) and the reshard command line, without Meltano.

The whole procedure, through Meltano and the Dagster job, is tests/test_shards_dagster.py.
"""

from __future__ import annotations

import subprocess
import sys
import typing as t

import pytest
from dagster import Failure, multiprocess_executor

from orchestration.dagster_wechat.definitions import (
    ShardsConfig,
    configured_shard_count,
    shard_executor,
)
from orchestration.shards import (
    accounts_in,
    merge_states,
    shard_counts_in,
    shard_state_ids,
    shard_suffix,
    state_id,
)
from tests.test_meltano_e2e import REPO

A, B, C = "wx000000000000000a", "wx000000000000000b", "wx000000000000000c"


def partition(app_id: str, bookmark: str | None) -> dict[str, t.Any]:
    found: dict[str, t.Any] = {"context": {"app_id": app_id}}
    if bookmark is not None:
        found.update(replication_key="ref_date", replication_key_value=bookmark)
    return found


def state(**streams: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    return {
        "bookmarks": {name: {"partitions": parts} for name, parts in streams.items()},
        "currently_syncing": None,
    }


def bookmarks(merged: dict[str, t.Any], stream: str) -> dict[str, str | None]:
    return {
        part["context"]["app_id"]: part.get("replication_key_value")
        for part in merged["bookmarks"][stream]["partitions"]
    }


def test_merge_keeps_every_account_and_the_later_bookmark_whatever_the_order() -> None:
    # Shard 0 owns A (fresh) and holds a stale copy of B; shard 1 owns B (fresh) and C.
    shard0 = state(share_hour=[partition(A, "2024-03-09"), partition(B, "2024-03-02")])
    shard1 = state(
        share_hour=[partition(B, "2024-03-09"), partition(C, "2024-03-08")],
        share_day=[partition(C, "2024-03-08")],
    )
    for states in ([shard0, shard1], [shard1, shard0]):
        merged = merge_states(states)
        assert bookmarks(merged, "share_hour") == {
            A: "2024-03-09",
            B: "2024-03-09",
            C: "2024-03-08",
        }
        assert bookmarks(merged, "share_day") == {C: "2024-03-08"}
        assert set(merged) == {"bookmarks"}


def test_a_partition_with_a_bookmark_wins_over_one_without() -> None:
    merged = merge_states(
        [state(share_hour=[partition(A, None)]), state(share_hour=[partition(A, "2024-03-01")])]
    )
    assert bookmarks(merged, "share_hour") == {A: "2024-03-01"}
    merged = merge_states(
        [state(share_hour=[partition(A, "2024-03-01")]), state(share_hour=[partition(A, None)])]
    )
    assert bookmarks(merged, "share_hour") == {A: "2024-03-01"}


def test_merging_nothing_gives_an_empty_state_and_accounts_in_counts_bookmarks_only() -> None:
    assert merge_states([{}, {"bookmarks": {}}]) == {"bookmarks": {}}
    assert accounts_in(state(share_hour=[partition(A, "2024-03-01"), partition(B, None)])) == {
        "share_hour": {A}
    }


def test_state_ids_are_meltanos_run_ids_with_the_shard_suffix() -> None:
    assert state_id("prod") == "prod:tap-wechat-share-to-target-postgres"
    assert shard_state_ids("prod", 2) == [
        "prod:tap-wechat-share-to-target-postgres:shard-0-of-2",
        "prod:tap-wechat-share-to-target-postgres:shard-1-of-2",
    ]
    base = state_id("dev")
    found = [f"{base}:shard-0-of-3", f"{base}:shard-2-of-3", f"{base}:other", "prod:x:shard-0-of-5"]
    assert shard_counts_in(found, base) == {3}
    for index, count in ((0, 0), (2, 2), (-1, 3)):
        with pytest.raises(ValueError, match="index must be 0 to count - 1"):
            shard_suffix(index, count)


def test_shard_count_comes_from_run_config_else_the_environment_else_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WECHAT_SHARD_COUNT", raising=False)
    assert configured_shard_count(ShardsConfig()) == 1
    monkeypatch.setenv("WECHAT_SHARD_COUNT", "4")
    assert configured_shard_count(ShardsConfig()) == 4
    assert configured_shard_count(ShardsConfig(shard_count=3)) == 3
    monkeypatch.setenv("WECHAT_SHARD_COUNT", "four")
    with pytest.raises(Failure, match="WECHAT_SHARD_COUNT must be a whole number"):
        configured_shard_count(ShardsConfig())
    with pytest.raises(Failure, match="shard_count must be 1 or more, not -2"):
        configured_shard_count(ShardsConfig(shard_count=-2))


def test_reshard_needs_the_old_shards_and_a_positive_count() -> None:
    def reshard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "orchestration" / "reshard.py"), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    missing = reshard("--to", "2")
    assert missing.returncode == 2
    assert "give --from N (the old shard count) or --from-state-id ID" in missing.stderr
    zero = reshard("--from", "3", "--to", "0")
    assert zero.returncode == 2
    assert "a shard count is at least 1, not 0" in zero.stderr


def test_the_executor_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WECHAT_DAGSTER_EXECUTOR", raising=False)
    assert shard_executor() is multiprocess_executor
    monkeypatch.setenv("WECHAT_DAGSTER_EXECUTOR", "kubernetes")
    with pytest.raises(ValueError, match="must be one of multiprocess, k8s, celery, celery-k8s"):
        shard_executor()
    monkeypatch.setenv("WECHAT_DAGSTER_EXECUTOR", "celery")
    with pytest.raises(ImportError, match="celery needs the dagster-celery package"):
        shard_executor()
