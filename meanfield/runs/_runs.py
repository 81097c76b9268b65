"""Saved runs: validated configs, the workflows behind the `meanfield` command, and their
on-disk format.

**Format (version 1).** A run folder DIR holds

    DIR/config.json    {"format": "meanfield-run", "version": 1, "command": "simulate",
                        "rerunnable": true (false for `save_run` from Python),
                        "config": {every option, resolved, defaults included},
                        "environment": {"jax", "jaxlib", "numpy", "python", "platform",
                                        "backend", "device", "dtype", "x64", "seed",
                                        "meanfield", "created", "seconds"},
                        "files": {"arrays.npz": {"bytes"},
                                  "results.json": {"bytes", "sha256"}}}
    DIR/arrays.npz     NumPy arrays (`numpy.savez_compressed`, lossless), listed below
    DIR/results.json   the run's numbers (JSON; floats as Python floats)
    DIR/*.png, *.gif   figures (optional, `plots = false` skips them)

config.json is written last and its "files" manifest ties the other two to it (older
folders without it still load).

Arrays per command (shapes; B betas, S seeds, T saves, F families, N sizes, P grid points):

    simulate     ts (T,), xs (T, n, d) every `save_every`-th step (xs[0] = initial state),
                 energy (T,) (absent for models without an energy)
    sweep        betas (B,), ts (T,), counts (B, S, T) cluster counts, largest_mass
                 (B, S, T), final (B, S, n, d); xs (B, S, T, n, d) with save_states = true
    critical     x (n, d) the flowed state, locations (k, d) / masses (k,) clustered atoms,
                 refined (k, d) Newton-refined atoms (float64), splitting_eigenvalues
                 (k, d-1), transport_eigenvalues (K,); localisation mode: beta, d, seed,
                 atoms, largest_mass, mass_bound per record
    temperature  ns (N,), betas (F, P), entropy (F, N, P) = mean H / log n, p_max (F, N, P),
                 beta_star (F, N, rows), predicted (F, N)
    transformer  rows (R,) sampled query positions, n_keys (R,), beta_star (L, H, R),
                 bin_n (B,), beta_star_bins / ratio_bins (L, H, B), ratio_longest (L, H),
                 law_constants / law_rms (L, H, 3), best_law, gamma, c_gamma, ratio_train
                 (L, H), s_grid (S,), s_recommended (L, H, S), s_median, s_log_n, s_yarn (S,)
    demo         one sub-folder per section, each a run of the above
    python       whatever `save_run` was given (a Trajectory gives ts, xs)

Trajectories are subsampled by `save_every` (a divisor of `steps`) and never truncated: a
run whose saved states would exceed `max_trajectory_mb` is refused before it starts, with
the smallest `save_every` that fits.

**Writing.** A run is never written in place: `RunWriter` (`meanfield.runs._folder`) takes
the lock ``.DIR.lock`` next to DIR (a second writer fails at once, naming the pid; locks
of dead processes are replaced), refuses an existing, non-empty DIR unless `overwrite`
(`--overwrite`, which replaces the folder as a whole and only if it is a run), stages
every file in a hidden sibling and moves it into place with one atomic rename (an atomic
exchange for --overwrite). A kill -9 at any moment leaves DIR as it was or as the
complete new run. With `--checkpoint-every K` (simulate) the state is saved every K
steps into the sibling ``.DIR.checkpoint`` (with the resolved config in run.json), which
`meanfield resume DIR` (`resume_run`) continues to the same bits as the uninterrupted
run; the checkpoint is deleted once DIR is in place.

**Reading.** `load_run(DIR)` checks every file first (missing, truncated, corrupt zip or
CRC, not matching the manifest) and names it in a one-line `ValueError`; `save_run`
saves Python results as a run; `compare_runs(a, b)` lists every array that differs.
`execute(command, config, out)` runs a workflow from a config dict (validated first:
unknown keys, wrong types and out-of-range values raise `ConfigError`, and the output
folder is checked and locked, before anything is compiled) and saves it; the command line
`meanfield rerun DIR` re-executes DIR's config and compares the arrays bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._json import jsonable
from ..kernels import REGISTRY as _KERNELS
from ._demo import run_demo
from ._folder import (
    RunFolderError,
    RunLock,
    RunWriter,
    fault,
    recover,
    staging_dirs,
    write_atomic,
)

KERNEL_NAMES = tuple(_KERNELS)

FORMAT = "meanfield-run"
VERSION = 1


class ConfigError(ValueError):
    """A bad option value, key or combination; raised before any computation."""


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class Option:
    """One config key: its kind, default, help text and allowed values.

    kind: "int", "float", "bool", "str", "ints", "floats", "strs" (lists) or "tol" (a float
    > 0 or the string "auto"). minimum: inclusive lower bound; positive: strictly > 0.
    """

    kind: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    positive: bool = False


def _common() -> dict[str, Option]:
    return {
        "seed": Option("int", 0, "PRNG seed (jax.random.PRNGKey)", minimum=0),
        "x64": Option("bool", False, "compute in float64 (default float32)"),
        "device": Option("str", "auto", "device to run on", choices=("auto", "cpu", "gpu")),
        "plots": Option("bool", True, "write PNG figures"),
    }


def _model_options(**defaults) -> dict[str, Option]:
    d = {
        "beta": 4.0,
        "sign": 1,
        "attention": "sa",
        "activation": "none",
        "shift_kernel": False,
        **defaults,
    }
    return {
        "beta": Option("float", d["beta"], "inverse temperature beta", positive=True),
        "sign": Option("int", d["sign"], "+1 attractive, -1 repulsive", choices=(1, -1)),
        "attention": Option("str", d["attention"], "dynamics", choices=("usa", "sa")),
        "activation": Option(
            "str",
            d["activation"],
            "random perceptron activation (none: no perceptron)",
            choices=("none", "relu", "gelu", "tanh", "linear"),
        ),
        "neurons": Option("int", 0, "perceptron width k (0: k = d)", minimum=0),
        "shift_kernel": Option(
            "bool", d["shift_kernel"], "kernel exp(beta(<x,y> - 1)) (the perceptron paper's code)"
        ),
        "rescaled_time": Option("bool", False, "velocity times e^{-beta} (large beta)"),
        "kernel": Option(
            "str",
            "auto",
            "pairwise-sum kernel (auto: meanfield.kernels.select_kernel)",
            choices=("auto", *KERNEL_NAMES),
        ),
    }


SCHEMAS: dict[str, dict[str, Option]] = {
    "simulate": {
        "n": Option("int", 256, "number of particles", minimum=2),
        "d": Option("int", 3, "ambient dimension (sphere S^{d-1})", minimum=2),
        **_model_options(),
        "dt": Option("float", 0.1, "time step", positive=True),
        "steps": Option("int", 1000, "number of steps", minimum=1),
        "save_every": Option("int", 10, "save every this many steps (divides steps)", minimum=1),
        "method": Option("str", "euler", "integrator", choices=("euler", "rk4", "geodesic")),
        "cluster_tol": Option("tol", "auto", "angular cluster tolerance (auto: 0.1/sqrt(beta))"),
        "max_trajectory_mb": Option("float", 1024.0, "refuse larger trajectories", positive=True),
        "animate": Option("bool", False, "also write trajectory.gif (d = 2 or 3)"),
        **_common(),
    },
    "sweep": {
        "n": Option("int", 64, "number of particles", minimum=2),
        "d": Option("int", 2, "ambient dimension", minimum=2),
        "betas": Option(
            "floats", [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0], "inverse temperatures", positive=True
        ),
        "seeds": Option("int", 8, "independent initial conditions per beta", minimum=1),
        **{k: v for k, v in _model_options().items() if k != "beta"},
        "dt": Option("float", 0.1, "time step", positive=True),
        "steps": Option("int", 2000, "number of steps", minimum=1),
        "save_every": Option("int", 20, "cluster counts every this many steps", minimum=1),
        "method": Option("str", "euler", "integrator", choices=("euler", "rk4", "geodesic")),
        "cluster_tol": Option("tol", "auto", "angular cluster tolerance (auto: 0.1/sqrt(beta))"),
        "save_states": Option("bool", False, "also save every state xs (B, S, T, n, d)"),
        "max_trajectory_mb": Option("float", 1024.0, "refuse larger saved states", positive=True),
        **_common(),
    },
    "critical": {
        "mode": Option(
            "str",
            "atoms",
            "certify atoms, or run the localisation study",
            choices=("atoms", "localisation"),
        ),
        "from_run": Option("str", "", "start from the final state of a saved simulate run"),
        "n": Option("int", 256, "number of particles", minimum=2),
        "d": Option("int", 2, "ambient dimension", minimum=2),
        **_model_options(beta=5.0, sign=-1, attention="usa", activation="gelu", shift_kernel=True),
        "dt": Option("float", 0.1, "time step of the flow to stationarity", positive=True),
        "max_steps": Option("int", 20000, "cap on the flow's steps", minimum=1),
        "speed_tol": Option("float", 1e-4, "stop when max speed <= this", positive=True),
        "check_every": Option("int", 100, "stopping rule checked every this many steps", minimum=1),
        "cluster_tol": Option("tol", "auto", "angular cluster tolerance (auto: 0.1/sqrt(beta))"),
        "newton_iter": Option("int", 30, "Newton iterations (float64)", minimum=0),
        "dims": Option("ints", [2, 3], "localisation: dimensions", minimum=2),
        "betas": Option(
            "floats", [0.1, 1.0, 5.0, 15.0, 50.0], "localisation: betas", positive=True
        ),
        "seeds": Option("int", 2, "localisation: seeds per beta", minimum=1),
        **_common(),
    },
    "temperature": {
        "families": Option(
            "strs",
            [
                "gaussian",
                "weibull:p=3",
                "planted_simplex:rho=0.5",
                "finite_endpoint:c=1",
                "sphere_cosine:d=3",
                "gumbel",
            ],
            "score families, name[:param=value,...]",
        ),
        "ns": Option("ints", [256, 4096, 65536], "numbers of keys n", minimum=2),
        "rows": Option("int", 32, "score rows per (family, n)", minimum=1),
        "points": Option("int", 96, "beta grid points per family", minimum=2),
        **_common(),
    },
    "demo": {
        "quick": Option("bool", False, "small sizes (tests; about 20 s)"),
        **_common(),
    },
    "transformer": {
        "model": Option(
            "str", "minilm", "checkpoint folder (config.json + safetensors), or minilm"
        ),
        "text": Option("str", "", "UTF-8 text file (default: standard-library docstrings)"),
        "max_tokens": Option("int", 0, "refuse longer texts (0: the model's context)", minimum=0),
        "truncate": Option(
            "bool", False, "keep the first max_tokens tokens of a longer text (a window)"
        ),
        "bins": Option("int", 24, "log-spaced bins of the row length n", minimum=2),
        "rows_per_bin": Option("int", 8, "query rows sampled per bin", minimum=1),
        "min_keys": Option("int", 4, "shortest row length n in the fits", minimum=3),
        "study": Option("bool", True, "encoders: also the length-sweep / entropy / particle study"),
        "lengths": Option(
            "ints",
            [16, 32, 64, 128, 256, 512],
            "study: token counts of the length sweep",
            minimum=2,
        ),
        "timing": Option("bool", True, "study: time the forward pass"),
        **_common(),
    },
}


def _kind_error(name: str, kind: str, value) -> ConfigError:
    what = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "ints": "a list of integers",
        "floats": "a list of numbers",
        "strs": "a list of strings",
        "tol": 'a number > 0 or "auto"',
    }[kind]
    return ConfigError(f"{name} must be {what}; got {value!r}")


def _scalar(name: str, kind: str, value, from_text: bool):
    """Convert one scalar (text from a flag, or a JSON/TOML value) to `kind`, or raise."""
    if from_text and isinstance(value, str):
        try:
            if kind == "int":
                return int(value)
            if kind == "float":
                return float(value)
        except ValueError:
            raise _kind_error(name, kind, value) from None
        if kind == "bool":
            low = value.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise _kind_error(name, kind, value)
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    raise _kind_error(name, kind, value)


def _check_range(name: str, opt: Option, value) -> None:
    if opt.choices is not None and value not in opt.choices:
        allowed = ", ".join(str(c) for c in opt.choices)
        raise ConfigError(f"{name} must be one of {allowed}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite; got {value!r}")
        if opt.positive and not value > 0:
            raise ConfigError(f"{name} must be > 0; got {value!r}")
        if opt.minimum is not None and value < opt.minimum:
            raise ConfigError(f"{name} must be >= {opt.minimum:g}; got {value!r}")


def coerce(name: str, opt: Option, value, *, from_text: bool = False):
    """Convert and check one option value; raise ConfigError naming `name` otherwise."""
    if opt.kind == "tol":
        if value == "auto":
            return value
        value = _scalar(name, "float", value, from_text) if not isinstance(value, bool) else None
        if value is None or not (math.isfinite(value) and value > 0):
            raise _kind_error(name, "tol", value)
        return value
    if opt.kind in ("ints", "floats", "strs"):
        if isinstance(value, str) and from_text:
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{name} must be a non-empty list; got {value!r}")
        kind = opt.kind[:-1]
        out = [_scalar(name, kind, v, from_text) for v in value]
        for v in out:
            _check_range(name, opt, v)
        return out
    value = _scalar(name, opt.kind, value, from_text)
    _check_range(name, opt, value)
    return value


def read_config_file(path) -> dict:
    """Read a TOML or JSON config file; a saved config.json gives its "config" table."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as err:  # tomllib.TOMLDecodeError, json.JSONDecodeError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {path}: cannot parse ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a table of key = value")
    if data.get("format") == FORMAT and isinstance(data.get("config"), dict):
        data = dict(data["config"])
    return data


