"""Checkpointed integration: `integrate` in chunks, the state saved atomically between them.

`integrate_checkpointed` runs `integrate` for `checkpoint_every` steps at a time and after
each chunk writes ``checkpoint_dir/checkpoint.npz`` (via a temporary file and
`os.replace`, so a kill leaves the previous checkpoint or the new one). The file holds

    X      (n, d)     the state after `step` steps
    xs     (S, n, d)  the saved states so far (S = step // save_every + 1; xs[0] = X0)
    key    (...)      the PRNG key data given as `key` (absent if none)
    meta   JSON text: format, version, step, steps, save_every, checkpoint_every, dt,
           method, dtype, shape and the fingerprint of (model, X0, m, dt, method, steps,
           save_every, key)

Calling `integrate_checkpointed` again with the same arguments resumes from the file (a
different model, X0, dt, ... is refused, naming the folder) and returns the same
`Trajectory`, bit for bit, as an uninterrupted `integrate`: chunks of whole saves give
identical bits (tested). `load_checkpoint` reads how far a run got.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..integrate import Trajectory, integrate
from ._folder import fault, write_atomic

CHECKPOINT_FILE = "checkpoint.npz"
FORMAT = "meanfield-checkpoint"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A saved integration state: `step` of `steps` done, the state `X` (n, d), the saved
    states `xs` so far, the PRNG `key` data (or None) and the `meta` record."""

    path: Path
    step: int
    steps: int
    X: np.ndarray
    xs: np.ndarray
    key: np.ndarray | None
    meta: dict

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    @property
    def fraction(self) -> float:
        return self.step / self.steps


def load_checkpoint(checkpoint_dir) -> Checkpoint:
    """Read ``checkpoint_dir/checkpoint.npz``.

    **Arguments:**

    - `checkpoint_dir`: the folder given to `integrate_checkpointed`.

    **Returns:**

    A `Checkpoint` (`.step`, `.steps`, `.X`, `.xs`, `.key`, `.meta`). A missing or
    corrupt file raises a `ValueError` naming it.
    """
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise ValueError(f"{path}: no checkpoint")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            X, xs = data["X"], data["xs"]
            key = data["key"] if "key" in data.files else None
    except Exception as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{path}: corrupt checkpoint ({type(err).__name__}: {first})") from None
    if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
        raise ValueError(f"{path}: not a meanfield checkpoint (version {VERSION} or older)")
    return Checkpoint(path, int(meta["step"]), int(meta["steps"]), X, xs, key, meta)


def _key_data(key):
    if key is None:
        return None

    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def _fingerprint(model, X0, m, dt, method, steps, save_every, key) -> str:
    """A hash of everything that determines the integration (function addresses removed
    from the model's static structure, so it is stable across processes)."""

    h = hashlib.sha256()

    def add(x):
        if x is None:
            h.update(b"None")
        elif hasattr(x, "shape") and hasattr(x, "dtype"):
            a = np.asarray(x)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif isinstance(x, (bool, int, float, str)):
            h.update(repr(x).encode())
        else:
            h.update(getattr(x, "__qualname__", type(x).__name__).encode())

    leaves, treedef = jax.tree_util.tree_flatten(model)
    h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef)).encode())
    for leaf in leaves:
        add(leaf)
    for x in (X0, m, float(dt), method, int(steps), int(save_every), _key_data(key)):
        add(x)
    return h.hexdigest()


def _write(directory: Path, meta: dict, X, xs, key) -> None:
    arrays = {"X": np.asarray(X), "xs": np.asarray(xs), "meta": np.asarray(json.dumps(meta))}
    if key is not None:
        arrays["key"] = key

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / CHECKPOINT_FILE, write)


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)


