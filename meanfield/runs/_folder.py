"""Writing run folders safely: one writer per folder, a staging sibling, an atomic swap.

A run into OUT (with parent P and name NAME) goes through these steps:

1. **Lock.** ``P/.NAME.lock`` is created with ``O_CREAT | O_EXCL`` and holds the writer's
   pid, host and process start time. A second writer fails at once with a message naming
   the pid; a lock whose process is gone (or whose pid was reused) is stale and is
   replaced. Creating it is also the check that P is writable, before anything runs.
2. **Refuse or replace.** An OUT that exists and is not empty is refused unless
   ``overwrite``; even then only a folder that looks like a run (config.json,
   arrays.npz or results.json in it) or an empty one is replaced, never an arbitrary
   folder.
3. **Stage.** Every file (figures included) is written into ``P/.NAME.tmp-PID-TOKEN/NAME``
   (the folder keeps its final name, so files that mention it stay right) and fsynced.
4. **Commit.** A fresh OUT is a single ``rename``. An existing one is swapped with
   ``renameat2(RENAME_EXCHANGE)`` (Linux), so OUT is at every instant either the old or
   the new complete run; where exchange is unavailable the old run is renamed into the
   staging folder (``.../old``) and the new one renamed into place, and an interrupted
   swap (OUT missing, ``old`` present) is rolled forward by the next writer or reader.
   Then the staging folder, with the old run, is deleted.

A process killed at any moment therefore leaves OUT as it was or as the complete new run;
leftover staging folders are removed by the next writer of OUT.

For tests, ``MEANFIELD_FAULT="point=action[@k],..."`` makes the k-th (default every)
passage through a named point ``kill`` the process (SIGKILL), ``raise`` an exception or
``sleep:SECONDS``; ``MEANFIELD_RENAME_EXCHANGE=0`` forces the two-rename fallback. The
points are listed in `FAULT_POINTS`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

FAULT_ENV = "MEANFIELD_FAULT"
FAULT_POINTS = (
    "run-start",  # lock held, staging folder created, nothing computed yet
    "save-arrays",  # arrays.npz written (staging)
    "save-results",  # results.json written (staging)
    "save-config",  # config.json written: the staged run is complete
    "commit",  # about to move the staged run into place
    "commit-moved-old",  # fallback swap: old run moved away, new not yet in place
    "commit-done",  # new run in place, old one not yet deleted
    "checkpoint",  # a checkpoint was just written
)
RUN_FILES = ("config.json", "arrays.npz", "results.json")
_HITS: dict[str, int] = {}


class RunFolderError(ValueError):
    """A run folder that cannot be written or read (one line naming the folder or file)."""


def fault(point: str) -> None:
    """Test hook: act on `point` if MEANFIELD_FAULT names it (see the module doc)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    _HITS[point] = _HITS.get(point, 0) + 1
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name != point:
            continue
        action, _, nth = action.partition("@")
        if nth and int(nth) != _HITS[point]:
            continue
        if action == "kill":
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "raise":
            raise RuntimeError(f"fault injected at {point} ({FAULT_ENV})")
        elif action.startswith("sleep:"):
            time.sleep(float(action[len("sleep:") :]))


# ----------------------------------------------------------------------------- files


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under `path` (a staged run is durable before commit)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path, write) -> Path:
    """Write a file by `write(tmp_path)` into a sibling, fsync it, then `os.replace` it
    onto `path`: readers see the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


# ----------------------------------------------------------------------------- lock


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _start_time(pid: int) -> str | None:
    """The process start time (Linux /proc, clock ticks since boot): tells a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # cannot tell: treat as alive
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _start_time(pid)
    return owner.get("start") is None or start is None or start == owner["start"]


def _read_owner(path: Path) -> tuple[str, dict | None]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return "", {}
    try:
        owner = json.loads(text)
    except ValueError:
        owner = None
    return text, owner if isinstance(owner, dict) else None


