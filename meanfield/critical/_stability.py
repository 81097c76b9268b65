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

    Returned by `stability_report`; k below is the number of atoms with m_i > 0 (zero-mass
    atoms are dropped before anything is computed).

    **Fields:**

    - `residual`: max |grad_S phi_mu(x_i)| over atoms with m_i > 0 (model units).
    - `grad_tol`: the threshold `residual` was compared with (model units).
    - `stationary`: `residual <= grad_tol`.
    - `splitting_eigenvalues`: (k, d-1) eigenvalues of the splitting Hessians
        Hess_S phi_mu(x_i), ascending in each row.
    - `transport_eigenvalues`: eigenvalues of H_w, ascending, restricted to the complement
        of the rotation orbit when `modulo_rotations` (k(d-1) - symmetry_dim of them).
    - `modulo_rotations`: whether the rotation orbit was removed.
    - `symmetry_dim`: the number of rotation directions removed (0 if not modulo_rotations).
    - `tol`: eigenvalue threshold (stable: all <= tol; strictly: all < -tol),
        = rtol * max |eig| over both spectra.
    - `rtol`: the relative tolerance used.
    - `splitting_stable`: every splitting eigenvalue <= tol.
    - `transport_stable`: every transport eigenvalue <= tol.
    - `stable`: stationary and splitting- and transport-stable.
    - `strictly_stable`: stationary and every eigenvalue of both spectra < -tol.
    - `masses`: (k,) the masses of the atoms kept (NumPy).
    - `locations`: (k, d) the atoms kept (NumPy).
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

    - `model`: a `MeanField` with attention "usa" or "sa" (the energy must be defined).
    - `X`: (k, d) atoms on S^{d-1} (concrete: the report is computed eagerly).
    - `m`: (k,) masses, non-negative and summing to 1; None (default) for uniform 1/k.
    - `rtol`: relative eigenvalue tolerance, > 0; None (default) for 10 sqrt(eps) of the
        dtype of `X`.
    - `grad_tol`: stationarity threshold on the residual, > 0, in model units; None
        (default) for sqrt(eps) max_i |grad phi_mu(x_i)| (ambient gradient, m_i > 0).
    - `modulo_rotations`: judge H_w on the complement of the rotation orbit
        (`rotation_modes`); None (default) for True exactly when the model has no
        perceptron.

    **Returns:** a `StabilityReport` (eigenvalues, residual and tolerances in model units).

    **Raises:** `ValueError` if the energy is not defined, if `X`, `m` fail the model's
    input checks, if no atom has positive mass, or if `rtol` / `grad_tol` is not a finite
    scalar > 0.
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

    **Arguments:**

    - `model`, `X`, `m`: as in `stability_report` ((k, d) atoms, (k,) masses or None).
    - `**kwargs`: `rtol`, `grad_tol`, `modulo_rotations` of `stability_report`.

    **Returns:** a Python bool, `stability_report(model, X, m, **kwargs).stable`.

    **Raises:** whatever `stability_report` raises (`ValueError` on bad input).
    """
    return stability_report(model, X, m, **kwargs).stable


def is_strictly_stable(model, X, m=None, **kwargs) -> bool:
    """True when both Hessians are negative definite (modulo rotations without perceptron).

    The point must also be stationary; "negative definite" means every eigenvalue < -tol
    (see `stability_report` for the tolerances).

    **Arguments:**

    - `model`, `X`, `m`: as in `stability_report` ((k, d) atoms, (k,) masses or None).
    - `**kwargs`: `rtol`, `grad_tol`, `modulo_rotations` of `stability_report`.

    **Returns:** a Python bool, `stability_report(model, X, m, **kwargs).strictly_stable`.

    **Raises:** whatever `stability_report` raises (`ValueError` on bad input).
    """
    return stability_report(model, X, m, **kwargs).strictly_stable