def resolve_config(command: str, values: dict, *, source: str = "config", from_text=False):
    """Defaults overridden by `values`, every value checked; returns a new dict.

    Unknown keys, wrong types, out-of-range values and inconsistent combinations raise
    ConfigError (a one-line message naming the key) before anything is computed.
    """
    schema = SCHEMAS[command]
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for `meanfield {command}` "
            f"(known: {', '.join(schema)})"
        )
    cfg = {k: opt.default for k, opt in schema.items()}
    for key, value in values.items():
        try:
            cfg[key] = coerce(key, schema[key], value, from_text=from_text)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}" if source != "flags" else str(err)) from None
    if cfg.get("from_run"):
        cfg["from_run"] = str(Path(cfg["from_run"]).resolve())
    _check_combinations(command, cfg)
    return cfg


def _check_combinations(command: str, cfg: dict) -> None:
    if "steps" in cfg and cfg["steps"] % cfg["save_every"]:
        raise ConfigError(
            f"steps={cfg['steps']} must be a multiple of save_every={cfg['save_every']} "
            "(trajectories are subsampled by save_every, never truncated)"
        )
    if command in ("simulate", "sweep"):
        count = cfg.get("seeds", 1) * len(cfg.get("betas", [0]))
        if command == "sweep" and not cfg["save_states"]:
            count, saves = count, 1
        else:
            saves = cfg["steps"] // cfg["save_every"] + 1
        itemsize = 8 if cfg["x64"] else 4
        mb = count * saves * cfg["n"] * cfg["d"] * itemsize / 2**20
        if mb > cfg["max_trajectory_mb"]:
            per = cfg["max_trajectory_mb"] * 2**20 / (count * cfg["n"] * cfg["d"] * itemsize)
            need = next(
                (
                    s
                    for s in range(1, cfg["steps"] + 1)
                    if cfg["steps"] % s == 0 and cfg["steps"] // s + 1 <= per
                ),
                None,
            )
            hint = f"use save_every >= {need}" if need else "reduce n or steps"
            raise ConfigError(
                f"the saved states would take {mb:.0f} MB > max_trajectory_mb="
                f"{cfg['max_trajectory_mb']:g}; {hint} (never truncated silently)"
            )
    if cfg.get("kernel", "auto") != "auto" and "d" in cfg:
        from ..kernels import KernelError

        dtype = "float64" if cfg.get("x64") else "float32"
        try:
            _KERNELS[cfg["kernel"]]().check(cfg.get("n", 2), cfg["d"], dtype)
        except KernelError as err:
            raise ConfigError(f"kernel={cfg['kernel']}: {err}") from None
    if command == "temperature":
        for spec in cfg["families"]:
            parse_family(spec)
    if command == "transformer":
        _check_transformer(cfg)
    from_run = cfg.get("from_run")
    if command == "critical" and from_run:
        if not (Path(from_run) / "config.json").is_file():
            raise ConfigError(f"from_run={from_run}: not a saved run (no config.json)")
        try:  # every file of the run checked now, not after the work has started
            run = load_run(from_run)
        except ValueError as err:
            raise ConfigError(f"from_run={from_run}: {err}") from None
        if run.command != "simulate" or "xs" not in run.arrays:
            raise ConfigError(f"from_run={from_run}: a {run.command} run, need simulate")


