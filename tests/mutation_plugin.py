"""A pytest plugin for ``scripts/mutation`` only (loaded by ``[tool.mutmut]`` in pyproject.toml).

mutmut's stats phase keeps its call stack in a ``ContextVar`` and sets it on every call of the
tap's functions. On CPython before 3.12, ``ContextVar.set`` crashes the interpreter (SIGSEGV)
when a garbage collection inside it runs a finalizer that sets a ``ContextVar`` again
(python/cpython#148891). The tap has such finalizers (``weakref.finalize`` in output.py, the
``finally`` blocks of generators collected unfinished), and its worker threads make collections
in the middle of those calls frequent, so the stats phase crashed in most runs.

The tap and its tests use no ``contextvars`` and no asyncio, so a per-thread stack is the same
call stack to mutmut: it starts empty in a new thread, as a ``ContextVar`` does, and is restored
in the same last-in first-out order.
"""

from __future__ import annotations

import threading

from mutmut.core import MutmutCallStack

_Frame = tuple[str | None, int]
_stack = threading.local()


def _get(_cls: type) -> _Frame:
    frame: _Frame = getattr(_stack, "frame", (None, 0))
    return frame


def _set(cls: type, value: _Frame) -> _Frame:
    previous = _get(cls)
    _stack.frame = value
    return previous


def _reset(_cls: type, token: _Frame) -> None:
    _stack.frame = token


MutmutCallStack.get = classmethod(_get)  # type: ignore[method-assign,assignment]
MutmutCallStack.set = classmethod(_set)  # type: ignore[method-assign,assignment]
MutmutCallStack.reset = classmethod(_reset)  # type: ignore[method-assign,assignment]
