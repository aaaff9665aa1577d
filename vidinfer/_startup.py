"""Ctrl-C and SIGTERM while the `vidinfer` command starts.

Importing vidinfer (NumPy, ONNX Runtime, FFmpeg, pydantic, ZeroMQ) takes about a second. A signal
then used to end the command with a KeyboardInterrupt traceback (SIGINT, exit -2) or kill it
(SIGTERM, -15). When this process *is* the command (``python -m vidinfer`` or the ``vidinfer``
script), `vidinfer/__init__.py` first installs handlers that end it at once with one line and
exit code 130: nothing has been opened yet. `vidinfer.cli` replaces them with the command's own
(``vidinfer run``: stop gracefully, every stream's end published) or restores the defaults.
Imported as a library, vidinfer changes no signal handler.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["is_cli", "install_early_handlers", "restore_default_handlers", "EXIT_INTERRUPTED"]

EXIT_INTERRUPTED = 130
_installed = False


def is_cli() -> bool:
    """Whether this process was started as the `vidinfer` command."""
    argv = list(getattr(sys, "orig_argv", None) or [])
    if "-m" in argv:
        i = argv.index("-m")
        return i + 1 < len(argv) and argv[i + 1] == "vidinfer"
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "vidinfer"


def _early(signum: int, _frame: Any) -> None:
    os.write(2, f"vidinfer: {signal.Signals(signum).name}: stopped while starting\n".encode())
    os._exit(EXIT_INTERRUPTED)


def install_early_handlers() -> None:
    """SIGINT and SIGTERM end the command at once (exit 130, one line), if nothing else handles them."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGINT, _early)
        signal.signal(signal.SIGTERM, _early)
        _installed = True


def restore_default_handlers() -> None:
    """Python's own handlers again (KeyboardInterrupt on SIGINT), where the early ones are installed."""
    global _installed
    if _installed and threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is _early:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.getsignal(signal.SIGTERM) is _early:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _installed = False


if is_cli():
    install_early_handlers()
