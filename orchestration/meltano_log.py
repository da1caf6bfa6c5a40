"""What a failed ``meltano run`` or ``meltano invoke`` says about why it failed.

Meltano prints its own lines and every plugin's (tap, target) log lines on its standard error, one
per line, in its console format: ``<time> [<level>] <name> <text>``, ``<name>`` padded to 12
characters (``NO_COLOR`` set: no colour codes). ``meltano run`` names each line's plugin;
``meltano invoke`` names the invoked plugin's lines ``meltano``, like its own. When a target
fails, the tap (and Meltano, which copies the tap's output into the target) usually fails next
with a ``BrokenPipeError``: the end of the log shows that consequence, not the cause.
:class:`MeltanoLog` reads the lines as they come and keeps what names the cause:

* the last line of each Python traceback a plugin printed (``psycopg.errors.UniqueViolation: ...``);
* every line a plugin logged at ERROR or CRITICAL (the tap logs its failed accounts so);
* never a broken pipe, which only says that the other end of a pipe had stopped;
* Meltano's own ERROR lines only when no plugin said anything (``Extractor failed`` and
  ``Loader failed`` say which, not why).

It also tells whether the tap stopped because WeChat cannot be reached (its ERROR line with
:data:`UNREACHABLE`, a fault of the network that a later try may not meet), which the Dagster job
retries after a delay, unlike every other failure.
"""

from __future__ import annotations

import collections
import re

UNREACHABLE = "WeChat cannot be reached"
"""The phrase of the tap's ERROR line when it stops because WeChat cannot be reached."""

CONSOLE_LINE = re.compile(r"^\S+ \[(?P<level>[a-z]+)\s*\] (?P<rest>(?P<name>\S+).*)$")
NAME_WIDTH = 12
"""Meltano pads the name to this width, then one space: the text starts after it."""
MELTANO = "meltano"
GENERIC = frozenset({"", "Extractor failed", "Loader failed", "Block run completed"})
"""Meltano's own ERROR lines that name no cause."""
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)?: \S")
BROKEN_PIPE = ("BrokenPipeError", "Broken pipe")
ERROR_LEVELS = frozenset({"error", "critical", "fatal"})
MAX_CAUSES = 8
MAX_CAUSE_CHARS = 500
TAIL_LINES = 20


class MeltanoLog:
    """The lines of one Meltano command, read as they come, and what they say about a failure.

    Attributes:
        extractor: The tap's plugin name.
        loader: The target's plugin name.
        tail: The last lines, as printed.
        unreachable: Whether the tap logged at ERROR that WeChat cannot be reached.
    """

    def __init__(self, extractor: str, loader: str, invoked: str | None = None) -> None:
        """Start reading the log of ``meltano run`` of ``extractor`` and ``loader``.

        Args:
            extractor: The tap's plugin name.
            loader: The target's plugin name.
            invoked: The plugin of ``meltano invoke``, whose lines Meltano names ``meltano``.
        """
        self.extractor = extractor
        self.loader = loader
        self.invoked = invoked
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.unreachable = False
        self._causes: collections.deque[tuple[str, str]] = collections.deque(maxlen=MAX_CAUSES)
        self._own: collections.deque[str] = collections.deque(maxlen=MAX_CAUSES)
        self._in_traceback: set[str] = set()

    def feed(self, line: str) -> None:
        """Read one line of Meltano's output."""
        line = line.rstrip("\r\n")
        self.tail.append(line)
        found = CONSOLE_LINE.match(line)
        if not found:
            return
        name, level = found["name"], found["level"]
        text = found["rest"][max(len(name), NAME_WIDTH) + 1 :]
        if name == MELTANO and self.invoked:
            name = self.invoked
        elif name == MELTANO:
            if level in ERROR_LEVELS and text.strip() not in GENERIC:
                self._own.append(text.strip()[:MAX_CAUSE_CHARS])
            return
        if self._traceback(name, text):
            return
        if level in ERROR_LEVELS:
            if name == self.extractor and UNREACHABLE in text:
                self.unreachable = True
            self._keep(name, text.strip())

    def _traceback(self, name: str, text: str) -> bool:
        """Follow a plugin's traceback; keep its exception's line. Whether the line was one's."""
        if text.strip() == "Traceback (most recent call last):":
            self._in_traceback.add(name)
            return True
        if name not in self._in_traceback:
            return False
        # Frames and source lines are indented; the exception's own line is not.
        if not text or text[0].isspace():
            return True
        if EXCEPTION_LINE.match(text):
            self._in_traceback.discard(name)
            self._keep(name, text)
            return True
        return False

    def _keep(self, name: str, text: str) -> None:
        if not text or any(marker in text for marker in BROKEN_PIPE):
            return
        cause = (name, text[:MAX_CAUSE_CHARS])
        if cause in self._causes:  # a target logs its error, then raises it again
            return
        self._causes.append(cause)

    @property
    def causes(self) -> list[str]:
        """The lines that name the failure's cause, oldest first: ``<plugin>: <text>``."""
        if not self._causes:
            return [f"{MELTANO}: {text}" for text in self._own]
        return [f"{name}: {text}" for name, text in self._causes]

    @property
    def loader_failed(self) -> bool:
        """Whether the target printed an error of its own."""
        return any(name == self.loader for name, _ in self._causes)

    def retryable(self) -> bool:
        """Whether the run failed only because WeChat could not be reached (worth a later try)."""
        return self.unreachable and not self.loader_failed

    def describe(self, head: str) -> str:
        """A failure's message: ``head``, then the cause's lines (else the end of the log)."""
        if self.causes:
            return f"{head}: " + "\n".join(self.causes)
        return f"{head}; the end of its log:\n" + "\n".join(self.tail)
