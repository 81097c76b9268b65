"""Second-order certificates of an atomic measure: `stability_report` (residual, splitting
and transport spectra, verdicts) and the verdict functions `is_stable`, `is_strictly_stable`.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._validation import check_positive_scalar
from ._hessians import _complement, _splitting_hessians, _transport_hessian, rotation_modes
from ._units import _gradient_scale, _inputs, _log_model_factor, _positive, _residual


@dataclasses.dataclass(frozen=True)
class StabilityReport:
    """Everything a stability verdict rests on (eigenvalues in the model's units).

    residual: max |grad_S phi_mu(x_i)| over atoms with m_i > 0; grad_tol: the threshold
    it was compared with. splitting_eigenvalues: (k, d-1) eigenvalues of the splitting
    Hessians. transport_eigenvalues: eigenvalues of H_w, restricted to the complement of
    the rotation orbit when modulo_rotations (symmetry_dim directions removed).
    tol: eigenvalue threshold (stable: all <= tol; strictly: all < -tol), = rtol * max |eig|.
    """

    residual: float
    grad_tol: float
    stationary: bool
    splitting_eigenvalues: np.ndarray
    transport_eigenvalues: np.ndarray
    modulo_rotations: bool
    symmetry_dim: int
    tol: float
    rtol: float
    splitting_stable: bool
    transport_stable: bool
    stable: bool
    strictly_stable: bool
    masses: np.ndarray
    locations: np.ndarray


@eqx.filter_jit
def _report_arrays(model, X, m):
    split = jnp.linalg.eigvalsh(_splitting_hessians(model, X, m))
    return (
        _residual(model, X, m),
        _gradient_scale(model, X, m),
        split,
        _transport_hessian(model, X, m),
    )


def _default_rtol(dtype) -> float:
    return 10 * math.sqrt(float(jnp.finfo(dtype).eps))


def stability_report(
    model,
    X: Float[Array, "k d"],
    m=None,
    *,
    rtol: float | None = None,
    grad_tol: float | None = None,
    modulo_rotations: bool | None = None,
) -> StabilityReport:
    """Second-order certificate of the atomic measure (X, m) (eager).

    Zero-mass atoms are ignored. Stationary: residual <= grad_tol (model units; default
    sqrt(eps) times max_i |grad phi_mu(x_i)|, the ambient gradient size). Stable:
    stationary, every splitting Hessian <= tol and H_w <= tol (on the complement of the
    rotation orbit if modulo_rotations, default: when there is no perceptron). Strictly
    stable: stationary and all those eigenvalues < -tol. tol = rtol * max |eigenvalue|,
    rtol default 10 sqrt(eps) (1.5e-7 in float64, 3.5e-3 in float32).
    A flow that stopped at max speed 1e-4 is usually not stationary at this default; run
    `newton_refine` first or pass grad_tol.

    **Arguments:**

    - `model`: a `MeanField` with an energy; `X`: (k, d) atoms; `m`: (k,) masses.
    - `rtol`, `grad_tol`: the tolerances above (None: the defaults).
    - `modulo_rotations`: judge H_w off the rotation orbit (default: no perceptron).

    **Returns:** a `StabilityReport` (residual, the splitting and transport spectra, the
    verdicts `stationary`, `stable`, `strictly_stable`).
    """
    X, m = _inputs(model, X, m)
    X, m = _positive(X, m)
    dtype = X.dtype
    rtol = _default_rtol(dtype) if rtol is None else float(check_positive_scalar(rtol, "rtol"))
    if modulo_rotations is None:
        modulo_rotations = model.perceptron is None
    factor = float(jnp.exp(_log_model_factor(model, dtype)))
    res, gscale, split, Hw = _report_arrays(model, X, m)
    res, gscale, split = float(res), float(gscale), np.asarray(split)
    if grad_tol is None:
        gtol = math.sqrt(float(jnp.finfo(dtype).eps)) * gscale
    else:
        gtol = float(check_positive_scalar(grad_tol, "grad_tol")) / factor
    sym = 0
    if modulo_rotations:
        basis = rotation_modes(X, m)
        sym = basis.shape[1]
        N = np.asarray(_complement(basis, Hw.shape[0], dtype))
        Hw = N.T @ np.asarray(Hw) @ N
    trans = np.linalg.eigvalsh(np.asarray(Hw)) if Hw.shape[0] else np.zeros(0)
    allv = np.concatenate([split.ravel(), trans])
    tol = rtol * max(float(np.max(np.abs(allv))) if allv.size else 0.0, float(np.finfo(dtype).tiny))
    stationary = res <= gtol
    split_ok = bool(np.all(split <= tol))
    trans_ok = bool(np.all(trans <= tol))
    strict = stationary and bool(np.all(split < -tol)) and bool(np.all(trans < -tol))
    return StabilityReport(
        residual=res * factor,
        grad_tol=gtol * factor,
        stationary=stationary,
        splitting_eigenvalues=split * factor,
        transport_eigenvalues=trans * factor,
        modulo_rotations=bool(modulo_rotations),
        symmetry_dim=int(sym),
        tol=tol * factor,
        rtol=rtol,
        splitting_stable=split_ok,
        transport_stable=trans_ok,
        stable=stationary and split_ok and trans_ok,
        strictly_stable=strict,
        masses=np.asarray(m),
        locations=np.asarray(X),
    )


def is_stable(model, X, m=None, **kwargs) -> bool:
    """True when (X, m) is a stationary, splitting- and transport-stable critical point.

    See `stability_report` for the tolerances (keyword arguments are passed through).

    **Arguments:** `model`, `X` (k, d), `m` (k,); keywords of `stability_report`.

    **Returns:** a Python bool.
    """
    return stability_report(model, X, m, **kwargs).stable


def is_strictly_stable(model, X, m=None, **kwargs) -> bool:
    """True when both Hessians are negative definite (modulo rotations without perceptron).

    **Arguments:** `model`, `X` (k, d), `m` (k,); keywords of `stability_report`.

    **Returns:** a Python bool.
    """
    return stability_report(model, X, m, **kwargs).strictly_stable