def _check_transformer(cfg: dict) -> None:
    """The transformer workflow's files, checked (and made absolute) before any loading."""
    if cfg["model"] != "minilm":
        folder = Path(cfg["model"]).expanduser().resolve()
        if not (folder / "config.json").is_file():
            what = "no such folder" if not folder.is_dir() else "no config.json in it"
            raise ConfigError(f"model={cfg['model']}: {what} (a Hugging Face checkpoint folder)")
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ConfigError(f"model={cfg['model']}: config.json is not a JSON object") from None
        from ..transformer.checkpoint import ARCHITECTURES

        if model_type not in ARCHITECTURES:
            raise ConfigError(
                f"model={cfg['model']}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(ARCHITECTURES)})"
            )
        cfg["model"] = str(folder)
    else:
        from ..transformer._load import INSTALL_LINE, package_path

        if package_path() is None:
            raise ConfigError(f"model=minilm needs the weights package: {INSTALL_LINE}")
    if cfg["text"]:
        path = Path(cfg["text"]).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"text={cfg['text']}: no such file")
        if not path.read_text(encoding="utf-8", errors="replace").strip():
            raise ConfigError(f"text={cfg['text']}: the file is empty")
        cfg["text"] = str(path)
    if any(n > 512 for n in cfg["lengths"]):
        raise ConfigError(f"lengths must be <= 512 (MiniLM's positions); got {cfg['lengths']}")


def parse_family(spec: str) -> tuple[str, dict]:
    """'weibull:p=3,sigma=2' -> ('weibull', {'p': 3.0, 'sigma': 2.0}), checked."""
    from ..temperature import FAMILIES, family_params

    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in FAMILIES:
        raise ConfigError(f"families: unknown family {name!r} (known: {', '.join(FAMILIES)})")
    params = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or key not in FAMILIES[name]:
            raise ConfigError(
                f"families: bad parameter {item!r} for {name} (it takes "
                f"{', '.join(FAMILIES[name]) or 'none'}, as {name}:key=value)"
            )
        try:
            params[key] = int(val) if key == "d" else float(val)
        except ValueError:
            raise ConfigError(f"families: {name}:{key} must be a number; got {val!r}") from None
        if not math.isfinite(params[key]):
            raise ConfigError(f"families: {name}:{key} must be finite; got {val!r}")
    try:  # the family's own range checks (p > 0, |rho| < 1, ...), before anything runs
        family_params(name, params)
    except ValueError as err:
        raise ConfigError(f"families: {spec}: {err}") from None
    return name, params


# ----------------------------------------------------------------------------- progress


class Progress:
    """A dependency-free progress line on stderr: `label [####------] 4/10  2.1 s`.

    On a terminal the line is redrawn in place; otherwise a line is printed every 10%.
    `quiet=True` prints nothing. Use as a context manager or call `close()`.
    """

    def __init__(self, total: int, label: str, *, quiet: bool = False, stream=None):
        self.total, self.label, self.quiet = max(int(total), 1), label, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.done, self.start, self._printed = 0, time.perf_counter(), -1
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if self.quiet:
            return
        frac = self.done / self.total
        if not self._tty and not final and int(10 * frac) == self._printed:
            return
        self._printed = int(10 * frac)
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        line = f"{self.label} [{bar}] {self.done}/{self.total}  {self.elapsed:.1f} s"
        end = "\n" if (final or not self._tty) else ""
        self.stream.write(("\r" if self._tty else "") + line + end)
        self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def update(self, k: int = 1) -> None:
        self.done = min(self.done + k, self.total)
        if self.done < self.total:
            self._draw()

    def close(self) -> None:
        self.done = self.total
        self._draw(final=True)
        self.quiet = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- the format


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
        import jax.numpy as jnp

        from ..integrate import Trajectory

        if "xs" not in self.arrays or "ts" not in self.arrays:
            raise ValueError(f"run {self.path} ({self.command}) has no saved trajectory")
        return Trajectory(jnp.asarray(self.arrays["ts"]), jnp.asarray(self.arrays["xs"]))


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


def _python_environment(arrays: dict, config: dict) -> dict:
    import jax

    floats = [np.asarray(v).dtype for v in arrays.values() if np.asarray(v).dtype.kind == "f"]
    x64 = bool(jax.config.jax_enable_x64)
    env = environment(jax.devices()[0], {"x64": x64, "seed": config.get("seed")})
    env["dtype"] = str(floats[0]) if floats else env["dtype"]
    return env


