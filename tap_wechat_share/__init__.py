"""tap-wechat-share: WeChat Official Account share analytics as a Singer tap."""

from __future__ import annotations

import os
import signal
import sys
import threading
import typing as t
from importlib.metadata import version
from pathlib import Path

if t.TYPE_CHECKING:
    from types import FrameType

__version__ = version("tap-wechat-share")
"""The installed package's version; pyproject.toml is the one place it is set."""

COMMAND = "tap-wechat-share"


def _stop_before_the_run(signum: int, frame: FrameType | None) -> None:
    """End the process at once: nothing was read or written yet, so nothing can be lost."""
    del frame
    name = signal.Signals(signum).name
    os.write(2, f"Stopped by {name} before the run began: nothing was read\n".encode())
    os._exit(128 + signum)


def _install_early_stop() -> None:
    """Handle SIGINT and SIGTERM from the first moment of the ``tap-wechat-share`` command.

    Importing the SDK takes a second or more; until the tap installs its own handler, a signal
    would otherwise end the process with a KeyboardInterrupt traceback (SIGINT) or kill it
    without an exit code (SIGTERM). Only for the command itself: a program that imports the
    package keeps its own handlers.
    """
    argv0 = Path(getattr(sys, "argv", [""])[0] or "").name
    if argv0 == COMMAND and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop_before_the_run)
        signal.signal(signal.SIGTERM, _stop_before_the_run)


_install_early_stop()
