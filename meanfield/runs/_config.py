"""Run configurations: one schema per command (`SCHEMAS`: every option with its kind,
default, range and help), coercion of values from the command line, a config file or
Python, and the checks of combinations, so bad input is refused with a one-line
`ConfigError` naming the option before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from ..kernels import REGISTRY as _KERNELS
from ..kernels import KernelError
from ..temperature import FAMILIES, family_params
from ..transformer._load import INSTALL_LINE, package_path
from ..transformer.checkpoint import ARCHITECTURES
from ._format import FORMAT
from ._run import load_run

KERNEL_NAMES = tuple(_KERNELS)


class ConfigError(ValueError):
    """A bad option value, key or combination; raised before any computation."""


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
        "perceptron": Option(
            "str",
            "authors",
            "localisation: the perceptron draw (authors: the paper's code, default_rng(777); "
            "jax: Perceptron.random(PRNGKey(111 + d)))",
            choices=("authors", "jax"),
        ),
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

        if model_type not in ARCHITECTURES:
            raise ConfigError(
                f"model={cfg['model']}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(ARCHITECTURES)})"
            )
        cfg["model"] = str(folder)
    else:
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