def save_run(
    folder,
    arrays=None,
    results: dict | None = None,
    *,
    config: dict | None = None,
    figures: dict | None = None,
    command: str = "python",
    overwrite: bool = False,
) -> Run:
    """Save results computed in Python as a run folder, the counterpart of `load_run`.

    The folder gets the same files as a `meanfield` command's run (config.json,
    arrays.npz, results.json, figures), written into a staging sibling and moved into
    place atomically, under the folder's lock. Its config.json records
    `"rerunnable": false`: `meanfield rerun` refuses it (it has no workflow to re-execute),
    while `load_run`, `compare_runs` and the figures work as for any run.

    **Arguments:**

    - `folder`: the run folder to create. An existing, non-empty folder is refused
      (`ValueError`) unless `overwrite=True`, which replaces it as a whole (only a folder
      that is a run or empty: never an arbitrary folder).
    - `arrays`: a dict of name -> array (NumPy or JAX; saved losslessly), or a
      `Trajectory` (saved as `ts`, `xs`, so `load_run(folder).trajectory` gives it back).
    - `results`: a JSON-able dict of the run's numbers (NumPy / JAX scalars and arrays are
      converted).
    - `config`: a JSON-able dict of the parameters that produced the run (free form),
      stored as the run's `config`.
    - `figures`: a dict of file name -> matplotlib Figure, saved into the folder (the
      format by the name's suffix, as `plot.save`, which closes the figure) and listed
      in `results["files"]`.
    - `command`: the label stored as the run's command (default "python").
    - `overwrite`: replace an existing run folder.

    **Returns:**

    The saved run, read back with `load_run`.
    """
    from ..integrate import Trajectory

    if isinstance(arrays, Trajectory):
        arrays = {"ts": arrays.ts, "xs": arrays.xs}
    arrays = {} if arrays is None else arrays
    if not isinstance(arrays, dict) or not all(isinstance(k, str) for k in arrays):
        raise TypeError("`arrays` must be a dict of name -> array or a Trajectory")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"`arrays[{k!r}]` is not a numeric array (dtype object)")
    results = dict(results or {})
    config = dict(config or {})
    if command in WORKFLOWS or command in ("demo", "rerun", "resume"):
        raise ValueError(f"`command`={command!r} is a meanfield command; use another label")
    json.dumps(jsonable(results)), json.dumps(jsonable(config))  # fail before writing
    figures = dict(figures or {})
    with RunWriter(folder, overwrite=overwrite, flag="overwrite=True", what="folder") as writer:
        if figures:
            from .. import plot

            names = []
            for name, fig in figures.items():
                plot.save(fig, writer.path / name)
                names.append(name)
            results["files"] = list(results.get("files", [])) + names
        env = _python_environment(arrays, config)
        write_run_files(writer.path, command, config, arrays, results, env, rerunnable=False)
        writer.commit()
    return load_run(writer.out)


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
    and bits; NaNs equal): one line per difference, naming the file and the array."""
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


# ----------------------------------------------------------------------------- environment


def select_device(name: str):
    """The jax Device for "auto" (JAX's default), "cpu" or "gpu"; ConfigError if absent."""
    import jax

    if name == "auto":
        return jax.devices()[0]
    try:
        return jax.devices(name)[0]
    except RuntimeError:
        have = sorted({d.platform for d in jax.devices()})
        hint = ' (pip install "jax[cuda12]")' if name == "gpu" else ""
        raise ConfigError(
            f"device={name}: JAX sees no {name} on this machine (it has {', '.join(have)}){hint}"
        ) from None


def environment(device, cfg: dict) -> dict:
    """What a rerun must match: library versions, device, dtype, seed."""
    import jax
    import jaxlib

    from .. import __version__

    return {
        "meanfield": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": device.platform,
        "device": str(device),
        "device_kind": getattr(device, "device_kind", ""),
        "x64": bool(cfg.get("x64", False)),
        "dtype": "float64" if cfg.get("x64") else "float32",
        "seed": cfg.get("seed", 0),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "cpu_count": os.cpu_count(),
    }


# ----------------------------------------------------------------------------- helpers


def _dtype(cfg):
    import jax.numpy as jnp

    return jnp.float64 if cfg["x64"] else jnp.float32


def build_model(cfg: dict, key, beta=None):
    """The MeanField model of a config (random perceptron drawn from `key`)."""
    from ..dynamics._model import MeanField
    from ..dynamics._perceptron import Perceptron

    perceptron = None
    if cfg["activation"] != "none":
        k = cfg["neurons"] or None
        perceptron = Perceptron.random(
            key, cfg["d"], k=k, activation=cfg["activation"], dtype=_dtype(cfg)
        )
    return MeanField(
        cfg["beta"] if beta is None else beta,
        sign=cfg["sign"],
        attention=cfg["attention"],
        perceptron=perceptron,
        kernel=cfg["kernel"],
        shift_kernel=cfg["shift_kernel"],
        rescaled_time=cfg["rescaled_time"],
    )


def cluster_tolerance(cfg: dict, beta: float) -> float:
    """The config's angular cluster tolerance, or `atoms.default_tolerance(beta)` for "auto"."""
    from ..atoms import default_tolerance

    tol = cfg["cluster_tol"]
    return float(default_tolerance(beta)) if tol == "auto" else float(tol)


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and how often a workflow checkpoints (`--checkpoint-every`): the folder, the
    steps between checkpoints and the PRNG key kept with the state."""

    directory: Path
    every: int
    key: Any = None


def _divisor_at_least(total: int, low: int) -> int:
    return next(k for k in range(max(low, 1), total + 1) if total % k == 0)


def integrate_chunked(
    model,
    X0,
    *,
    dt,
    steps: int,
    save_every: int,
    method="euler",
    m=None,
    progress=None,
    max_chunks: int = 50,
    checkpoint: Checkpointing | None = None,
):
    """`integrate` run from Python in equal chunks of whole saves, so a progress line can
    advance between jitted chunks (one compilation: every chunk has the same length).
    With `checkpoint`, chunks of `checkpoint.every` steps and the state saved after each
    (`integrate_checkpointed`; resumes from an existing checkpoint).

    Returns a Trajectory with steps // save_every + 1 states, like `integrate` (the same
    bits: chunk boundaries do not change them).
    """
    import jax.numpy as jnp

    from ..integrate import Trajectory, integrate

    if steps % save_every:
        raise ValueError(f"steps={steps} must be a multiple of save_every={save_every}")
    if checkpoint is not None:
        from ._checkpoint import integrate_checkpointed

        return integrate_checkpointed(
            model,
            X0,
            dt=dt,
            steps=steps,
            save_every=save_every,
            method=method,
            m=m,
            checkpoint_dir=checkpoint.directory,
            checkpoint_every=checkpoint.every,
            key=checkpoint.key,
            progress=progress,
        )
    saves = steps // save_every
    per = _divisor_at_least(saves, -(-saves // max_chunks))
    X, parts = X0, [X0[None]]
    if progress is not None:
        progress.total = saves // per
    for _ in range(saves // per):
        traj = integrate(
            model, X, dt=dt, steps=per * save_every, save_every=save_every, method=method, m=m
        )
        parts.append(traj.xs[1:])
        X = traj.xs[-1]
        if progress is not None:
            progress.update()
    xs = jnp.concatenate(parts, axis=0)
    ts = jnp.asarray(dt, X0.dtype) * save_every * jnp.arange(saves + 1, dtype=X0.dtype)
    return Trajectory(ts, xs)


def _energies(model, xs):
    """Energy along saved states (rescaled by e^{-beta} with rescaled_time), or None."""
    import jax

    try:
        fn = model.rescaled_energy if model.rescaled_time else model.energy
        return jax.vmap(fn)(xs)
    except ValueError:
        return None


@functools.cache
def _cluster_stats_fn():
    """The jitted batch clustering, built once (a function defined per call would be a new
    jit cache entry, i.e. a recompilation, for every beta of a sweep)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from ..atoms import cluster_padded

    @eqx.filter_jit
    def stats(flat, tol):
        n = flat.shape[1]
        m = jnp.full((n,), 1.0 / n, flat.dtype)

        def one(X):
            atoms = cluster_padded(X, m, tol)
            return atoms.count, atoms.largest_mass

        return jax.lax.map(one, flat)

    return stats


