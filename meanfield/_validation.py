"""Eager input checks, run in Python on concrete arrays before any tracing.

Every check names the offending argument. Checks are skipped for traced values (inside a
user's `jit` or `vmap`); there the library relies on `equinox.error_if` where it matters.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array


def is_concrete(x) -> bool:
    """True when `x` holds actual values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def sphere_tolerance(dtype) -> float:
    """Tolerance on | |x| - 1 | accepted for points on the sphere: sqrt(machine epsilon).

    That is about 3.5e-4 in float32 and 1.5e-8 in float64.
    """
    return math.sqrt(float(jnp.finfo(dtype).eps))


def float_dtype(x) -> jnp.dtype:
    """The floating dtype `x` will be computed in (float32 unless x64 is on and x is f64)."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return jnp.dtype(dtype)


def as_key(key, name: str = "key"):
    """A PRNG key from a key or an integer seed (`jax.random.PRNGKey(seed)`).

    **Arguments:** `key`: a JAX PRNG key (raw uint32 (2,) or typed) or a Python / NumPy
    integer; `name` for the error. **Returns:** the key. Raises ValueError for anything
    else (a float, a batch of keys, a string).
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jr.PRNGKey(int(key))
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape == ():
            return key
    elif hasattr(key, "shape") and tuple(key.shape) == (2,) and key.dtype == jnp.uint32:
        return key
    raise ValueError(
        f"`{name}` must be a PRNG key (jax.random.PRNGKey(seed) or jax.random.key(seed)) or "
        f"an integer seed; got {type(key).__name__} {getattr(key, 'shape', '')}".rstrip()
        + "."
    )


def check_points(X, name: str = "X", *, on_sphere: bool = True, d: int | None = None):
    """Check that `X` is a finite (n, d) array with unit rows; return it as a JAX array."""
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d); got shape {tuple(X.shape)}.")
    n, dim = X.shape
    if n < 1:
        raise ValueError(f"`{name}` must hold at least one point; got shape {tuple(X.shape)}.")
    if dim < 2:
        raise ValueError(f"`{name}` must have dimension d >= 2 (points on S^(d-1)); got d={dim}.")
    if d is not None and dim != d:
        raise ValueError(f"`{name}` has dimension d={dim}, expected d={d}.")
    X = jnp.asarray(X, dtype=float_dtype(X))
    if not is_concrete(X):
        # Inside jit/vmap/grad only the NaN check survives (as a runtime error); the
        # sphere check is skipped so that ambient perturbations (finite differences,
        # RK4 stages) stay possible.
        return eqx.error_if(X, ~jnp.all(jnp.isfinite(X)), f"`{name}` contains NaN or inf.")
    # Checks run in NumPy on the host: no XLA compilation per new shape.
    Xh = np.asarray(X)
    if not np.all(np.isfinite(Xh)):
        bad = int(np.sum(~np.all(np.isfinite(Xh), axis=-1)))
        raise ValueError(f"`{name}` contains NaN or inf in {bad} row(s).")
    if on_sphere:
        err = float(np.max(np.abs(np.linalg.norm(Xh, axis=-1) - 1)))
        tol = sphere_tolerance(X.dtype)
        if err > tol:
            columns = float(np.max(np.abs(np.linalg.norm(Xh, axis=0) - 1)))
            if columns <= tol:
                raise ValueError(
                    f"`{name}` looks transposed: its {dim} columns are unit vectors, its {n} "
                    f"rows are not. Points are rows, shape (n, d): pass `{name}.T`."
                )
            raise ValueError(
                f"`{name}` rows must lie on the unit sphere: max | |x_i| - 1 | = {err:.3g} "
                f"exceeds the tolerance {tol:.2g} for {X.dtype}. Normalise with "
                "`meanfield.retract(X)` (X / |X| row-wise)."
            )
    return X


