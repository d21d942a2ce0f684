"""The one mistake that breaks every worker process: starting them from a script's top level.

Worker processes start with ``forkserver`` or ``spawn``; either way each child imports the main
script again (as ``__mp_main__``) to find what it runs. A script that calls
``learn(..., workers=N)`` at its top level, outside ``if __name__ == "__main__":``, has every
child run that call again while it is still starting, which Python refuses: each child exits with
code 1, and the learner would see failed workers, restarts and finally a ``WorkerError`` that says
nothing of the cause. :func:`require_main_guard` finds the mistake in the learner before any
process starts and names the fix.

A main script with no file behind it (``python - < script.py``, a heredoc: ``__file__`` is
``"<stdin>"``) would have every child fail to import it (``FileNotFoundError``) and the learner
see restarts; :func:`unreadable_main_hidden` has the children skip it instead, as they do for
``python -c``.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import FrameType

__all__ = ["MainGuardError", "require_main_guard", "unreadable_main_hidden"]


class MainGuardError(RuntimeError):
    """Worker processes would be started from a script's unguarded top-level code."""


def require_main_guard(what: str) -> None:
    """Raise :class:`MainGuardError` when this call runs in the main script's top-level code
    outside an ``if __name__ == "__main__":`` block (the children would run it again).

    A main module without a source file (the interactive interpreter, ``python -c``, notebooks)
    is never imported by the children, so it passes; so does a call from a function the guarded
    block (or another module, or a thread started later) calls.

    :param what: what starts the processes, for the message (``"learn(..., workers=2)"``).
    :raises MainGuardError: the call is unguarded; the message names the script, the line and the fix.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not os.path.isfile(path):  # no source the children would import (stdin, -c)
        return
    frame = _main_module_frame(sys._getframe(1))
    if frame is None:
        return
    tree = _parse(path)
    if tree is None or _guarded(tree, frame.f_lineno):
        return
    raise MainGuardError(
        f"{what} starts worker processes, and each of them imports {path} again: the call at line "
        f"{frame.f_lineno} is in the script's top-level code, so every worker would run it again while starting "
        f"(and fail). Put the script's top-level code under  if __name__ == \"__main__\":  (for example, move it into "
        f"a main() function and end the script with  if __name__ == \"__main__\": main())."
    )


def _main_module_frame(frame: FrameType | None) -> FrameType | None:
    """The frame running ``__main__``'s top-level code, if it is on the stack."""
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            return frame
        frame = frame.f_back
    return None


@lru_cache(maxsize=8)
def _parse(path: str) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as f:
            return ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):  # not Python source (a zipapp, a frozen main): nothing to check
        return None


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either order)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    strings = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(strings) == 1


def _guarded(tree: ast.Module, line: int) -> bool:
    """Whether ``line`` lies in the body of an ``if __name__ == "__main__":`` block."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.body:
            if node.body[0].lineno <= line <= (node.body[-1].end_lineno or node.body[-1].lineno):
                return True
    return False


@contextmanager
def unreadable_main_hidden() -> Iterator[None]:
    """While starting a child: when the main module names a file that does not exist
    (``"<stdin>"``), hide its ``__file__`` so that the child does not try to import it (it would
    exit at once with ``FileNotFoundError``); anything of ``__main__`` a child needs travels by value."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or getattr(main, "__spec__", None) is not None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
