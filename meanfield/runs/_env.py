"""The device a run uses and the environment it records (versions, backend, dtype, seed)."""

from __future__ import annotations

import datetime
import os
import platform
import sys

import jax
import jaxlib
import numpy as np

from .. import __version__
from ._config import ConfigError


def select_device(name: str):
    """The jax Device for "auto" (JAX's default), "cpu" or "gpu"; ConfigError if absent."""

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