def _cluster_stats(xs, tol):
    """Cluster counts and largest cluster mass of every state in xs (..., n, d)."""
    import jax.numpy as jnp

    stats = _cluster_stats_fn()
    lead = xs.shape[:-2]
    counts, mass = stats(xs.reshape((-1,) + xs.shape[-2:]), jnp.asarray(tol, xs.dtype))
    return np.asarray(counts).reshape(lead), np.asarray(mass).reshape(lead)


def _non_decreasing(values, rtol: float = 1e-5) -> bool:
    """True if the sequence never drops by more than rtol * max|value|."""
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all(np.diff(values) >= -rtol * np.max(np.abs(values))))


def _save_fig(fig, out: Path, name: str, files: list) -> None:
    from .. import plot

    plot.save(fig, out / name)
    files.append(name)


# ----------------------------------------------------------------------------- simulate


def run_simulate(cfg: dict, out: Path, quiet: bool = False, checkpoint=None):
    """Simulate one system from uniform initial data; arrays ts, xs, energy.
    `checkpoint` (a `Checkpointing`): save the state periodically, resume from it."""
    import jax
    import jax.random as jr

    from ..atoms import cluster
    from ..sphere import uniform_sphere

    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    model = build_model(cfg, kp)
    X0 = uniform_sphere(kx, cfg["n"], cfg["d"], dtype=_dtype(cfg))
    with Progress(1, "simulate", quiet=quiet) as bar:
        traj = integrate_chunked(
            model,
            X0,
            dt=cfg["dt"],
            steps=cfg["steps"],
            save_every=cfg["save_every"],
            method=cfg["method"],
            progress=bar,
            checkpoint=checkpoint,
        )
    energy = _energies(model, traj.xs)
    final = traj.xs[-1]
    tol = cluster_tolerance(cfg, cfg["beta"])
    atoms = cluster(final, tol=tol)
    arrays = {"ts": traj.ts, "xs": traj.xs}
    results = {
        "saves": int(traj.xs.shape[0]),
        "t_final": float(traj.ts[-1]),
        "clusters_final": int(atoms.count),
        "largest_cluster_mass": float(atoms.largest_mass),
        "cluster_tol": tol,
        "max_speed_final": float(
            jax.numpy.max(jax.numpy.linalg.norm(model.velocity(final), axis=1))
        ),
    }
    if energy is not None:
        arrays["energy"] = energy
        results.update(
            energy_initial=float(energy[0]),
            energy_final=float(energy[-1]),
            energy_non_decreasing=_non_decreasing(energy),
        )
    files: list[str] = []
    if cfg["plots"]:
        _simulate_figures(cfg, traj, energy, out, files)
    results["files"] = files
    return arrays, results


def _model_title(cfg) -> str:
    sign = "attractive" if cfg["sign"] == 1 else "repulsive"
    extra = "" if cfg["activation"] == "none" else f" + {cfg['activation']} perceptron"
    beta = f"beta = {cfg['beta']:g}, " if "beta" in cfg else ""
    return f"{cfg['attention'].upper()} {sign}{extra}, {beta}n = {cfg['n']}"


def _simulate_figures(cfg, traj, energy, out, files) -> None:
    from .. import plot

    title = _model_title(cfg)
    d = cfg["d"]
    if d == 2:
        _save_fig(plot.circle_trajectory(traj, title=f"S^1: {title}"), out, "trajectory.png", files)
    if d in (2, 3):
        _save_fig(plot.snapshots(traj, title=f"S^{d - 1}: {title}"), out, "snapshots.png", files)
    if energy is not None:
        label = "e^{-beta} F_s" if cfg["rescaled_time"] else "F_s"
        fig = plot.energy_curve(traj.ts, energy, title=f"Energy: {title}", ylabel=label)
        _save_fig(fig, out, "energy.png", files)
    fig = plot.cosine_histogram(traj.xs[0], label="t = 0", title="Pairwise cosine similarities")
    plot.cosine_histogram(traj.xs[-1], ax=fig.axes[0], label=f"t = {float(traj.ts[-1]):g}")
    _save_fig(fig, out, "cosines.png", files)
    if cfg["animate"] and d in (2, 3):
        plot.animate(traj, out / "trajectory.gif", title=title)
        files.append("trajectory.gif")


# ----------------------------------------------------------------------------- sweep


def run_sweep(cfg: dict, out: Path, quiet: bool = False):
    """Ensembles over seeds for every beta (one compilation); cluster statistics in time."""
    import jax.numpy as jnp
    import jax.random as jr

    from ..critical import MASS_BOUND_LIMIT, mass_bound
    from ..integrate import ensemble, with_beta

    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    betas = [float(b) for b in cfg["betas"]]
    model = build_model(cfg, kp, beta=max(betas))
    counts, mass, finals, states = [], [], [], []
    ts = None
    with Progress(len(betas), "sweep over beta", quiet=quiet) as bar:
        for b in betas:
            traj = ensemble(
                with_beta(model, b),
                kx,
                n=cfg["n"],
                d=cfg["d"],
                seeds=cfg["seeds"],
                dt=cfg["dt"],
                steps=cfg["steps"],
                save_every=cfg["save_every"],
                method=cfg["method"],
                dtype=_dtype(cfg),
            )
            c, lm = _cluster_stats(traj.xs, cluster_tolerance(cfg, b))
            counts.append(c)
            mass.append(lm)
            finals.append(np.asarray(traj.xs[:, -1]))
            if cfg["save_states"]:
                states.append(np.asarray(traj.xs))
            ts = traj.ts[0]
            bar.update()
    arrays = {
        "betas": np.asarray(betas, dtype=np.asarray(ts).dtype),
        "ts": ts,
        "counts": np.stack(counts),
        "largest_mass": np.stack(mass),
        "final": np.stack(finals),
    }
    if states:
        arrays["xs"] = np.stack(states)
    bound_applies = cfg["d"] == 2 and cfg["sign"] == -1
    bounds = [
        float(mass_bound(b, model.perceptron, shift_kernel=cfg["shift_kernel"])) for b in betas
    ]
    results = {
        "betas": betas,
        "t_final": float(jnp.asarray(ts)[-1]),
        "clusters_final_mean": [float(c[:, -1].mean()) for c in counts],
        "clusters_final_min": [int(c[:, -1].min()) for c in counts],
        "clusters_final_max": [int(c[:, -1].max()) for c in counts],
        "largest_mass_mean": [float(lm[:, -1].mean()) for lm in mass],
        "largest_mass_max": [float(lm[:, -1].max()) for lm in mass],
        "cluster_tol": [cluster_tolerance(cfg, b) for b in betas],
        "mass_bound_applies": bound_applies,
        "mass_bound": bounds if bound_applies else None,
        "mass_bound_limit": MASS_BOUND_LIMIT,
    }
    if bound_applies:
        results["below_mass_bound"] = bool(
            all(lm[:, -1].max() <= bd for lm, bd in zip(mass, bounds, strict=True))
        )
    files: list[str] = []
    if cfg["plots"]:
        _sweep_figures(cfg, arrays, bounds if bound_applies else None, out, files)
    results["files"] = files
    return arrays, results


