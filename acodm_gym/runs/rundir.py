"""The run directory as a place that never loses work: one run at a time, never replaced by
accident, and final outputs that are either whole or absent.

* ``lock``: an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``, held for the whole run; a second run
  into the same directory fails at once, naming the holder (pid, host, start time). The lock goes
  with the process, so a killed run leaves no stale lock behind.
* ``check_fresh``: a fresh run refuses a directory that holds an earlier run's work (checkpoints or
  a finished run's summary.json) unless asked to overwrite it; ``clear`` then removes everything in it
  but the lock. ``check_free`` answers a resume of a directory another run holds.
* ``write_file`` / ``write_dir``: an output is written under a temporary name, fsynced and renamed
  into place (``os.replace``), so a crash or a full disk leaves the old version or none, never half.
  ``clean_stale`` removes the temporary files a killed writer left, at the run's next start.

Nothing here imports torch, so the command line can use it before the heavy modules load.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Callable

from ..errors import RunDirError

LOCK = ".lock"
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"  # written last: its presence means every other output is complete


class RunLock:
    """An exclusive lock on a run directory, released by ``release`` (or when the process ends).

    :param run_dir: the run directory (created if missing); the lock file ``.lock`` lives inside it
    """

    def __init__(self, run_dir: str | Path):
        import fcntl

        self.path = Path(run_dir) / LOCK
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            self.release()
            raise RunDirError(_in_use(run_dir, holder, self.path)) from None
        try:  # who holds it, for the message above; the lock itself is what counts
            os.ftruncate(self._fd, 0)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.pwrite(self._fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("utf-8", errors="replace").strip() or "a process that wrote no name"


def _in_use(run_dir: str | Path, holder: str, lock: Path) -> str:
    return (
        f"{run_dir} is in use by another run ({holder}; lock file {lock}). Wait for it to finish or stop it, "
        "or give this run another directory (--name / --out-dir)."
    )


def check_free(run_dir: str | Path) -> None:
    """Refuse a directory another process holds (a resume of a run still going), without creating or taking anything."""
    import fcntl

    path = Path(run_dir) / LOCK
    if not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with the holder's exclusive lock only
    except BlockingIOError:
        raise RunDirError(_in_use(run_dir, _holder(fd), path)) from None
    finally:
        os.close(fd)  # drops the shared lock at once


def _steps(run_dir: Path) -> list[str]:
    root = run_dir / CHECKPOINTS
    return (
        sorted(p.name for p in root.iterdir() if p.name.startswith("step-") and ".tmp-" not in p.name)
        if root.is_dir()
        else []
    )


def check_fresh(run_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse to start a fresh run in ``run_dir`` if it holds an earlier run's checkpoints or results."""
    run_dir = Path(run_dir)
    steps, finished = _steps(run_dir), (run_dir / SUMMARY).is_file()
    if overwrite or not (steps or finished):
        return
    held = f"checkpoints up to {steps[-1]}" if steps else "the outputs of a finished run"
    resume = f"continue it with: acodm-gym train --resume {run_dir} (python: resume(RUN_DIR)); " if steps else ""
    raise RunDirError(
        f"{run_dir} already holds {held}, which a fresh run would replace. {resume}replace it with --overwrite "
        "(python: train(cfg, overwrite=True)); or give this run another directory (--name / --out-dir)."
    )


def clear(run_dir: str | Path, log: Callable[[str], None] = print) -> None:
    """A fresh run in ``run_dir`` (held): remove everything an earlier run left (checkpoints, outputs,
    plots it alone made), so nothing of it remains; only the lock and a live writer's temporary files stay."""
    run_dir = Path(run_dir)
    found = [p.name for p in run_dir.iterdir() if p.name != LOCK and not _writer_alive(p.name)]
    found.sort(key=lambda name: (name != CHECKPOINTS, name))  # the work that counts most, named first
    if found:
        log(f"new run in {run_dir}: removing the earlier run's {', '.join(found)}")
    for name in found:
        _remove(run_dir / name)


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


# ``config.tmp-<pid>.yaml``, ``model.tmp-<pid>``, ``model.old-<pid>``: written by ``write_file`` / ``write_dir``
_TEMP = re.compile(r"^(?P<name>.+?)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?P<suffix>\.[^.]*)?$")


def _writer_alive(name: str) -> bool:
    """Whether ``name`` is a temporary file of a process that still runs (this one included)."""
    match = _TEMP.match(name)
    if match is None:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale(run_dir: str | Path, log: Callable[[str], None] = print) -> None:
    """At a run's start (holding the lock): remove the temporary files of writers that were killed. A
    directory swap stopped between its two renames (``model.old-<pid>``, no ``model``) is put back."""
    run_dir = Path(run_dir)
    stale = [p for p in sorted(run_dir.iterdir()) if _TEMP.match(p.name) and not _writer_alive(p.name)]
    if stale:
        log(f"{run_dir}: removing stale temporary files of a killed run: {', '.join(p.name for p in stale)}")
    for path in stale:
        match = _TEMP.match(path.name)
        target = run_dir / f"{match['name']}{match['suffix'] or ''}"
        if match["kind"] == "old" and not target.exists():
            os.replace(path, target)
        else:
            _remove(path)


# -- atomic outputs -------------------------------------------------------------------------------
def _write(path: Path, write: Callable[[Path], None]) -> None:
    """Every output goes through here (tests simulate a full disk by patching it)."""
    write(path)


def _tmp(path: Path) -> Path:
    """``summary.json`` → ``summary.tmp-<pid>.json``: the suffix stays, for writers that read it (savefig)."""
    return path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _fsync_tree(path: Path) -> None:
    for dirpath, _, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_file(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` then rename ``tmp`` to ``path``: the file is the old one, or absent, or whole."""
    path = Path(path)
    tmp = _tmp(path)
    try:
        _write(tmp, write)
        _fsync_tree(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp_dir)`` then swap it in for ``path`` (e.g. ``model/``, written by ``save_pretrained``)."""
    path = Path(path)
    tmp, old = _tmp(path), path.with_name(f"{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(tmp, write)
        _fsync_tree(tmp)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)  # the earlier version stays
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_file(path, lambda p: p.write_text(text))


def reason(exc: BaseException) -> str:
    """An OS error as its plain words and file; anything else as its type and message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {str(exc)[:300]}"
