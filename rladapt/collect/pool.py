"""One pool of child processes for every flow that runs work in worker processes.

The worker collector (:mod:`rladapt.collect.workers`), A3C's gradient-pushing workers (a role of
that collector) and AlphaZero/MuZero self-play (:mod:`rladapt.search.selfplay`) all start their
children through :class:`ProcessPool`, so they share one implementation of what goes wrong with
processes:

- **start**: every child gets its index, a seed (distinct per child and per restart), a one-element
  view of the pool's shared ``heartbeat`` counter, and its end of a pipe; it says ``("ready",)`` once
  built, within ``start_timeout`` seconds.
- **faults**: the parent waits on the pipes and the process sentinels together, so a child that
  dies (killed, crashed) is seen at once; one that reports an exception (``("error", what,
  env_index, traceback)``, sent by :func:`serve_child`) is stopped with its traceback kept; one that
  has work but does not tick its heartbeat for ``stall_timeout`` seconds is taken as hung and
  killed. Each is restarted (a new process, a new seed) up to ``max_restarts`` times, then
  :class:`~rladapt.collect.remote.WorkerError` stops the run and says why.
- **shutdown**: ``close`` asks politely (``("close",)``), then terminates, then kills.

A flow supplies what its children run (``target``), what it re-sends a restarted child so that
it takes up its work again (``on_restarted``), and what to release when a child is stopped
(``on_stopped``: A3C releases the optimiser lock a killed worker held).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

import torch

from rladapt.collect.guard import unreadable_main_hidden
from rladapt.collect.remote import WorkerError, describe_failure
from rladapt.numerics import denormals_flushed

__all__ = ["PoolProcess", "ProcessPool", "serve_child"]


class PoolProcess:
    """The parent's handle on one child of a :class:`ProcessPool` (a flow may subclass it to keep
    its per-child state beside the process).

    :param index: the child's index in the pool (its heartbeat entry, its seed's part).
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.conn: Connection | None = None
        #: Restarts of this child so far.
        self.restarts = 0
        #: Bumped at each (re)start: work announced by an older process of this child is stale.
        self.generation = 0
        self.last_beat = 0
        self.last_progress = time.monotonic()

    @property
    def pid(self) -> int | None:
        """The current process's id (None between a stop and the next start)."""
        return None if self.process is None else self.process.pid


Member = TypeVar("Member", bound=PoolProcess)