def _sweep_figures(cfg, arrays, bounds, out, files) -> None:
    from .. import plot

    title = _model_title(cfg)
    fig = plot.phase_diagram(
        arrays["ts"],
        arrays["betas"],
        arrays["counts"],
        title=f"Clusters over (t, beta): {title}, {cfg['seeds']} seeds",
    )
    _save_fig(fig, out, "phase_diagram.png", files)
    fig = plot.largest_mass(
        arrays["betas"],
        arrays["largest_mass"][:, :, -1],
        bound=bounds,
        limit="auto" if bounds is not None else None,
        title=f"Largest cluster at t = {float(arrays['ts'][-1]):g}: {title}",
    )
    _save_fig(fig, out, "largest_mass.png", files)


# ----------------------------------------------------------------------------- critical


def _to_float64(tree):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if eqx.is_inexact_array(a) else a, tree
    )


def certify_atoms(model, locations, masses, *, newton_iter: int = 30) -> tuple[dict, dict]:
    """Newton-refine atoms (X, m) to a critical point and certify it, in float64.

    Returns (results, arrays): residuals before and after Newton (model units), the Newton
    displacement, the `stability_report` verdicts and largest eigenvalues; arrays refined
    (k, d), splitting_eigenvalues (k, d-1), transport_eigenvalues (K,).
    """
    import jax
    import jax.numpy as jnp

    from ..critical import newton_refine, stability_report, stationarity_residual

    with jax.enable_x64(True):
        mdl = _to_float64(model)
        X = np.asarray(locations, np.float64)
        X = jnp.asarray(X / np.linalg.norm(X, axis=1, keepdims=True))
        m = np.asarray(masses, np.float64)
        m = jnp.asarray(m / m.sum())
        before = float(stationarity_residual(mdl, X, m))
        if newton_iter > 0:
            cp = newton_refine(mdl, X, m, max_iter=newton_iter)
            Xr, newton_ok = cp.X, bool(cp.converged)
        else:
            Xr, newton_ok = X, False
        rep = stability_report(mdl, Xr, m)
        moved = float(jnp.max(jnp.linalg.norm(Xr - X, axis=1)))
    split, trans = rep.splitting_eigenvalues, rep.transport_eigenvalues
    results = {
        "atoms": int(X.shape[0]),
        "masses": [float(v) for v in np.asarray(m)],
        "residual_before_newton": before,
        "residual": float(rep.residual),
        "grad_tol": float(rep.grad_tol),
        "newton_converged": newton_ok,
        "newton_displacement": moved,
        "stationary": bool(rep.stationary),
        "splitting_stable": bool(rep.splitting_stable),
        "transport_stable": bool(rep.transport_stable),
        "stable": bool(rep.stable),
        "strictly_stable": bool(rep.strictly_stable),
        "max_splitting_eigenvalue": float(split.max()) if split.size else None,
        "max_transport_eigenvalue": float(trans.max()) if trans.size else None,
        "eigenvalue_tol": float(rep.tol),
        "modulo_rotations": bool(rep.modulo_rotations),
    }
    arrays = {
        "refined": np.asarray(Xr),
        "splitting_eigenvalues": np.asarray(split),
        "transport_eigenvalues": np.asarray(trans),
    }
    return results, arrays


def _critical_start(cfg):
    """(model, config used for the model, X) for critical: a saved run's final state or uniform."""
    import jax.random as jr

    from ..sphere import uniform_sphere

    if cfg["from_run"]:
        run = load_run(cfg["from_run"])
        if run.command != "simulate":
            raise ConfigError(f"from_run={cfg['from_run']}: a {run.command} run, need simulate")
        mcfg = {**cfg, **{k: run.config[k] for k in SCHEMAS["simulate"] if k in run.config}}
        _, kp = jr.split(jr.PRNGKey(mcfg["seed"]))
        model = build_model(mcfg, kp)
        X = np.asarray(run.arrays["xs"][-1], dtype=np.dtype(_dtype(mcfg)))
        return model, mcfg, X
    kx, kp = jr.split(jr.PRNGKey(cfg["seed"]))
    return build_model(cfg, kp), cfg, uniform_sphere(kx, cfg["n"], cfg["d"], dtype=_dtype(cfg))


def run_critical(cfg: dict, out: Path, quiet: bool = False):
    """Flow to stationarity, cluster into atoms, Newton-refine and certify (float64)."""
    if cfg["mode"] == "localisation":
        return _run_localisation(cfg, out, quiet)
    import jax.numpy as jnp

    from ..atoms import cluster
    from ..critical import MASS_BOUND_LIMIT, mass_bound
    from ..integrate import integrate_until

    model, mcfg, X0 = _critical_start(cfg)
    with Progress(1, "flow to stationarity", quiet=quiet) as bar:
        res = integrate_until(
            model,
            jnp.asarray(X0),
            dt=cfg["dt"],
            tol=cfg["speed_tol"],
            max_steps=cfg["max_steps"],
            check_every=cfg["check_every"],
        )
        bar.update()
    beta = float(mcfg["beta"])
    tol = cluster_tolerance(cfg, beta)
    atoms = cluster(res.final, tol=tol)
    with Progress(1, "certify atoms (float64)", quiet=quiet) as bar:
        cert, cert_arrays = certify_atoms(
            model, atoms.locations, atoms.masses, newton_iter=cfg["newton_iter"]
        )
        bar.update()
    d, sign = res.final.shape[1], float(mcfg["sign"])
    results = {
        "d": int(d),
        "beta": beta,
        "flow_steps": int(res.steps),
        "flow_converged": bool(res.converged),
        "max_speed": float(res.max_speed),
        "cluster_tol": tol,
        "largest_mass": float(atoms.largest_mass),
        "max_diameter": float(atoms.max_diameter),
        **cert,
    }
    if d == 2 and sign == -1:
        bound = mass_bound(beta, model.perceptron, shift_kernel=bool(mcfg["shift_kernel"]))
        results.update(
            mass_bound=float(bound),
            mass_bound_limit=MASS_BOUND_LIMIT,
            diameter_limit=1 / (2 * math.sqrt(beta)),
            below_mass_bound=bool(float(atoms.largest_mass) <= bound),
        )
    arrays = {"x": res.final, "locations": atoms.locations, "masses": atoms.masses, **cert_arrays}
    files: list[str] = []
    if cfg["plots"] and d in (2, 3):
        from .. import plot

        verdict = (
            "strictly stable"
            if cert["strictly_stable"]
            else ("stable" if cert["stable"] else "not certified stable")
        )
        fig = plot.atoms(
            res.final,
            cert_arrays["refined"],
            cert["masses"],
            title=f"{cert['atoms']} atoms, {verdict} (residual {cert['residual']:.1e})",
        )
        _save_fig(fig, out, "atoms.png", files)
    results["files"] = files
    return arrays, results