class RunLock:
    """The exclusive lock of a run folder: ``P/.NAME.lock`` holding the owner's pid."""

    def __init__(self, out, what: str = "--out"):
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.held = False
        self.what = what

    def acquire(self) -> RunLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                text, owner = _read_owner(self.path)
                if owner == {}:
                    continue  # released meanwhile
                if owner is None:  # empty or garbled: a writer between open and write?
                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 10:
                        raise RunFolderError(
                            f"{self.out}: another meanfield run is starting in this folder "
                            f"(lock {self.path})"
                        ) from None
                elif _alive(owner):
                    raise RunFolderError(
                        f"{self.out}: another meanfield run (pid {owner.get('pid')} on "
                        f"{owner.get('host')}) is writing this folder; wait for it, or delete "
                        f"{self.path} if that process is gone"
                    ) from None
                # stale: remove it unless it changed meanwhile, then try again
                if _read_owner(self.path)[0] == text:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                continue
            except OSError as err:
                raise RunFolderError(
                    f"{self.what} {self.out}: cannot write in {self.out.parent} "
                    f"({err.strerror or type(err).__name__})"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self.held = True
            return self
        raise RunFolderError(f"{self.out}: could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            _, owner = _read_owner(self.path)
            if owner and owner.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def busy(self) -> bool:
        """True if a live process holds the lock (for readers)."""
        _, owner = _read_owner(self.path)
        return owner is None or (owner != {} and _alive(owner))


# ----------------------------------------------------------------------------- staging


def staging_dirs(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.tmp-*"))


def recover(out) -> bool:
    """Finish a swap interrupted between its two renames (fallback path): OUT missing and a
    staging folder holding both `old` and the complete new run. Returns True if it moved
    anything. The new run is complete whenever `old` exists, so it is rolled forward."""
    out = Path(out)
    if out.exists():
        return False
    for stage in staging_dirs(out):
        old, new = stage / "old", stage / out.name
        if old.is_dir():
            try:
                os.rename(new if new.is_dir() else old, out)
            except FileNotFoundError:
                return False  # someone else recovered it
            shutil.rmtree(stage, ignore_errors=True)
            return True
    return False


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except OSError:
        return None


def looks_like_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if sys.platform != "linux" or os.environ.get("MEANFIELD_RENAME_EXCHANGE") == "0":
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


class RunWriter:
    """Lock `out`, check it may be (over)written, stage the run in a sibling folder and
    move it into place atomically on `commit()` (see the module doc).

    Use as a context manager: everything is checked in `__enter__`, before any work;
    leaving without `commit()` (an exception) deletes the staged files and keeps `out`.
    `path` is the staging folder to write into (it has `out`'s name).
    """

    def __init__(
        self, out, *, overwrite: bool = False, flag: str = "--overwrite", what: str = "--out"
    ):
        self.out = Path(out)
        if self.out.name in ("", ".", ".."):  # `--out .`: the folder by its own name
            self.out = self.out.resolve()
        self.overwrite = overwrite
        self.flag, self.what = flag, what
        self.lock = RunLock(self.out, what)
        self.stage: Path | None = None
        self.path: Path | None = None
        self.committed = False

    def __enter__(self) -> RunWriter:
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{self.what} {out} exists and is not a folder")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(
                f"{self.what} {out}: cannot create {out.parent} ({err.strerror or err})"
            ) from None
        self.lock.acquire()
        try:
            recover(out)
            for stale in staging_dirs(out):  # under the lock, every staging folder is stale
                shutil.rmtree(stale, ignore_errors=True)
            if out.is_dir() and any(out.iterdir()):
                if not self.overwrite:
                    raise RunFolderError(
                        f"{self.what} {out} already exists and is not empty; pass {self.flag} "
                        "to replace it (the whole folder)"
                    )
                if not looks_like_run(out):
                    raise RunFolderError(
                        f"{self.what} {out} is not a meanfield run folder (no config.json, "
                        "arrays.npz or results.json); refusing to replace it, even with "
                        f"{self.flag}"
                    )
            self.stage = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            self.path = self.stage / out.name
            try:
                self.path.mkdir(parents=True)
            except OSError as err:
                raise RunFolderError(
                    f"{self.what} {out}: cannot write in {out.parent} ({err.strerror or err})"
                ) from None
        except BaseException:
            self._cleanup()
            raise
        fault("run-start")
        return self

    def commit(self) -> Path:
        """Move the staged run into place (atomic); the old run, if any, is deleted."""
        out = self.out
        fsync_tree(self.path)
        inside = _cwd() == out.resolve()  # `--out .`: follow the folder to its new inode
        fault("commit")
        if out.exists():
            if not _exchange(self.path, out):
                os.rename(out, self.stage / "old")
                _fsync_dir(out.parent)
                fault("commit-moved-old")
                os.rename(self.path, out)
        else:
            os.rename(self.path, out)
        _fsync_dir(out.parent)
        if inside:
            os.chdir(out)
        self.committed = True
        fault("commit-done")
        return out

    def _cleanup(self) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
        self.lock.release()

    def __exit__(self, *exc) -> None:
        self._cleanup()
