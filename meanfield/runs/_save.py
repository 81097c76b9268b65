"""`save_run`: Python results (arrays, a Trajectory, numbers, figures) as a run folder,
written atomically like a command's run.
"""

from __future__ import annotations

import json

import jax
import numpy as np

from .. import plot
from .._json import jsonable
from ..integrate import Trajectory
from ._config import SCHEMAS
from ._env import environment
from ._folder import (
    RunWriter,
)
from ._format import write_run_files
from ._run import Run, load_run


def _python_environment(arrays: dict, config: dict) -> dict:

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
    if command in SCHEMAS or command in ("rerun", "resume"):
        raise ValueError(f"`command`={command!r} is a meanfield command; use another label")
    json.dumps(jsonable(results)), json.dumps(jsonable(config))  # fail before writing
    figures = dict(figures or {})
    with RunWriter(folder, overwrite=overwrite, flag="overwrite=True", what="folder") as writer:
        if figures:
            names = []
            for name, fig in figures.items():
                plot.save(fig, writer.path / name)
                names.append(name)
            results["files"] = list(results.get("files", [])) + names
        env = _python_environment(arrays, config)
        write_run_files(writer.path, command, config, arrays, results, env, rerunnable=False)
        writer.commit()
    return load_run(writer.out)