def integrate_checkpointed(
    model,
    X0,
    *,
    dt,
    steps: int,
    checkpoint_dir,
    checkpoint_every: int,
    save_every: int | None = None,
    m=None,
    method: str = "euler",
    key=None,
    progress=None,
):
    """`integrate` that saves its state every `checkpoint_every` steps and resumes from
    the last checkpoint when called again, with the same result bit for bit.

    **Arguments:**

    - `model`, `X0`, `dt`, `steps`, `save_every`, `m`, `method`: as for `integrate`.
    - `checkpoint_dir`: folder of the checkpoint (created; ``checkpoint.npz`` inside). If
      it holds a checkpoint of the same integration, the run continues from it; one of a
      different integration (model, X0, m, dt, method, steps, save_every or key) is
      refused with a `ValueError`.
    - `checkpoint_every`: steps between checkpoints, a multiple of `save_every`.
    - `key`: a PRNG key to keep with the state (for callers that draw from it later); it
      is part of the fingerprint, and returned by `load_checkpoint`.
    - `progress`: an object with `total` and `update()` (e.g. `meanfield.runs._runs.Progress`).

    **Returns:**

    The `Trajectory` (steps // save_every + 1 saved states), identical to
    `integrate(model, X0, dt=dt, steps=steps, save_every=save_every, ...)`. The final
    checkpoint is kept (a further call returns at once); delete `checkpoint_dir` when done.
    """

    steps = _check_int(steps, "steps")
    save_every = steps if save_every is None else _check_int(save_every, "save_every")
    every = _check_int(checkpoint_every, "checkpoint_every")
    if steps % save_every:
        raise ValueError(f"`steps`={steps} must be a multiple of `save_every`={save_every}")
    if every % save_every:
        raise ValueError(
            f"`checkpoint_every`={every} must be a multiple of `save_every`={save_every}"
        )
    if not (isinstance(dt, (int, float)) or np.ndim(dt) == 0) or not math.isfinite(float(dt)):
        raise ValueError(f"`dt` must be a finite scalar; got {dt!r}")
    X0 = jnp.asarray(X0)
    directory = Path(checkpoint_dir)
    key_data = _key_data(key)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "steps": steps,
        "save_every": save_every,
        "checkpoint_every": every,
        "dt": float(dt),
        "method": method,
        "dtype": str(X0.dtype),
        "shape": list(X0.shape),
        "fingerprint": _fingerprint(model, X0, m, dt, method, steps, save_every, key),
    }
    step, X, parts = 0, X0, [X0[None]]
    for partial in directory.glob(f".{CHECKPOINT_FILE}.tmp-*"):  # a write killed midway
        partial.unlink(missing_ok=True)
    if (directory / CHECKPOINT_FILE).exists():
        ck = load_checkpoint(directory)
        if ck.meta.get("fingerprint") != meta["fingerprint"]:
            differs = [
                k
                for k in ("steps", "save_every", "dt", "method", "dtype", "shape")
                if ck.meta.get(k) != meta[k]
            ]
            what = ", ".join(differs) if differs else "model, X0, m or key"
            raise ValueError(
                f"checkpoint_dir {directory} holds a checkpoint of another integration "
                f"({what} differ); delete it or use another folder"
            )
        step, X, parts = ck.step, jnp.asarray(ck.X), [jnp.asarray(ck.xs)]
    if progress is not None:
        progress.total = max(-(-(steps - step) // every), 1)
    while step < steps:
        k = min(every, steps - step)
        traj = integrate(model, X, dt=dt, steps=k, save_every=save_every, method=method, m=m)
        parts.append(traj.xs[1:])
        X, step = traj.xs[-1], step + k
        xs = jnp.concatenate(parts, axis=0)
        parts = [xs]
        _write(directory, {**meta, "step": step}, X, xs, key_data)
        fault("checkpoint")
        if progress is not None:
            progress.update()
    xs = jnp.concatenate(parts, axis=0)
    ts = jnp.asarray(dt, X0.dtype) * save_every * jnp.arange(xs.shape[0], dtype=X0.dtype)
    return Trajectory(ts, xs)