class ProcessPool(Generic[Member]):
    """Child processes with a ready handshake, fault detection and restarts (module docstring).

    :param members: one handle per child (``members[i].index == i``).
    :param target: what a child runs: ``target(index, seed, heartbeat, conn, *args(member))``, where
        ``heartbeat`` is the child's one-element int64 view of the shared counter it ticks while it
        works; it sends ``("ready",)`` once built (see :func:`serve_child`).
    :param args: the rest of a child's arguments, from its handle (they must pickle).
    :param name: what the children are called in errors and warnings (``"self-play worker"``).
    :param start_method: ``"spawn"`` or ``"forkserver"``.
    :param seed_of: the seed of child ``index`` at its ``restarts``-th restart.
    :param max_restarts: restarts allowed per child before :class:`WorkerError`.
    :param stall_timeout: seconds a child with work may go without a heartbeat before it is killed.
    :param start_timeout: seconds a new child may take to send ``("ready",)``.
    :param progress: what a heartbeat tick is, for the stall message (``"env step"``, ``"move"``).
    :param describe: how the final error names a child (default: ``"{name} {index}"``).
    :param on_stopped: called with a child's handle once its process is stopped, before a restart.
    :param on_restarted: called with a child's handle once its new process is ready.
    :param preload: modules a forkserver imports once, so that children fork from them ready.
    """

    def __init__(self, members: Sequence[Member], target: Callable[..., None], args: Callable[[Member], tuple],
                 name: str, start_method: str, seed_of: Callable[[int, int], int | None], max_restarts: int,
                 stall_timeout: float, start_timeout: float, progress: str = "progress", describe: Callable[[Member], str] | None = None,
                 on_stopped: Callable[[Member], None] | None = None,
                 on_restarted: Callable[[Member], None] | None = None, preload: Sequence[str] = ()) -> None:
        if [member.index for member in members] != list(range(len(members))):
            raise ValueError("a pool's members are numbered 0..n-1 in order")
        self.members = list(members)
        self.target, self.args, self.name, self.seed_of = target, args, name, seed_of
        self.max_restarts, self.stall_timeout, self.start_timeout = max_restarts, stall_timeout, start_timeout
        self.progress = progress
        self.describe = describe or (lambda member: f"{name} {member.index}")
        self.on_stopped, self.on_restarted = on_stopped, on_restarted
        #: Every child's progress counter (shared memory): the stall detector reads it.
        self.heartbeat = torch.zeros(len(self.members), dtype=torch.int64).share_memory_()
        self.context = torch.multiprocessing.get_context(start_method)
        if start_method == "forkserver" and preload:
            self.context.set_forkserver_preload(list(preload))
        #: Restarts over all children.
        self.restarts = 0
        self.closed = False

    def start(self) -> None:
        """Start every child and wait until each is ready (a child that fails to start is
        restarted like any other failure); on an error every child is stopped."""
        try:
            for member in self.members:
                self._launch(member)
            for member in self.members:
                failure = self._await_ready(member)
                if failure is not None:
                    self.restart(member, *failure)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ one child
    def _launch(self, member: Member) -> None:
        parent, child = self.context.Pipe()
        index = member.index
        seed = self.seed_of(index, member.restarts)
        member.process = self.context.Process(
            target=self.target, args=(index, seed, self.heartbeat[index : index + 1], child, *self.args(member)),
            name=f"rladapt-{self.name.replace(' ', '-')}-{index}", daemon=True)
        with unreadable_main_hidden():  # a script piped in on stdin: the child must not import "<stdin>"
            member.process.start()
        child.close()
        member.conn = parent
        member.generation += 1
        member.last_beat, member.last_progress = int(self.heartbeat[index]), time.monotonic()

    def _await_ready(self, member: Member) -> tuple | None:
        """None once the child says ready, else its failure ``(what, env_index, traceback)``."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            ready = wait([member.conn, member.process.sentinel], timeout=max(0.0, deadline - time.monotonic()))
            if member.conn in ready or member.conn.poll():
                message = self.receive(member)
                if message[0] == "ready":
                    return None
                if message[0] == "failed":
                    return message[1:]
            elif member.process.sentinel in ready:
                return self._death(member)
        return f"{self.name} {member.index} did not start within {self.start_timeout:.0f} s", None, None

    def receive(self, member: Member) -> tuple:
        """The child's next message; a death or a reported exception reads
        ``("failed", what, env_index, traceback)``."""
        try:
            message = member.conn.recv()
        except (EOFError, OSError):
            return ("failed", *self._death(member))
        if message[0] == "error":
            return ("failed", *message[1:])
        return message

    def _death(self, member: Member) -> tuple:
        member.process.join(timeout=1.0)
        code, pid = member.process.exitcode, member.process.pid
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"{self.name} {member.index} (pid {pid}) was killed by {signal.Signals(-code).name}", None, None
        return f"{self.name} {member.index} (pid {pid}) exited with code {code}", None, None

    def send(self, member: Member, message: tuple) -> bool:
        """Send a command; False (after restarting the child) when its process is gone."""
        try:
            member.conn.send(message)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.restart(member, *self._death(member))
            return False

    def restart(self, member: Member, what: str, env_index: int | None = None, text: str | None = None) -> None:
        """Stop the child (dead, failed or hung) and start a new one that is ready, then call
        ``on_restarted``; raise :class:`WorkerError` (every child stopped) once it failed more than
        ``max_restarts`` times."""
        while True:
            self._stop(member)
            if self.on_stopped is not None:
                self.on_stopped(member)
            member.restarts += 1
            self.restarts += 1
            if member.restarts > self.max_restarts:
                message = (f"{self.describe(member)} failed {member.restarts} times "
                           f"(max_restarts={self.max_restarts}); last failure: {what}")
                if text:
                    message += f"\n\nTraceback in the worker:\n{text}"
                self.close()
                raise WorkerError(message, member.index, env_index, text)
            warnings.warn(f"{what}; restarting it ({member.restarts}/{self.max_restarts})", RuntimeWarning,
                          stacklevel=3)
            self._launch(member)
            failure = self._await_ready(member)
            if failure is None:
                break
            what, env_index, text = failure
        if self.on_restarted is not None:
            self.on_restarted(member)

    def _stop(self, member: Member) -> None:
        process = member.process
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
        process.join(timeout=5.0)
        with contextlib.suppress(Exception):
            member.conn.close()
        with contextlib.suppress(Exception):
            process.close()
        member.process = None

    # ------------------------------------------------------------------ all children
    def poll(self, busy: Sequence[Member] | None = None, timeout: float = 1.0) -> list[tuple[Member, tuple]]:
        """The messages of the ``busy`` children (default: all), in arrival order, waiting up to
        ``timeout`` seconds for one. A child that died, raised, or made no progress (heartbeat) for
        ``stall_timeout`` seconds gives ``("failed", what, env_index, traceback)``: the caller
        decides when to :meth:`restart` it."""
        busy = self.members if busy is None else busy
        handles: dict[Any, Member] = {}
        for member in busy:
            handles[member.conn] = member
            handles[member.process.sentinel] = member
        out, failed = [], set()
        for handle in wait(list(handles), timeout=timeout):
            member = handles[handle]
            if handle is member.conn:
                while member.index not in failed and member.conn.poll():
                    message = self.receive(member)
                    out.append((member, message))
                    if message[0] == "failed":
                        failed.add(member.index)
        for member in busy:  # exited without a word (killed)
            if member.index not in failed and not member.process.is_alive() and not member.conn.poll():
                out.append((member, ("failed", *self._death(member))))
                failed.add(member.index)
        now = time.monotonic()
        for member in busy:
            beat = int(self.heartbeat[member.index])
            if beat != member.last_beat:
                member.last_beat, member.last_progress = beat, now
            elif member.index not in failed and now - member.last_progress > self.stall_timeout:
                what = f"{self.name} {member.index} made no {self.progress} for {self.stall_timeout:.0f} s (hung)"
                out.append((member, ("failed", what, None, None)))
        return out

    def mark_busy(self, member: Member) -> None:
        """Start the child's stall clock now (call when it is given work after idling)."""
        member.last_beat, member.last_progress = int(self.heartbeat[member.index]), time.monotonic()

    def close(self, timeout: float = 5.0) -> None:
        """Ask every child to close, wait up to ``timeout`` seconds in all, then stop the rest."""
        if self.closed:
            return
        self.closed = True
        for member in self.members:
            if member.process is not None and member.conn is not None:
                with contextlib.suppress(Exception):
                    member.conn.send(("close",))
        deadline = time.monotonic() + timeout
        for member in self.members:
            if member.process is not None:
                with contextlib.suppress(Exception):
                    member.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._stop(member)


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the parent dies (no orphaned workers)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve_child(index: int, conn: Connection, name: str, body: Callable[[], None]) -> None:
    """How a pool's child runs ``body`` (which builds, sends ``("ready",)`` and serves commands):
    one torch thread with denormals flushed (:mod:`rladapt.numerics`), Ctrl-C left to the parent,
    SIGTERM when the parent dies (Linux); an exception is reported as ``("error", what, env_index,
    traceback)`` and the process exits non-zero; a closed pipe (the parent is gone) ends it
    quietly. The process exits without the interpreter's slow teardown (torch): nothing is left to
    clean up.

    :param index: the child's index (named in the error).
    :param conn: the child's end of the pipe.
    :param name: what the child is called in the error (``"worker"``).
    :param body: the child's work.
    """
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which shuts us down
    torch.set_num_threads(1)
    try:
        with denormals_flushed():  # a child that updates (A3C) steps Adam as the learner does
            body()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone
    except BaseException as error:  # report anything, then exit non-zero
        what, env_index, text = describe_failure(error, f"{name} {index}")
        with contextlib.suppress(Exception):
            conn.send(("error", what, env_index, text))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(1)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)