def check_masses(m, n: int, dtype, name: str = "m"):
    """Check masses of shape (n,), non-negative, summing to 1; `None` means uniform 1/n."""
    if m is None:
        return jnp.asarray(np.full((n,), 1.0 / n), dtype=dtype)
    if not hasattr(m, "shape"):
        m = np.asarray(m)
    if tuple(m.shape) != (n,):
        raise ValueError(
            f"`{name}` must have shape ({n},) to match the points; got {tuple(m.shape)}."
        )
    m = jnp.asarray(m, dtype=dtype)
    if not is_concrete(m):
        return m
    mh = np.asarray(m)
    if not np.all(np.isfinite(mh)):
        raise ValueError(f"`{name}` contains NaN or inf.")
    if np.any(mh < 0):
        raise ValueError(f"`{name}` must be non-negative; min is {float(np.min(mh)):.3g}.")
    total = float(np.sum(mh, dtype=np.float64))
    tol = 1e3 * float(jnp.finfo(dtype).eps) * max(1.0, math.sqrt(n))
    if abs(total - 1.0) > tol:
        raise ValueError(
            f"`{name}` must sum to 1 (a probability measure); it sums to {total:.6g}. "
            "Pass m / m.sum() if you meant relative weights."
        )
    return m


def check_positive_scalar(x, name: str, *, allow_zero: bool = False):
    """Check a scalar is finite and > 0 (or >= 0); traced values pass through."""
    if not is_concrete(x):
        return x
    arr = np.asarray(x)
    if arr.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar; got shape {arr.shape}.")
    val = float(arr)
    if not math.isfinite(val):
        raise ValueError(f"`{name}` must be finite; got {val}.")
    if val < 0 or (val == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}; got {val}.")
    return x


def check_sign(sign):
    """The interaction sign s must be +1 (attractive) or -1 (repulsive)."""
    if is_concrete(sign):
        arr = np.asarray(sign)
        if arr.ndim != 0 or float(arr) not in (1.0, -1.0):
            raise ValueError(f"`sign` must be +1 (attractive) or -1 (repulsive); got {sign!r}.")
    return sign


