"""Look-ahead: requests kept in flight ahead of a reader that takes their results in order.

The SDK reads a stream's partitions (here: accounts) one after another on the main thread, and
its state and message writing are not thread-safe (sdk issues 183 and 2121). So the main thread
stays the only one that touches the SDK: it *takes* results in the order it needs them, while
a pool of ``in_flight`` worker threads fetches what comes next in the plan: the next windows of
the same account, then the next accounts, then the next stream's. Workers only make requests
and check answers.

- At most ``in_flight`` fetches run at once (the pool's size), whatever else happens.
- At most ``depth`` results are fetched ahead and held, so memory does not grow with the plan.
- A task the plan did not foresee (or that was dropped) is fetched when it is taken.
- Tasks of a ``skip``-ped group (a failed account) are not started; :meth:`LookAhead.drop`
  forgets those already fetched, and :meth:`LookAhead.drop_where` those of a stream whose
  endpoint is retired (held, they would fill ``depth`` and nothing more would be fetched ahead).
- While it waits, the reader checks ``stopping`` a few times a second, so a signal is acted on
  promptly even when a request hangs.
"""

from __future__ import annotations

import typing as t
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable

K = t.TypeVar("K", bound="Hashable")
R = t.TypeVar("R")

POLL_SECONDS = 0.1
"""How often a waiting reader checks whether the run is stopping."""


class Stopping(BaseException):
    """The run was asked to stop (a signal): raised where the reader waits, never mid-message.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way (the
    SDK's among them) mistakes it for a failure of a stream or an account.
    """


class LookAhead(t.Generic[K, R]):
    """Fetches the tasks of a plan ahead of a reader that takes their results in plan order.

    Args:
        plan: The tasks, in the order the reader will take them (consumed lazily, on the
            reader's thread).
        fetch: Makes one task's request(s) and returns its result; runs on a worker thread.
        in_flight: The most fetches running at once; 1 fetches nothing ahead.
        group: A task's group (its account); ``skip(group)`` is asked before a task starts.
        skip: Whether a group's remaining tasks are no longer wanted.
        stopping: Whether the run is stopping; checked while the reader waits.
    """

    def __init__(  # noqa: PLR0913 - each is one piece of the contract above
        self,
        plan: Iterable[K],
        fetch: Callable[[K], R],
        *,
        in_flight: int,
        group: Callable[[K], Hashable],
        skip: Callable[[Hashable], bool],
        stopping: Callable[[], bool],
    ) -> None:
        """Start no work yet: the first :meth:`take` fills the pipeline."""
        self._plan = iter(plan)
        self._fetch = fetch
        self._group = group
        self._skip = skip
        self._stopping = stopping
        self.in_flight = max(1, in_flight)
        self.depth = 0 if self.in_flight == 1 else 2 * self.in_flight
        self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="wechat-request")
        self._ahead: OrderedDict[K, Future[R]] = OrderedDict()
        self._unforeseen: set[K] = set()
        self._running: set[Future[R]] = set()
        self._closed = False

    def take(self, task: K) -> R:
        """Return ``task``'s result, fetching it now if it was not fetched ahead.

        Args:
            task: The task the reader needs next.

        Returns:
            What ``fetch`` returned for it.

        Raises:
            Stopping: If the run is stopping.
        """
        future = self._ahead.pop(task, None)
        if future is None:
            if self.depth:
                self._unforeseen.add(task)  # so that the plan does not fetch it again
            future = self._submit(task)
        self._fill()
        while True:
            if self._stopping():
                future.cancel()
                raise Stopping
            # wait(), not result(timeout=...): before Python 3.11 that raises
            # concurrent.futures.TimeoutError, which is not the builtin TimeoutError.
            if wait((future,), timeout=POLL_SECONDS).done:
                return future.result()

    def drop(self, group: Hashable) -> None:
        """Forget the tasks of ``group`` fetched ahead (cancelling those not started).

        Nothing new starts here: the reader's next :meth:`take` fills the pipeline again. (An
        account failed before the run's first request, for an unusable bookmark, must not set
        off requests for accounts whose bookmarks are yet to be checked.)
        """
        self.drop_where(lambda task: self._group(task) == group)

    def drop_where(self, unwanted: Callable[[K], bool]) -> None:
        """Forget the tasks fetched ahead for which ``unwanted`` is true (as :meth:`drop`).

        The plan must not yield such tasks any more: those held would never be taken, and
        would keep ``depth`` full.
        """
        for task in [task for task in self._ahead if unwanted(task)]:
            self._ahead.pop(task).cancel()

    def _fill(self) -> None:
        while not self._closed and len(self._ahead) < self.depth:
            task = next(self._plan, None)
            if task is None:
                return
            if task in self._ahead or task in self._unforeseen or self._skip(self._group(task)):
                continue
            self._ahead[task] = self._submit(task)

    def _submit(self, task: K) -> Future[R]:
        future = self._pool.submit(self._fetch, task)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    def close(self) -> None:
        """Cancel what has not started and let the workers go (without waiting for them)."""
        self._closed = True
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> bool:
        """Whether a fetch is still running (after :meth:`close`, until its request ends)."""
        return any(future.running() for future in list(self._running))