def _run_localisation(cfg: dict, out: Path, quiet: bool):
    import jax.random as jr

    from ..studies.localisation import run_study

    study = run_study(
        out,
        dims=tuple(cfg["dims"]),
        betas=tuple(cfg["betas"]),
        seeds=cfg["seeds"],
        n=cfg["n"],
        conventions=(cfg["shift_kernel"],),
        max_steps=cfg["max_steps"],
        check_every=cfg["check_every"],
        key=jr.PRNGKey(cfg["seed"]),
        verbose=not quiet,
    )
    recs = study["records"]
    arrays = {
        k: np.asarray([r[k] for r in recs])
        for k in ("beta", "d", "seed", "atoms", "largest_mass", "mass_bound")
    }
    results = {
        "summary": study["summary"],
        "files": ["localisation_study.json", "localisation_study.md", "localisation_study.png"],
    }
    return arrays, results


# ----------------------------------------------------------------------------- temperature


def run_temperature(cfg: dict, out: Path, quiet: bool = False):
    """Entropy curves H(beta)/log n and beta*_n of sampled score rows, against the laws."""
    import jax.numpy as jnp
    import jax.random as jr

    from ..temperature import (
        beta_at_pmax_half,
        critical_beta,
        predicted_critical_beta,
        sample_scores,
        softmax_curves,
    )

    key, dtype = jr.PRNGKey(cfg["seed"]), _dtype(cfg)
    ns = [int(n) for n in cfg["ns"]]
    specs = [parse_family(s) for s in cfg["families"]]
    grids, ent, pmx, bstar, preds, table = [], [], [], [], [], {}
    with Progress(len(specs) * len(ns), "temperature", quiet=quiet) as bar:
        for i, (name, params) in enumerate(specs):
            pred = np.asarray(predicted_critical_beta(name, np.asarray(ns), **params))
            grid = np.geomspace(pred.min() / 30, pred.max() * 10, cfg["points"])
            betas = jnp.asarray(grid, dtype)
            e_i, p_i, b_i, half = [], [], [], []
            for j, n in enumerate(ns):
                k = jr.fold_in(jr.fold_in(key, i), j)
                s = sample_scores(name, k, n, rows=cfg["rows"], dtype=dtype, **params)
                curves = softmax_curves(s, betas)
                e_i.append(np.asarray(curves.entropy, np.float64).mean(0) / math.log(n))
                p_i.append(np.asarray(curves.p_max, np.float64).mean(0))
                b_i.append(np.asarray(critical_beta(s)))
                half.append(float(np.median(np.asarray(beta_at_pmax_half(s)))))
                bar.update()
            med = [float(np.median(b)) for b in b_i]
            table[cfg["families"][i]] = {
                "family": name,
                "params": params,
                "n": ns,
                "predicted": [float(p) for p in pred],
                "measured_median": med,
                "ratio": [m / float(p) for m, p in zip(med, pred, strict=True)],
                "beta_pmax_half_median": half,
            }
            grids.append(grid)
            ent.append(np.stack(e_i))
            pmx.append(np.stack(p_i))
            bstar.append(np.stack(b_i))
            preds.append(pred)
    arrays = {
        "ns": np.asarray(ns),
        "betas": np.stack(grids),
        "entropy": np.stack(ent),
        "p_max": np.stack(pmx),
        "beta_star": np.stack(bstar),
        "predicted": np.stack(preds),
    }
    results = {"families": table}
    files: list[str] = []
    if cfg["plots"]:
        from .. import plot

        fig = plot.entropy_panels(
            arrays["betas"],
            arrays["entropy"],
            ns,
            list(cfg["families"]),
            predicted=arrays["predicted"],
            measured=np.median(arrays["beta_star"], axis=-1),
        )
        _save_fig(fig, out, "entropy.png", files)
        fig = plot.critical_ratios(ns, {k: v["ratio"] for k, v in table.items()})
        _save_fig(fig, out, "ratios.png", files)
    results["files"] = files
    return arrays, results


# ----------------------------------------------------------------------------- transformer


def run_transformer(cfg: dict, out: Path, quiet: bool = False):
    """Long-context temperature diagnostics of a checkpoint (MiniLM by default): beta*_n of
    causal rows versus n per layer and head, critical ratios, growth laws, the recommended
    logit scale s(n); for encoders also the MiniLM study (summary.json, table.md)."""
    from ..transformer import (
        LAW_NAMES,
        load_checkpoint,
        load_minilm,
        long_context_diagnostics,
        text_ids,
    )

    dtype = _dtype(cfg)
    model = load_minilm(dtype) if cfg["model"] == "minilm" else load_checkpoint(cfg["model"], dtype)
    text = Path(cfg["text"]).read_text(encoding="utf-8") if cfg["text"] else None
    limit = cfg["max_tokens"] or None
    ids = text_ids(model, text, max_tokens=limit, truncate=cfg["truncate"])  # refuse early
    study = bool(cfg["study"]) and not getattr(model, "causal", False)
    from ..transformer._diagnostics import study_steps

    steps = model.layers + 1 + (study_steps(cfg["lengths"]) if study else 0)
    with Progress(steps, "transformer", quiet=quiet) as bar:
        res = long_context_diagnostics(
            model,
            ids=ids,
            bins=cfg["bins"],
            rows_per_bin=cfg["rows_per_bin"],
            min_keys=cfg["min_keys"],
            progress=bar.update,
        )
        summary = None
        if study:
            from ..transformer import run_diagnostics

            summary = run_diagnostics(
                model,
                text,
                tuple(cfg["lengths"]),
                out=out,
                timing=cfg["timing"],
                figures=cfg["plots"],
                progress=bar.update,
            )
    names = [
        "rows",
        "n_keys",
        "beta_star",
        "bin_n",
        "beta_star_bins",
        "ratio_bins",
        "ratio_longest",
        "law_constants",
        "law_rms",
        "best_law",
        "gamma",
        "c_gamma",
        "ratio_train",
        "s_grid",
        "s_recommended",
        "s_median",
        "s_log_n",
        "s_yarn",
    ]
    arrays = {k: np.asarray(res[k]) for k in names}
    best = np.asarray(res["best_law"]).ravel()
    results = {
        k: res[k]
        for k in ("model", "n_tokens", "beta_model", "n_train", "context", "layers", "heads")
    }
    results.update(
        window=res["window"],
        gamma_median=res["gamma_median"],
        ratio_longest_median=float(np.nanmedian(res["ratio_longest"])),
        ratio_train_median=float(np.nanmedian(res["ratio_train"])),
        heads_above_critical=int(np.sum(res["ratio_longest"] > 1)),
        best_law_counts={name: int(np.sum(best == i)) for i, name in enumerate(LAW_NAMES)},
        law_constant_medians={
            name: float(np.nanmedian(res["law_constants"][..., i]))
            for i, name in enumerate(LAW_NAMES)
        },
        text=cfg["text"] or "stdlib_text()",
    )
    files: list[str] = []
    if summary is not None:
        results["study"] = {k: v for k, v in summary.items() if not k.startswith("_")}
        files += ["summary.json", "table.md"]
        if cfg["plots"]:
            files += [
                f"{n}.png" for n in ("critical_ratio", "entropy_curves", "growth", "particles")
            ]
    if cfg["plots"]:
        from ..transformer import plot_long_context

        for name, fig in plot_long_context(res).items():
            _save_fig(fig, out, f"long_context_{name}.png", files)
    results["files"] = files
    return arrays, results


