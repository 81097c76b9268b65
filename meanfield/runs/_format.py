"""The on-disk run format, version 1 (documented in `meanfield.runs`): writing a run's
files (`write_run_files`) and reading them back checked against the manifest. NumPy and
JSON only: no JAX is imported here, so a process that only saves starts fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .._json import jsonable
from ._folder import (
    RunFolderError,
    fault,
)

FORMAT = "meanfield-run"


VERSION = 1


def _file_entry(path: Path, digest: bool) -> dict:
    entry = {"bytes": path.stat().st_size}
    if digest:
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entry


def write_run_files(
    folder,
    command: str,
    config: dict,
    arrays: dict,
    results: dict,
    environment: dict,
    *,
    rerunnable: bool = True,
) -> Path:
    """Write arrays.npz, results.json and, last, config.json (with the manifest of the
    other two) into `folder`, which must be private to the caller (a `RunWriter` staging
    folder): this does not make the write atomic, `RunWriter.commit` does."""
    folder = Path(folder)
    arrays_path = folder / "arrays.npz"
    np.savez_compressed(arrays_path, **{k: np.asarray(v) for k, v in arrays.items()})
    fault("save-arrays")
    results_path = folder / "results.json"
    results_path.write_text(json.dumps(jsonable(results), indent=2) + "\n")
    fault("save-results")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "command": command,
        "rerunnable": bool(rerunnable),
        "config": jsonable(config),
        "environment": jsonable(environment),
        "files": {
            "arrays.npz": _file_entry(arrays_path, digest=False),
            "results.json": _file_entry(results_path, digest=True),
        },
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    fault("save-config")
    return folder


class _Replaced(Exception):
    """The folder was replaced (an --overwrite commit) while it was being read."""


class _Snapshot:
    """Files of one run folder opened through a descriptor of the folder itself, so that
    every file comes from the same folder even if it is replaced meanwhile (a commit
    swaps folders; it never changes files in place)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def replaced(self) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        mine = os.fstat(self.fd)
        return (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev)

    def open(self, name: str, what: str):
        try:
            return open(name, "rb", opener=lambda p, flags: os.open(p, flags, dir_fd=self.fd))
        except FileNotFoundError:
            if self.replaced():
                raise _Replaced from None
            raise RunFolderError(f"{self.path / name}: missing ({what})") from None
        except IsADirectoryError:
            raise RunFolderError(f"{self.path / name}: a folder, not a file") from None

    def close(self) -> None:
        os.close(self.fd)


def _parse_json(f, path: Path):
    try:
        return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path}: cannot read ({err})") from None
    except ValueError as err:
        raise RunFolderError(f"{path}: corrupt or truncated JSON ({err})") from None


def _read_json(path: Path, what: str):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing ({what})") from None
    except OSError as err:
        raise RunFolderError(f"{path}: cannot read ({err})") from None
    return _parse_json(io.BytesIO(data), path)


def _check_manifest(f, path: Path, entry) -> None:
    if not isinstance(entry, dict):
        return
    size = os.fstat(f.fileno()).st_size
    if "bytes" in entry and size != entry["bytes"]:
        raise RunFolderError(
            f"{path}: {size} bytes, config.json says {entry['bytes']} (the folder mixes "
            "files of different runs, or the file was truncated or modified)"
        )
    if "sha256" in entry:
        digest = hashlib.sha256(f.read()).hexdigest()
        f.seek(0)
        if digest != entry["sha256"]:
            raise RunFolderError(
                f"{path}: contents differ from config.json's checksum (the folder mixes "
                "files of different runs, or the file was modified)"
            )
