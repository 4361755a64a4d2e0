"""Writing an output safely: one writer at a time, links kept, stops that clean up after themselves.

Every command that writes a result (``gdnlab sweep``, ``gdnlab report``, ``gdnlab capture``) uses these:

* :func:`output_lock`: one writer per output. A lock file ``.NAME.lock`` beside the output (symbolic
  links resolved, so two paths to one file share it) holds the writer's pid, host, command and start
  time (JSON) and is held with ``flock`` while the writer runs. A second writer gets
  :class:`OutputBusyError` (one line naming the holder); a lock file left by a writer that died
  (killed with SIGKILL, a power cut) is no longer held: the next writer takes it over and says so.
  The file is removed when the writer ends.
* :func:`real_path`: the file a path names once symbolic links are followed: results are written
  there (a temporary file beside it, then ``os.replace``), so a link stays a link.
* :func:`stop_on_sigterm`: while inside, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)
  where it would otherwise end the process at once, so the ``finally`` blocks that remove temporary
  files, keep the earlier result and release the lock run for ``kill`` as they do for Ctrl-C.
* :func:`run_child`: run a command in its own process group and wait; when this process is stopped
  (Ctrl-C, SIGTERM) the group gets the same signal, then SIGTERM, then SIGKILL, and is waited for, so
  no child (nsys, and the command nsys profiles) outlives the command that started it.
* :func:`replace_together`: move several finished files into place with SIGINT and SIGTERM held back
  between the renames, so a stop never leaves one new file beside an old one.

Only the standard library is used (``fcntl`` on POSIX; elsewhere the lock falls back to the pid
written in the file).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import OutputBusyError, Terminated

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["OutputBusyError", "Terminated", "output_lock", "lock_path", "real_path", "stop_on_sigterm",
           "run_child", "replace_together", "signal_name"]


def signal_name(exc: BaseException) -> str:
    """``"SIGTERM"`` for :class:`Terminated`, ``"Ctrl-C"`` for another ``KeyboardInterrupt``."""
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"


def real_path(path: str | os.PathLike) -> Path:
    """``path`` with every symbolic link resolved (also a link whose target does not exist yet)."""
    return Path(os.path.realpath(os.fspath(path)))


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside the file (or folder) ``target`` resolves to."""
    t = real_path(target)
    return t.with_name(f".{t.name}.lock")


# ---------------------------------------------------------------------------------------------- lock

def _say(text: str) -> None:
    print(f"gdnlab: {text}", file=sys.stderr, flush=True)


def _read_record(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {"unreadable": True}
    return rec if isinstance(rec, dict) else {"unreadable": True}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_text(rec: dict) -> str:
    if not rec.get("pid"):
        return "another process (its pid is not written yet)"
    host = rec.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return (f"pid {rec['pid']}{where}" + (f", {rec['command']}" if rec.get("command") else "")
            + (f", since {rec['started']}" if rec.get("started") else ""))


def _busy(target: Path, fd: int) -> OutputBusyError:
    rec = _read_record(fd)
    for _ in range(20):                     # the holder writes its record right after taking the lock
        if rec.get("pid"):
            break
        time.sleep(0.05)
        rec = _read_record(fd)
    return OutputBusyError(f"{target} is being written by another gdnlab run ({_holder_text(rec)}); wait for it "
                           f"to end, or write to another output")


def _locked(fd: int) -> bool:
    """Take the ``flock`` of ``fd`` without waiting; whether it was free."""
    if fcntl is None:                       # pragma: no cover - not POSIX: the pid in the file decides
        return not _pid_alive(_read_record(fd).get("pid"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _acquire(path: Path, target: Path, command: str, say: Callable[[str], None]) -> int:
    for _ in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _locked(fd):
            err = _busy(target, fd)
            os.close(fd)
            raise err
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:                        # the holder removed the file as we opened it: start again
            os.close(fd)
            continue
        previous = _read_record(fd)
        if previous.get("pid") or previous.get("unreadable"):
            say(f"taking over the stale lock {path} of {_holder_text(previous)}: that process is no longer "
                f"running (it was stopped before it could remove the lock)")
        rec = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
               "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(rec).encode(), 0)
        return fd
    raise OutputBusyError(f"{target}: could not take the lock {path} (it keeps changing hands)")


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, command: str = "gdnlab",
                say: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of the output ``target`` (a file or folder, which need not exist yet) while inside.

    Raises :class:`OutputBusyError` when another process holds it. ``say`` gets the one line that
    reports a stale lock taken over (default: stderr). Yields the lock file's path."""
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, Path(target), command, say or _say)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)                 # while still holding it: nobody takes a lock on a removed file
        os.close(fd)


# ---------------------------------------------------------------------------------------------- stops

@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While inside (main thread only), SIGTERM raises :class:`Terminated` instead of ending the process
    without cleaning up. A handler someone else installed is left alone."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        yield
        return

    def _raise(signum, frame) -> None:
        raise Terminated("stopped by SIGTERM")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen, first: int = signal.SIGINT, grace_s: float = 10.0) -> None:
    """Stop the process group led by ``proc``: ``first``, then SIGTERM, then SIGKILL, each followed
    by a wait (``grace_s`` for the first, 3 s for the others) until no process of the group is left."""
    for sig, wait_s in ((first, grace_s), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        proc.poll()                         # reap the leader, so a finished group reads as gone
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()
            if not _group_alive(proc.pid):
                return
            time.sleep(0.05)
    proc.poll()


def run_child(argv: Sequence[str], *, grace_s: float = 10.0) -> int:
    """Run ``argv`` in its own process group and return its exit code. When this process is stopped
    while waiting (``KeyboardInterrupt``, :class:`Terminated`), the group gets the same signal (SIGINT
    or SIGTERM), then SIGTERM and SIGKILL (:func:`stop_group`), and the stop is raised again."""
    proc = subprocess.Popen(list(argv), start_new_session=True)
    try:
        return proc.wait()
    except BaseException as exc:
        stop_group(proc, signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT, grace_s)
        raise


@contextlib.contextmanager
def _held_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def replace_together(moves: Sequence[tuple[Path, Path | None]]) -> None:
    """``os.replace(src, dst)`` for each pair (``dst`` ``None``: remove ``src``), with SIGINT and SIGTERM
    held back until all are done: a stop never lands between two of them."""
    with _held_signals():
        for src, dst in moves:
            if dst is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(src)
            else:
                os.replace(src, dst)
