"""The look-ahead on its own: how far it fetches ahead, on which threads, and what it skips."""

from __future__ import annotations

import threading

from tap_wechat_share.lookahead import LookAhead


class Fetches:
    """A fetch that records which tasks it was asked for, and on which thread."""

    def __init__(self) -> None:
        self.tasks: list[int] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, task: int) -> int:
        with self._lock:
            self.tasks.append(task)
            self.threads.add(threading.current_thread().name)
        return task * 10


def look_ahead(
    fetches: Fetches, in_flight: int, failed: set[int] | None = None
) -> LookAhead[int, int]:
    return LookAhead(
        range(20),
        fetches,
        in_flight=in_flight,
        group=lambda task: task // 5,
        skip=lambda group: group in (failed or set()),
        stopping=lambda: False,
    )


def test_twice_the_requests_in_flight_are_fetched_ahead_on_worker_threads() -> None:
    fetches = Fetches()
    ahead = look_ahead(fetches, in_flight=2)
    assert ahead.take(0) == 0
    ahead._pool.shutdown(wait=True)  # every fetch started or queued has ended
    # The task taken, then 2 x 2 ahead of it.
    assert sorted(fetches.tasks) == [0, 1, 2, 3, 4]
    assert all(name.startswith("wechat-request") for name in fetches.threads)


def test_with_one_request_in_flight_nothing_is_fetched_ahead() -> None:
    fetches = Fetches()
    ahead = look_ahead(fetches, in_flight=1)
    assert [ahead.take(task) for task in (0, 1)] == [0, 10]
    ahead._pool.shutdown(wait=True)  # every fetch started or queued has ended
    assert fetches.tasks == [0, 1]


def test_a_skipped_group_is_not_fetched_and_a_dropped_one_is_forgotten() -> None:
    fetches = Fetches()
    failed: set[int] = set()
    ahead = look_ahead(fetches, in_flight=4, failed=failed)
    assert ahead.take(0) == 0  # fetches ahead tasks 1 to 8: groups 0 and 1
    failed.add(1)
    ahead.drop(1)
    assert ahead.take(10) == 100  # group 2: its tasks come next; group 1 is not fetched again
    ahead._pool.shutdown(wait=True)  # every fetch started or queued has ended
    assert fetches.tasks.count(10) == 1
    assert not [task for task in fetches.tasks if task in range(9, 10)]