# ----------------------------------------------------------------------------- execute


WORKFLOWS: dict[str, Callable] = {
    "simulate": run_simulate,
    "sweep": run_sweep,
    "critical": run_critical,
    "temperature": run_temperature,
    "transformer": run_transformer,
}


CHECKPOINTED = ("simulate",)
RESUME_RECORD = "run.json"


def checkpoint_dir(out) -> Path:
    """Where a run into `out` started with `--checkpoint-every` keeps its checkpoint:
    the hidden sibling ``.NAME.checkpoint`` (deleted once the run is in place)."""
    out = Path(out)
    out = out.resolve() if out.name in ("", ".", "..") else out
    return out.parent / f".{out.name}.checkpoint"


def _checkpoint_every(command: str, cfg: dict, every) -> int:
    if every is None or every == 0:
        return 0
    if command not in CHECKPOINTED:
        raise ConfigError(
            f"--checkpoint-every: `meanfield {command}` does not checkpoint (only "
            f"{', '.join(CHECKPOINTED)})"
        )
    every = coerce("--checkpoint-every", Option("int", 0, "", minimum=1), every, from_text=True)
    if every % cfg["save_every"]:
        raise ConfigError(
            f"--checkpoint-every={every} must be a multiple of save_every={cfg['save_every']}"
        )
    return every


def _describe_checkpoint(ck_dir: Path) -> str:
    from ._checkpoint import CHECKPOINT_FILE, load_checkpoint

    if not (ck_dir / CHECKPOINT_FILE).is_file():
        return "before its first checkpoint"
    try:
        ck = load_checkpoint(ck_dir)
    except ValueError as err:
        raise RunFolderError(str(err)) from None
    return f"at step {ck.step} of {ck.steps}"


def execute(
    command: str,
    config: dict,
    out,
    *,
    quiet: bool = False,
    checked: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> Run:
    """Validate `config` (unless `checked`), check that `out` may be written (refused if
    it exists, unless `overwrite`; locked against a second writer), run the workflow on
    the chosen device and precision, and save the run into `out` atomically. Every check
    comes before anything is compiled. Returns the loaded `Run`.

    `checkpoint_every` (simulate): save the state every this many steps into
    `checkpoint_dir(out)`, so that `resume_run(out)` can continue a killed run; `resume`
    is how `resume_run` continues from that checkpoint.
    """
    import jax

    cfg = config if checked else resolve_config(command, config)
    every = _checkpoint_every(command, cfg, checkpoint_every)
    device = select_device(cfg["device"])
    out = Path(out)
    ck_dir = checkpoint_dir(out)
    with RunWriter(out, overwrite=overwrite) as writer:
        if ck_dir.exists() and not resume:
            if not overwrite:
                raise RunFolderError(
                    f"{out}: an interrupted run left a checkpoint "
                    f"({_describe_checkpoint(ck_dir)}) in {ck_dir}; `meanfield resume {out}` "
                    "continues it, --overwrite discards it"
                )
            shutil.rmtree(ck_dir)
        checkpoint = None
        if every:
            if not resume:
                record = {
                    "command": command,
                    "config": jsonable(cfg),
                    "checkpoint_every": every,
                    "overwrite": bool(overwrite),
                    "out": str(out),
                }
                ck_dir.mkdir(parents=True, exist_ok=True)
                text = json.dumps(record, indent=2) + "\n"
                write_atomic(ck_dir / RESUME_RECORD, lambda p: Path(p).write_text(text))
            key = np.asarray(jax.random.PRNGKey(cfg["seed"]))  # the PRNG state of the run
            checkpoint = Checkpointing(ck_dir, every, key=key)
        with jax.enable_x64(bool(cfg["x64"])), jax.default_device(device):
            _run_and_save(command, cfg, writer.path, device, quiet, checkpoint)
        writer.commit()
        shutil.rmtree(ck_dir, ignore_errors=True)
    return load_run(writer.out)


def resume_info(out) -> dict:
    """What `resume_run(out)` would continue: the command, config, `checkpoint_every`,
    `overwrite`, and `step` of `steps` done; `complete` if `out` already holds the
    finished run. A folder with nothing to resume raises a `ValueError` (one line)."""
    out = Path(out)
    ck_dir = checkpoint_dir(out)
    record_path = ck_dir / RESUME_RECORD
    if not record_path.is_file():
        if (out / "config.json").is_file():
            raise RunFolderError(f"{out}: a complete run; nothing to resume")
        raise RunFolderError(
            f"{out}: nothing to resume (no checkpoint {ck_dir}; only runs started with "
            "--checkpoint-every can be resumed)"
        )
    info = _read_json(record_path, "resume record")
    if not isinstance(info, dict) or not {"command", "config", "checkpoint_every"} <= set(info):
        raise RunFolderError(f"{record_path}: not a meanfield resume record")
    from ._checkpoint import CHECKPOINT_FILE, load_checkpoint

    info["step"], info["steps"] = 0, info["config"].get("steps")
    if (ck_dir / CHECKPOINT_FILE).is_file():
        try:
            ck = load_checkpoint(ck_dir)
        except ValueError as err:
            raise RunFolderError(str(err)) from None
        info["step"], info["steps"] = ck.step, ck.steps
    info["complete"] = False
    if info["step"] == info["steps"] and (out / "config.json").is_file():
        # killed after the run was moved into place, before the checkpoint was deleted
        with contextlib.suppress(ValueError):
            info["complete"] = load_run(out).config == info["config"]
    info["checkpoint_dir"] = str(ck_dir)
    return info


def resume_run(out, *, quiet: bool = False) -> Run:
    """Continue a run into `out` that was started with `checkpoint_every` and killed:
    from its last checkpoint to the same final state, bit for bit, as the uninterrupted
    run, saved into `out` atomically as usual.

    **Arguments:**

    - `out`: the run's output folder (its checkpoint is `checkpoint_dir(out)`).
    - `quiet`: no progress line.

    **Returns:**

    The saved `Run`. `resume_info(out)` tells how far the killed run got; a folder with
    nothing to resume raises a `ValueError` naming it.
    """
    out = Path(out)
    info = resume_info(out)
    if info["complete"]:
        shutil.rmtree(info["checkpoint_dir"], ignore_errors=True)
        return load_run(out)
    source = str(checkpoint_dir(out) / RESUME_RECORD)
    cfg = resolve_config(info["command"], info["config"], source=source)
    return execute(
        info["command"],
        cfg,
        out,
        quiet=quiet,
        checked=True,
        overwrite=bool(info.get("overwrite", False)),
        checkpoint_every=info["checkpoint_every"],
        resume=True,
    )


def _run_and_save(command: str, cfg: dict, out: Path, device, quiet: bool, checkpoint=None) -> None:
    """Run the workflow into the (private, staging) folder `out` and write its files."""
    start = time.perf_counter()
    if command == "demo":
        arrays, results = run_demo(out, cfg, execute, quiet=quiet)
    elif checkpoint is not None:
        arrays, results = WORKFLOWS[command](cfg, out, quiet, checkpoint=checkpoint)
    else:
        arrays, results = WORKFLOWS[command](cfg, out, quiet)
    env = environment(device, cfg)
    env["seconds"] = time.perf_counter() - start
    write_run_files(out, command, cfg, arrays, results, env)