def check_int(x, name: str, *, minimum: int = 1) -> int:
    """A Python integer >= minimum (shape-determining arguments such as `steps`)."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer; got {x!r}.")
    if x < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {x}.")
    return int(x)


# ------------------------------------------------------------ score rows (temperature)
def check_scores(scores, name: str = "scores", min_n: int = 1, where=None) -> Array:
    """Scores as a float array of shape (..., n), n >= min_n, masked keys set to -inf.

    Masking (docs/design.md, section 3, "n is the number of keys a query sees"): a key is *live*
    when `where` is True there (default everywhere) and its score is not -inf; every other
    key is set to -inf, which the computational cores read as "absent". NaN and +inf at live
    keys raise (eagerly for concrete input, `equinox.error_if` under jit); values at keys
    masked by `where` are not inspected. Rows with too few live keys are handled by
    `_live_rows` (NaN), not here.
    """
    if not hasattr(scores, "shape"):
        scores = np.asarray(scores)
    if scores.ndim < 1:
        raise ValueError(f"`{name}` must have shape (..., n) with n >= {min_n}; got a scalar.")
    n = scores.shape[-1]
    if n == 0:
        raise ValueError(f"`{name}` is empty (n = 0 keys); a softmax row needs n >= 1.")
    if n < min_n:
        raise ValueError(
            f"`{name}` must have at least {min_n} entries along the last axis; got n = {n}."
        )
    scores = jnp.asarray(scores, dtype=float_dtype(scores))
    if scores.size == 0:
        raise ValueError(f"`{name}` has an empty batch shape {tuple(scores.shape)}.")
    if where is not None:
        if not hasattr(where, "shape"):
            where = np.asarray(where)
        if where.dtype != bool:
            raise ValueError(f"`where` must be a boolean array; got dtype {where.dtype}.")
        try:
            shape = jnp.broadcast_shapes(where.shape, scores.shape)
        except ValueError:
            shape = None
        if shape != scores.shape:
            raise ValueError(
                f"`where` of shape {tuple(where.shape)} must broadcast to the shape "
                f"{tuple(scores.shape)} of `{name}`."
            )
        where = jnp.broadcast_to(jnp.asarray(where), scores.shape)
        invalid = where & (jnp.isnan(scores) | (scores == jnp.inf))
    else:
        invalid = jnp.isnan(scores) | (scores == jnp.inf)
    bad = jnp.any(invalid)
    if is_concrete(scores) and (where is None or is_concrete(where)):
        if bool(bad):
            count = int(jnp.sum(invalid))
            raise ValueError(
                f"`{name}` contains {count} NaN or +inf value(s) at live keys; scores must be "
                "finite (use -inf or `where=False` to mask a key)."
            )
    else:
        scores = eqx.error_if(
            scores, bad, f"`{name}` contains NaN or +inf; scores must be finite or -inf."
        )
    if where is not None:
        scores = jnp.where(where, scores, -jnp.inf)
    return scores


def check_bounded(x, dtype, name: str, *, strict: bool) -> Array:
    """A finite float array that is > 0 (strict) or >= 0: beta, t, temperature, ...

    Eager ValueError on concrete values; equinox.error_if under jit.
    """
    x = jnp.asarray(x, dtype=dtype)
    bound = "> 0" if strict else ">= 0"
    bad = ~jnp.all(jnp.isfinite(x) & ((x > 0) if strict else (x >= 0)))
    if is_concrete(x):
        if bool(bad):
            raise ValueError(f"`{name}` must be finite and {bound}; got {np.asarray(x)!r}.")
        return x
    return eqx.error_if(x, bad, f"`{name}` must be finite and {bound}.")


def check_nonneg(x, dtype, name: str) -> Array:
    return check_bounded(x, dtype, name, strict=False)


def check_positive(x, dtype, name: str) -> Array:
    return check_bounded(x, dtype, name, strict=True)


def check_open_unit(x, dtype, name: str) -> Array:
    x = jnp.asarray(x, dtype=dtype)
    bad = ~jnp.all((x > 0) & (x < 1))
    if is_concrete(x):
        if bool(bad):
            raise ValueError(
                f"`{name}` must lie in the open interval (0, 1); got {np.asarray(x)!r}."
            )
        return x
    return eqx.error_if(x, bad, f"`{name}` must lie in the open interval (0, 1).")


def check_batch_broadcast(x, batch_shape, name: str) -> None:
    try:
        shape = jnp.broadcast_shapes(jnp.shape(x), tuple(batch_shape))
    except ValueError:
        shape = None
    if shape != tuple(batch_shape):
        raise ValueError(
            f"`{name}` of shape {jnp.shape(x)} must broadcast to the batch shape "
            f"{tuple(batch_shape)} of the scores (one value per row, or a scalar)."
        )


def check_beta_grid(betas, dtype, name: str = "betas") -> Array:
    if not hasattr(betas, "shape"):
        betas = np.asarray(betas)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D grid; got shape {tuple(betas.shape)}.")
    return check_nonneg(betas, dtype, name)


def check_ties(ties: str) -> None:
    if ties not in ("inf", "ignore"):
        raise ValueError(f"`ties` must be 'inf' or 'ignore'; got {ties!r}.")


def check_particles(X, name: str = "X") -> Array:
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n, d); got shape {tuple(X.shape)}.")
    if X.shape[0] < 3:
        raise ValueError(
            f"`{name}` needs at least 3 particles (2 keys per query); got {X.shape[0]}."
        )
    X = jnp.asarray(X, dtype=float_dtype(X))
    if is_concrete(X):
        if not bool(jnp.all(jnp.isfinite(X))):
            raise ValueError(f"`{name}` contains NaN or inf.")
        err = float(jnp.max(jnp.abs(jnp.linalg.norm(X, axis=-1) - 1)))
        tol = math.sqrt(float(jnp.finfo(X.dtype).eps))
        if err > tol:
            raise ValueError(
                f"`{name}` rows must lie on the unit sphere: "
                f"max | |x_i| - 1 | = {err:.3g} > {tol:.2g}."
            )
    return X
