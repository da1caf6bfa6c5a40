"""The Dagster job's own decisions, with a stand-in for ``meltano`` (``tests/fake_meltano.py``).

Which shard count it refuses and what it says to do, preparing the target once before the shards,
retrying a run that could not reach WeChat (and no other), and naming a failure's cause: each
depends only on what ``meltano`` prints and returns, so a stand-in that prints it as Meltano does
is enough, and each job runs in this process in about a second. The job with the real Meltano,
tap, target and PostgreSQL is ``tests/test_shards_dagster.py``.
"""

from __future__ import annotations

import json
import os
import sys
import typing as t
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, RetryPolicy

from orchestration.dagster_wechat.definitions import (
    SHARD_COUNT_TAG,
    refusal,
    shards_job,
    unreachable_retry_policy,
)
from orchestration.meltano_log import MeltanoLog
from tests.test_meltano_e2e import SCRUBBED_PREFIXES

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from dagster import ExecuteInProcessResult

FAKE = Path(__file__).with_name("fake_meltano.py")
BASE = "dev:tap-wechat-share-to-target-postgres"


class Project:
    """A Meltano project directory answered by the stand-in, and a Dagster instance."""

    def __init__(self, root: Path, instance: DagsterInstance) -> None:
        """Use ``root`` (made here) and ``instance``."""
        self.root = root
        self.instance = instance
        (root / ".meltano").mkdir(parents=True)
        self.executable = root / "meltano"
        runner = f"import runpy\nrunpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
        self.executable.write_text(f"#!{sys.executable}\n{runner}")
        self.executable.chmod(0o755)

    @property
    def store(self) -> dict[str, t.Any]:
        """What the stand-in holds: states, outcomes to play, the calls made."""
        path = self.root / "fake-meltano.json"
        return t.cast("dict[str, t.Any]", json.loads(path.read_text())) if path.exists() else {}

    def set(self, **values: t.Any) -> None:
        """Set some of the stand-in's keys."""
        (self.root / "fake-meltano.json").write_text(json.dumps({**self.store, **values}))

    def runs(self) -> list[dict[str, t.Any]]:
        return [call for call in self.store.get("calls", []) if call["args"][0] == "run"]

    def execute(self, shard_count: int, **config: t.Any) -> ExecuteInProcessResult:
        """Run the job in this process (steps one after the other), the environment as it is now."""
        return shards_job().execute_in_process(
            run_config={
                "ops": {"plan_shards": {"config": {"shard_count": shard_count, **config}}},
                "resources": {
                    "meltano": {
                        "config": {
                            "project_root": str(self.root),
                            "environment": "dev",
                            "executable": str(self.executable),
                        }
                    }
                },
            },
            instance=self.instance,
            raise_on_error=False,
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    for name in list(os.environ):
        if name.startswith((*SCRUBBED_PREFIXES, "WECHAT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MELTANO_DATABASE_URI", "postgresql+psycopg://meltano@db.invalid/meltano")
    monkeypatch.setenv("WECHAT_UNREACHABLE_RETRY_DELAY", "1")
    with DagsterInstance.ephemeral() as instance:
        yield Project(tmp_path / "project", instance)


def failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """Step key -> its failure's message (a ``Failure``'s description, else the error chain's)."""
    found = {}
    for event in result.all_events:
        if event.event_type != DagsterEventType.STEP_FAILURE:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None:
            found[event.step_key or ""] = data.user_failure_data.description or ""
            continue
        messages, error = [], data.error
        while error is not None:
            messages.append(error.message)
            error = error.cause
        found[event.step_key or ""] = "\n".join(messages)
    return found


def test_the_target_is_prepared_once_before_the_shards_with_the_selected_streams(
    project: Project,
) -> None:
    result = project.execute(3)
    assert result.success
    calls = [call["args"][:2] for call in project.store["calls"]]
    # Listing the states first (Meltano's first use), the catalog, the tap's schemas, the target.
    assert calls[:4] == [
        ["state", "list"],
        ["invoke", "--dump=catalog"],
        ["invoke", "tap-wechat-share"],
        ["invoke", "target-postgres"],
    ]
    assert calls[4:] == [["run", "tap-wechat-share"]] * 3
    # The stand-in's catalog deselects article_share: its table is not made.
    assert project.store["prepared"] == ["share_hour", "share_day"]
    prepare = project.store["calls"][1]
    assert prepare["sys_dir"] == str(project.root / ".meltano" / "shards" / "prepare")
    assert sorted(call["shard"] for call in project.runs()) == ["0", "1", "2"]
    assert result.dagster_run.tags[SHARD_COUNT_TAG] == "3"


def test_a_run_that_could_not_reach_wechat_is_retried_after_the_delay(project: Project) -> None:
    project.set(outcomes=["unreachable"])
    result = project.execute(1)
    assert result.success
    assert [call["shard"] for call in project.runs()] == ["0", "0"]
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert [e.step_key for e in retries] == ["run_shard[shard_0_of_1]"]
    waited = retries[0].event_specific_data
    assert waited is not None
    assert getattr(waited, "seconds_to_wait", None) == 1
    assert "WeChat cannot be reached" in str(getattr(waited, "error", ""))


def test_retries_stop_after_the_configured_number(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WECHAT_UNREACHABLE_RETRIES", "1")
    project.set(outcomes=["unreachable"] * 3)
    result = project.execute(1)
    assert not result.success
    assert len(project.runs()) == 2
    assert (
        "(WeChat cannot be reached: tried again after a delay"
        in failures(result)["run_shard[shard_0_of_1]"]
    )


@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        ("errcode", "tap-wechat-share: wxfake000000000001 failed in share_day: errcode 40125"),
        (
            "target",
            "target-postgres: sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation)",
        ),
    ],
)
def test_other_failures_are_not_retried_and_name_their_cause(
    project: Project, outcome: str, cause: str
) -> None:
    project.set(outcomes=[outcome])
    result = project.execute(1)
    assert not result.success
    assert len(project.runs()) == 1
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    message = failures(result)["run_shard[shard_0_of_1]"]
    assert message.startswith(f"shard-0-of-1: meltano run exited 1: {cause}")
    assert "BrokenPipe" not in message
    assert "Broken pipe" not in message


def test_a_switch_from_the_unsharded_run_is_refused_with_the_reshard_command(
    project: Project,
) -> None:
    project.set(states={BASE: {"bookmarks": {}}})
    refused = project.execute(3)
    assert not refused.success
    assert failures(refused) == {
        "plan_shards": (
            f"states exist for the unsharded run ({BASE}) but none for 3 shard(s): run "
            f"scripts/reshard --from-state-id {BASE} --to 3 first (or set allow_new_shard_count "
            "to read every account from start_date)"
        )
    }
    assert project.runs() == []
    assert [call["args"][:2] for call in project.store["calls"]] == [["state", "list"]]
    allowed = project.execute(3, allow_new_shard_count=True)
    assert allowed.success
    assert len(project.runs()) == 3


def test_a_new_count_is_refused_with_the_latest_count_not_the_largest(project: Project) -> None:
    assert project.execute(3, allow_new_shard_count=True).success
    assert project.execute(2, allow_new_shard_count=True).success
    refused = project.execute(4)
    assert "scripts/reshard --from 2 --to 4 first" in failures(refused)["plan_shards"]
    assert project.execute(3).success  # its states exist: no refusal
    refused = project.execute(4)
    assert "scripts/reshard --from 3 --to 4 first" in failures(refused)["plan_shards"]


def test_refusal_lines_when_the_latest_count_is_not_known() -> None:
    assert refusal(4, [3], None, None).endswith(
        "run scripts/reshard --from 3 --to 4 first (or set allow_new_shard_count to read every "
        "account from start_date)"
    )
    both = refusal(4, [2, 3], BASE, None)
    assert both == (
        f"states exist for 2, 3 shard(s) and the unsharded run ({BASE}) but none for 4 shard(s): "
        f"run scripts/reshard --from 2, --from 3 or --from-state-id {BASE} --to 4, whichever ran "
        "last, first (or set allow_new_shard_count to read every account from start_date)"
    )
    assert refusal(4, [2, 3], BASE, 2).count("--from 2 --to 4 first") == 1


def test_the_retry_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WECHAT_UNREACHABLE_RETRIES", raising=False)
    monkeypatch.delenv("WECHAT_UNREACHABLE_RETRY_DELAY", raising=False)
    policy = unreachable_retry_policy()
    assert isinstance(policy, RetryPolicy)
    assert (policy.max_retries, [policy.calculate_delay(n) for n in (1, 2, 3)]) == (
        3,
        [300, 600, 900],
    )
    monkeypatch.setenv("WECHAT_UNREACHABLE_RETRIES", "0")
    assert unreachable_retry_policy() is None
    monkeypatch.setenv("WECHAT_UNREACHABLE_RETRY_DELAY", "5 min")
    with pytest.raises(ValueError, match="WECHAT_UNREACHABLE_RETRY_DELAY must be a whole number"):
        unreachable_retry_policy()


def test_the_log_reader_keeps_causes_and_drops_broken_pipes() -> None:
    log = MeltanoLog("tap-wechat-share", "target-postgres")
    stamp = "2026-12-01T08:30:00.000000Z"
    for line in [
        f"{stamp} [info     ] target-postgres Traceback (most recent call last):",
        f'{stamp} [info     ] target-postgres   File "x.py", line 1, in f',
        f"{stamp} [info     ] target-postgres psycopg.OperationalError: connection refused",
        f"{stamp} [info     ] target-postgres psycopg.OperationalError: connection refused",
        f"{stamp} [info     ] tap-wechat-share BrokenPipeError: [Errno 32] Broken pipe",
        f"{stamp} [error    ] tap-wechat-share WeChat cannot be reached: connection refused",
        f"{stamp} [error    ] meltano      Loader failed",
    ]:
        log.feed(line)
    assert log.causes == [
        "target-postgres: psycopg.OperationalError: connection refused",
        "tap-wechat-share: WeChat cannot be reached: connection refused",
    ]
    # WeChat could not be reached, but the target failed too: trying again would not help.
    assert log.unreachable
    assert not log.retryable()
    quiet = MeltanoLog("tap-wechat-share", "target-postgres")
    quiet.feed("something else\n")
    assert quiet.describe("x exited 1") == "x exited 1; the end of its log:\nsomething else"
    # Meltano's own errors count only when no plugin said why; "Extractor failed" never does.
    own = MeltanoLog("tap-wechat-share", "target-postgres")
    own.feed(f"{stamp} [error    ] meltano      Extractor failed")
    own.feed(f"{stamp} [error    ] meltano      No state backend for 'gs://x'")
    own.feed(f"{stamp} [info     ] tap-wechat-share   indented, not an error")
    assert own.causes == ["meltano: No state backend for 'gs://x'"]
    # meltano invoke names the plugin's lines "meltano".
    invoked = MeltanoLog("tap-wechat-share", "target-postgres", invoked="target-postgres")
    invoked.feed(f"{stamp} [info     ] meltano      Traceback (most recent call last):")
    invoked.feed(f'{stamp} [info     ] meltano        File "x.py", line 1, in f')
    invoked.feed(f"{stamp} [info     ] meltano      KeyError: 'host'")
    assert invoked.causes == ["target-postgres: KeyError: 'host'"]
    assert invoked.loader_failed
