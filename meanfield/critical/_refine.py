"""Finding critical points: Newton refinement of the atoms (`newton_refine`) and searches
from a starting measure (`find_critical_point`: gradient ascent, Adam, L-BFGS or a
saddle search, optionally over the masses), with atoms below `mass_floor` dropped and the
masses renormalised.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jaxtyping import Array, Float

from .._validation import check_int, check_positive_scalar
from ..sphere import exp_map, retract
from ._hessians import _complement, _transport_hessian, rotation_modes, tangent_basis
from ._units import (
    _energy,
    _euclidean_grads,
    _gradient_scale,
    _inputs,
    _log_model_factor,
    _phi,
    _positive,
    _residual,
    _riemannian_grads,
)


class CriticalPoint(eqx.Module):
    """A critical point candidate: atoms `X` (k, d), masses `m` (k,), `residual` (model
    units), `iterations` of the last stage, and `converged` (residual <= the target).

    Returned by `newton_refine`, `find_critical_point` and `global_maximiser`.

    **Fields:**

    - `X`: (k, d) atoms on S^{d-1}.
    - `m`: (k,) masses (summing to 1).
    - `residual`: scalar array, max_{i: m_i > 0} |grad_S phi_mu(x_i)| in the units of
        `model.velocity` (as `stationarity_residual`).
    - `iterations`: scalar integer array, the number of iterations of the last stage
        (Newton steps, or optimiser steps when nothing was refined).
    - `converged`: scalar bool array, residual <= the stage's target (see `newton_refine`);
        always False from `find_critical_point(..., refine=False)`, which has no target.
    """

    X: Float[Array, "k d"]
    m: Float[Array, " k"]
    residual: Array
    iterations: Array
    converged: Array


def _newton_step(model, X, m, max_step, modes):
    """One Riemannian Newton step for grad_S phi~(x_i) = 0, i = 1..k (all m_i > 0).

    Solve H_w eta = -sqrt(m) G (G_i = E_i^T grad phi~(x_i)) by pseudo-inverse on the
    complement of `modes` (rotations, or nothing), xi_i = eta_i / sqrt(m_i), and move
    x_i <- exp_{x_i}(E_i xi_i); the step is scaled so that max_i |xi_i| <= max_step.
    """
    k, d = X.shape
    if modes.shape[1] == 0:  # every direction is a rotation (one atom, no perceptron)
        return X
    E = jax.vmap(tangent_basis)(X)
    G = jnp.einsum("iap,ia->ip", E, _euclidean_grads(model, X, m))
    sq = jnp.sqrt(m)
    rhs = -(sq[:, None] * G).reshape(-1)
    Hw = _transport_hessian(model, X, m)
    N = modes
    Hr = N.T @ Hw @ N
    lam, V = jnp.linalg.eigh(Hr)
    cut = jnp.sqrt(jnp.finfo(X.dtype).eps) * jnp.max(jnp.abs(lam))
    inv = jnp.where(jnp.abs(lam) > cut, 1.0 / jnp.where(lam == 0, 1.0, lam), 0.0)
    eta = N @ (V @ (inv * (V.T @ (N.T @ rhs))))
    xi = eta.reshape(k, d - 1) / sq[:, None]
    size = jnp.max(jnp.linalg.norm(xi, axis=1))
    xi = xi * jnp.minimum(1.0, max_step / jnp.maximum(size, jnp.finfo(X.dtype).tiny))
    return exp_map(X, jnp.einsum("iap,ip->ia", E, xi))


@eqx.filter_jit
def _newton_loop(model, X, m, modes, max_iter, target, max_step):
    def cond(state):
        _, _, res, it, best_res = state
        return (it < max_iter) & (best_res > target)

    def body(state):
        X, best, _, it, best_res = state
        Xn = _newton_step(model, X, m, max_step, modes)
        res = _residual(model, Xn, m)
        better = res < best_res
        best = jnp.where(better, Xn, best)
        return Xn, best, res, it + 1, jnp.where(better, res, best_res)

    r0 = _residual(model, X, m)
    _, best, _, it, best_res = lax.while_loop(cond, body, (X, X, r0, jnp.asarray(0), r0))
    return best, best_res, it


def newton_refine(
    model,
    X: Float[Array, "k d"],
    m=None,
    *,
    tol: float | None = None,
    max_iter: int = 30,
    max_step: float = 0.5,
    modulo_rotations: bool | None = None,
) -> CriticalPoint:
    """Riemannian Newton iteration on the atom locations (masses fixed) to a critical point.

    Solves grad_S phi_mu(x_i) = 0 for all atoms with m_i > 0 (zero-mass atoms are left in
    place); converges quadratically to the nearest non-degenerate critical point of any
    index (maxima and saddles alike). The Hessian is H_w (see module docstring), inverted
    on the complement of the rotation modes when modulo_rotations (default: no perceptron)
    and pseudo-inverted below sqrt(eps) * max |eigenvalue|. Steps are capped at `max_step`
    radians per atom. Stops when the residual (model units) is <= tol (default 0: run
    `max_iter` iterations, keeping the best iterate).

    **Arguments:**

    - `model`: a `MeanField` with attention "usa" or "sa" (the energy must be defined).
    - `X`: (k, d) starting atoms on S^{d-1}.
    - `m`: (k,) masses, non-negative and summing to 1 (held fixed); None (default) for
        uniform 1/k. Must be concrete (zero-mass atoms are split off eagerly).
    - `tol`: target residual in model units, >= 0; None (default) for 0.
    - `max_iter`: maximum number of Newton steps, an integer >= 1 (default 30).
    - `max_step`: largest geodesic step per atom and iteration, radians, > 0 (default 0.5).
    - `modulo_rotations`: invert H_w on the complement of the rotation modes (computed
        once, at the start); None (default) for True exactly when there is no perceptron.

    **Returns:** a `CriticalPoint` with the best iterate (smallest residual) as `X` (all k
    atoms, zero-mass ones unchanged), the masses `m` as given, its `residual` (model units),
    `iterations` = the number of Newton steps taken, and `converged` = residual <=
    max(tol, 1e3 eps max_i |grad phi_mu(x_i)|) (the second term: rounding level).

    **Raises:** `ValueError` if the energy is not defined, if `X`, `m` fail the model's
    input checks, if no atom has positive mass, or if `max_iter`, `max_step` or `tol` is
    out of range.
    """
    X, m = _inputs(model, X, m)
    max_iter = check_int(max_iter, "max_iter")
    check_positive_scalar(max_step, "max_step")
    keep = np.asarray(m) > 0
    Xp, mp = _positive(X, m)
    if modulo_rotations is None:
        modulo_rotations = model.perceptron is None
    K = Xp.shape[0] * (Xp.shape[1] - 1)
    modes = (
        _complement(rotation_modes(Xp, mp), K, Xp.dtype)
        if modulo_rotations
        else jnp.eye(K, dtype=Xp.dtype)
    )
    # Rotation modes are recomputed only once: they move with the atoms, but Newton steps
    # are small and the pseudo-inverse absorbs the discrepancy.
    log_factor = _log_model_factor(model, X.dtype)
    target = 0.0 if tol is None else float(check_positive_scalar(tol, "tol", allow_zero=True))
    target = jnp.asarray(target, X.dtype) * jnp.exp(-log_factor)
    best, res, it = _newton_loop(model, Xp, mp, modes, max_iter, target, max_step)
    Xout = X.at[np.nonzero(keep)[0]].set(best)
    # Converged: below the requested tol, or (tol=None) at rounding level, 1e3 eps * |grad|.
    floor = 1e3 * jnp.finfo(X.dtype).eps * _gradient_scale(model, best, mp)
    converged = res <= jnp.maximum(target, floor)
    return CriticalPoint(Xout, m, res * jnp.exp(log_factor), it, converged)


METHODS = ("ascent", "adam", "lbfgs", "saddle")


def _unpack(params, optimize_masses, m):
    z, w = params
    X = retract(z)
    mm = jax.nn.softmax(w) if optimize_masses else m
    return X, mm


def _optax_run(loss, params, opt, steps, project_z: bool):
    state = opt.init(params)

    def step(carry, _):
        params, state = carry
        if project_z:  # adam: plain gradients
            value, grad = jax.value_and_grad(loss)(params)
        else:  # lbfgs: reuse the line search's value and gradient
            value, grad = optax.value_and_grad_from_state(loss)(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        params = optax.apply_updates(params, updates)
        if project_z:
            params = (retract(params[0]), params[1])
        return (params, state), value

    (params, _), values = lax.scan(step, (params, state), None, length=steps)
    return params, values


@eqx.filter_jit
def _optimise(model, X0, m0, method, steps, learning_rate, optimize_masses):
    dtype = X0.dtype
    lr = jnp.asarray(learning_rate, dtype)
    w0 = jnp.log(jnp.maximum(m0, jnp.finfo(dtype).tiny))

    if method == "ascent":

        def body(carry, _):
            X, m = carry
            G = _riemannian_grads(model, X, m)
            Xn = exp_map(X, lr * G)
            if optimize_masses:  # replicator (Fisher-Rao) ascent on the simplex
                phi = jax.vmap(_phi, in_axes=(None, 0, None, None))(model, X, X, m)
                m = jax.nn.softmax(jnp.log(jnp.maximum(m, jnp.finfo(dtype).tiny)) + lr * phi)
            return (Xn, m), _energy(model, Xn, m)

        (X, m), values = lax.scan(body, (X0, m0), None, length=steps)
        return X, m, values

    if method == "saddle":

        def loss(params):
            X, mm = _unpack(params, False, m0)
            G = _riemannian_grads(model, X, mm)
            return jnp.sum(mm * jnp.sum(G * G, axis=1))

        opt = optax.lbfgs()
        params, values = _optax_run(loss, (X0, w0), opt, steps, project_z=False)
        X, m = _unpack(params, False, m0)
        return X, m, values

    def loss(params):
        X, mm = _unpack(params, optimize_masses, m0)
        return -_energy(model, X, mm)

    if method == "adam":
        opt = optax.adam(lr)
        params, values = _optax_run(loss, (X0, w0), opt, steps, project_z=True)
    else:
        opt = optax.lbfgs()
        params, values = _optax_run(loss, (X0, w0), opt, steps, project_z=False)
    X, m = _unpack(params, optimize_masses, m0)
    return X, m, -values


def find_critical_point(
    model,
    X0: Float[Array, "k d"],
    m=None,
    *,
    method: str = "lbfgs",
    steps: int = 200,
    learning_rate: float = 0.05,
    optimize_masses: bool = False,
    refine: bool = True,
    mass_floor: float = 1e-10,
    newton_iter: int = 30,
) -> CriticalPoint:
    """Search a critical point of f(x_1..x_k) = F_s[sum m_i delta_{x_i}] from X0 by optimisation.

    Then (refine=True) atoms with mass <= mass_floor are dropped, masses renormalised,
    and `newton_refine` polishes the locations. With optimize_masses the first-order
    condition also includes phi_mu(x_i) = const on the support (not refined by Newton).

    **Arguments:**

    - `model`: a `MeanField` with attention "usa" or "sa" (the energy must be defined).
    - `X0`: (k, d) starting atoms on S^{d-1}.
    - `m`: (k,) starting masses, non-negative and summing to 1; None (default) for uniform
        1/k.
    - `method`: one of `METHODS` (default "lbfgs"):
        - "ascent": Riemannian gradient ascent x_i <- exp_{x_i}(lr grad_S phi~(x_i)) in
          normalised units (the geodesic Euler scheme of the USA flow); with
          optimize_masses also replicator ascent m_i <- m_i e^{lr phi~(x_i)} / Z.
        - "adam": optax.adam on ambient z_i (x_i = z_i / |z_i|, re-projected each step),
          maximising f~; masses m = softmax(w) if optimize_masses.
        - "lbfgs": optax.lbfgs on (z, w), same objective (zoom line search).
        - "saddle": optax.lbfgs minimisation of sum_i m_i |grad_S phi~(x_i)|^2 (masses
          fixed, `optimize_masses` ignored): converges to critical points of any index,
          saddles included.
    - `steps`: number of optimiser steps, an integer >= 1 (default 200).
    - `learning_rate`: > 0 (default 0.05); the step `lr` of "ascent" and the Adam step
        size. "lbfgs" and "saddle" do not use it (line search).
    - `optimize_masses`: also optimise the masses (default False).
    - `refine`: drop light atoms, renormalise and run `newton_refine` (default True).
    - `mass_floor`: with `refine`, atoms of mass <= mass_floor are dropped (default 1e-10).
    - `newton_iter`: `max_iter` of the final `newton_refine` (default 30).

    **Returns:** a `CriticalPoint` (residual in model units). With `refine` it is that of
    `newton_refine` on the k' <= k atoms kept; without, all k atoms and the optimised
    masses, `iterations` = `steps` and `converged` = False.

    **Raises:** `ValueError` if `method` is not in `METHODS`, if `steps` or `learning_rate`
    is out of range, if the energy is not defined, if `X0`, `m` fail the model's input
    checks, or from `newton_refine` (e.g. no atom above `mass_floor`).
    """
    X0, m = _inputs(model, X0, m)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    steps = check_int(steps, "steps")
    check_positive_scalar(learning_rate, "learning_rate")
    X, mm, _ = _optimise(model, X0, m, method, steps, learning_rate, bool(optimize_masses))
    X = retract(X)
    if not refine:
        res = _residual(model, X, mm) * jnp.exp(_log_model_factor(model, X.dtype))
        return CriticalPoint(X, mm, res, jnp.asarray(steps), jnp.asarray(False))
    keep = np.asarray(mm) > mass_floor
    X, mm = X[keep], mm[keep] / jnp.sum(mm[keep])
    return newton_refine(model, X, mm, max_iter=newton_iter)
