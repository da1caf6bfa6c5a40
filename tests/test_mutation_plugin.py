"""The mutation run's call stack (tests/mutation_plugin.py) behaves as mutmut's own."""

from __future__ import annotations

import threading

from mutmut.core import MutmutCallStack

import tests.mutation_plugin  # noqa: F401 - patches MutmutCallStack


def test_the_call_stack_is_restored_last_in_first_out_and_starts_empty_in_each_thread() -> None:
    assert MutmutCallStack.get() == (None, 0)
    outer = MutmutCallStack.set(("a", 1))
    inner = MutmutCallStack.set(("b", 2))
    assert MutmutCallStack.get() == ("b", 2)
    seen: list[tuple[str | None, int]] = []
    thread = threading.Thread(target=lambda: seen.append(MutmutCallStack.get()))
    thread.start()
    thread.join()
    assert seen == [(None, 0)]
    MutmutCallStack.reset(inner)
    assert MutmutCallStack.get() == ("a", 1)
    MutmutCallStack.reset(outer)
    assert MutmutCallStack.get() == (None, 0)
