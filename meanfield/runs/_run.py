"""Runs as Python objects: `Run` (config, arrays, results, environment), `load_run`
(every file checked first), `compare_runs`, and the helpers for nested (demo) runs.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..integrate import Trajectory
from ._folder import (
    RunFolderError,
    RunLock,
    recover,
    staging_dirs,
)
from ._format import FORMAT, VERSION, _check_manifest, _parse_json, _Replaced, _Snapshot


@dataclasses.dataclass
class Run:
    """A saved run: `path`, `command`, `config` (resolved), `environment`, `arrays` (dict
    of NumPy arrays), `results` (dict), `rerunnable` (False for runs saved from Python by
    `save_run`). `run["xs"]` reads an array; `run.trajectory` is the saved `Trajectory`
    (runs with arrays `ts` and `xs`)."""

    path: Path
    command: str
    config: dict
    environment: dict
    arrays: dict
    results: dict
    rerunnable: bool = True

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def trajectory(self):
        """`Trajectory(ts, xs)` of the saved states (simulate runs)."""

        if "xs" not in self.arrays or "ts" not in self.arrays:
            raise ValueError(f"run {self.path} ({self.command}) has no saved trajectory")
        return Trajectory(jnp.asarray(self.arrays["ts"]), jnp.asarray(self.arrays["xs"]))


def load_run(path) -> Run:
    """Read a run folder written by the `meanfield` command or by `save_run`.

    **Arguments:**

    - `path`: the run folder.

    **Returns:**

    A `Run` (`.config`, `.environment`, `.results`, `.arrays`; `run["xs"]`,
    `run.trajectory`). Every file is checked first: a missing folder or file, truncated
    JSON, a corrupt arrays.npz (bad zip, bad CRC) or a file that does not match the
    config.json manifest raises a `ValueError` naming the file. A folder replaced by an
    `--overwrite` while it is read gives the old run or the new one, never a mix.
    """
    path = Path(path)
    deadline = time.monotonic() + 2.0
    replaced = 0
    while replaced < 5:
        if not path.exists() and not RunLock(path).busy():
            recover(path)  # an --overwrite swap interrupted between its two renames
        if not path.is_dir():
            # Between the two renames of the fallback swap OUT is briefly absent (or goes
            # away between two checks): wait for a writer that is still at work.
            in_flight = RunLock(path).busy() or bool(staging_dirs(path))
            if in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            if not path.exists():
                raise RunFolderError(f"{path}: no such run folder")
            raise RunFolderError(f"{path}: not a folder")
        replaced += 1
        try:
            snap = _Snapshot(path)
        except FileNotFoundError:
            continue
        try:
            return _load_snapshot(snap)
        except _Replaced:
            continue
        finally:
            snap.close()
    raise RunFolderError(f"{path}: the folder kept being replaced while it was read")


def _load_snapshot(snap: _Snapshot) -> Run:
    path = snap.path
    cfg_path = path / "config.json"
    try:
        f = snap.open("config.json", "config")
    except RunFolderError:
        raise RunFolderError(f"{path}: not a saved run (no config.json)") from None
    with f:
        meta = _parse_json(f, cfg_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RunFolderError(f"{cfg_path}: not a meanfield run config (format {got!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise RunFolderError(f"{cfg_path}: format version {version!r} is newer than {VERSION}")
    for key, kind in (("command", str), ("config", dict)):
        if not isinstance(meta.get(key), kind):
            raise RunFolderError(f"{cfg_path}: no {key!r} entry ({kind.__name__})")
    manifest = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    arrays_path = path / "arrays.npz"
    with snap.open("arrays.npz", "the run is incomplete") as f:
        _check_manifest(f, arrays_path, manifest.get("arrays.npz"))
        try:
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as err:  # BadZipFile, bad CRC, truncated member, pickled objects
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise RunFolderError(
                f"{arrays_path}: corrupt ({type(err).__name__}: {first})"
            ) from None
    results_path = path / "results.json"
    with snap.open("results.json", "the run is incomplete") as f:
        _check_manifest(f, results_path, manifest.get("results.json"))
        results = _parse_json(f, results_path)
    if not isinstance(results, dict):
        raise RunFolderError(f"{results_path}: expected a JSON object")
    return Run(
        path,
        meta["command"],
        meta["config"],
        meta.get("environment", {}),
        arrays,
        results,
        bool(meta.get("rerunnable", True)),
    )


def sub_runs(path) -> list[Path]:
    """`path` and every run folder below it (a demo holds one per section), sorted."""
    path = Path(path)
    found = {p.parent for p in path.rglob("config.json")} | {path}
    return sorted(found)


def check_run_tree(path) -> list[Run]:
    """`load_run` on `path` and on every run folder below it: all files checked."""
    return [load_run(p) for p in sub_runs(path)]


def compare_runs(a, b) -> list[str]:
    """Differences between the arrays of two run folders (recursively); [] if identical.

    Every arrays.npz of either folder is compared array by array (names, dtypes, shapes
    and bits; NaNs equal).

    **Arguments:** `a`, `b` run folders.

    **Returns:** a list of strings, one per difference, naming the file and the array.
    """
    a, b = Path(a), Path(b)
    problems = []
    files_a = {p.relative_to(a) for p in a.rglob("arrays.npz")}
    files_b = {p.relative_to(b) for p in b.rglob("arrays.npz")}
    if not files_a:
        return [f"{a}: no arrays.npz to compare"]
    for rel in sorted(files_b - files_a):
        problems.append(f"{rel}: missing in {a}")
    for rel in sorted(files_a):
        if rel not in files_b:
            problems.append(f"{rel}: missing in {b}")
            continue
        with np.load(a / rel, allow_pickle=False) as x, np.load(b / rel, allow_pickle=False) as y:
            for key in sorted(set(x.files) | set(y.files)):
                if key not in x.files or key not in y.files:
                    where = a if key in x.files else b
                    problems.append(f"{rel}:{key}: present only in {where}")
                    continue
                u, v = x[key], y[key]
                if u.dtype != v.dtype or u.shape != v.shape:
                    problems.append(f"{rel}:{key}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}")
                elif not np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"):
                    if u.dtype.kind in "biufc":
                        diff = np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)))
                        problems.append(f"{rel}:{key}: differs (max abs difference {diff:.3g})")
                    else:
                        problems.append(f"{rel}:{key}: differs")
    return problems


def count_arrays(path) -> int:
    """Number of arrays in all arrays.npz files under `path`."""
    total = 0
    for p in Path(path).rglob("arrays.npz"):
        with np.load(p, allow_pickle=False) as data:
            total += len(data.files)
    return total
