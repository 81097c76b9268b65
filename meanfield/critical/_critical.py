r"""Critical points of the mean-field energy restricted to atomic measures.

For an atomic measure mu = sum_i m_i delta_{x_i} (atoms x_i on S^{d-1}, m_i > 0) and a
`MeanField` model with sign s and perceptron potential v, the energy restricted to atoms is

    f(x_1..x_k) = F_s[mu] = (s / (2 beta)) sum_{ij} m_i m_j K(x_i, x_j) + (1/2) sum_i m_i v(x_i),

K(x, y) = exp(beta <x, y>) (or exp(beta (<x, y> - 1)) with `shift_kernel=True`), and the
first variation is phi_mu(y) = (s / beta) sum_j m_j K(y, x_j) + v(y) / 2.

**Normalised units.** Internally every quantity is multiplied by lambda = e^{-beta}
(unshifted kernel) or 1 (shifted kernel), so that all exponentials have non-positive
exponents and nothing overflows at large beta: phi~ = lambda phi_mu, f~ = lambda f.
Gradients, Hessians and residuals are returned in the model's units
(those of `model.velocity`: times e^{-beta} again when `rescaled_time=True`);
verdicts only depend on signs and are computed in normalised units.

**Sphere calculus.** For g defined on R^d (here by the same formula), at x in S^{d-1},

    grad_S g(x) = P_x grad g(x),                     P_x = I - x x^T,
    Hess_S g(x) = P_x grad^2 g(x) P_x - <x, grad g(x)> P_x.

(Differentiate g(gamma(t)) twice along the geodesic gamma(t) = cos(t) x + sin(t) xi,
|xi| = 1, xi _|_ x: gamma'' = -x at t = 0, so (g o gamma)'' = xi^T grad^2 g xi -
<x, grad g>.) In tangent coordinates, with an orthonormal basis E_x (d, d-1) of x^perp
(`tangent_basis`, a Householder reflection), the Hessian is the (d-1, d-1) matrix
E^T grad^2 g E - <x, grad g> I.

**Stationarity.** Since d f / d x_i = m_i grad phi_mu(x_i), the Riemannian gradient of f
in the mass-weighted (Wasserstein) metric sum_i m_i |xi_i|^2 is (grad_S phi_mu(x_i))_i,
which is the USA velocity. `stationarity_residual` = max_{i: m_i > 0} |grad_S phi_mu(x_i)|.

**Splitting Hessian.** Splitting atom i into two halves at exp_{x_i}(+-eps xi) changes F by
(m_i / 2) eps^2 xi^T Hess_S phi_mu(x_i) xi + O(eps^4) (the first-order terms cancel). So
splitting stability means Hess_S phi_mu(x_i) <= 0 for every atom with m_i > 0.

**Transport Hessian.** H = Hess f on the product of spheres, block (i, j) in tangent
coordinates: E_i^T (d^2 f / dx_i dx_j) E_j - delta_ij <x_i, d f / dx_i> I. In the
mass-weighted metric the Hessian operator is M^{-1} H, M = diag(m_i I_{d-1}); its
symmetric form (same eigenvalues) is H_w = M^{-1/2} H M^{-1/2}.

**Symmetries.** Without a perceptron F_s is invariant under rotations O(d), so H_w
vanishes on the directions xi_i = A x_i (A skew, d(d-1)/2 generators): no critical point
can be strictly stable in the naive sense. Strictness is then judged on the orthogonal
complement of that orbit (`modulo_rotations`, automatic when there is no perceptron).

For `attention="sa"` the dynamics is not the gradient flow of F_s when a perceptron is
present, but the energy (and the notion of stable critical point) is the same; all
functions here use the energy's gradient, i.e. the USA field, unless `field="model"`
is passed to `stationarity_residual` (the model's own velocity, also for "general").
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import check_int, check_positive_scalar
from ..dynamics._model import MLP
from ..sphere import exp_map, project, retract, uniform_sphere

# ----------------------------------------------------------------------------- scalings


def _require_energy(model):
    if model.attention == "general" or isinstance(model.perceptron, MLP):
        raise ValueError(
            "Critical points and Hessians are those of the energy F_s, defined for "
            "attention='usa' or 'sa' with a conservative Perceptron; this model "
            f"(attention={model.attention!r}) has no energy."
        )


def _kernel_log_shift(model, dtype):
    """log of lambda for the perceptron: 0 with the shifted kernel, else -beta."""
    return jnp.zeros((), dtype) if model.shift_kernel else -model.beta.astype(dtype)


def _log_model_factor(model, dtype):
    """log(model units / normalised units) = -log lambda - beta [rescaled_time]."""
    beta = model.beta.astype(dtype)
    out = jnp.zeros((), dtype) if model.shift_kernel else beta
    return out - beta if model.rescaled_time else out


def _phi(model, y: Float[Array, " d"], X: Float[Array, "k d"], m: Float[Array, " k"]):
    """Normalised first variation phi~(y) = lambda phi_mu(y) (scalar); y may be off-sphere."""
    dtype = X.dtype
    beta = model.beta.astype(dtype)
    s = model.sign.astype(dtype)
    kern = jnp.sum(m * jnp.exp(beta * (X @ y - 1.0)))
    out = (s / beta) * kern
    if model.perceptron is not None:
        out = out + 0.5 * jnp.exp(_kernel_log_shift(model, dtype)) * model.perceptron.potential(y)
    return out


def _energy(model, X: Float[Array, "k d"], m: Float[Array, " k"]):
    """Normalised energy f~ = lambda F_s[sum m_i delta_{x_i}] (scalar)."""
    dtype = X.dtype
    beta = model.beta.astype(dtype)
    s = model.sign.astype(dtype)
    K = jnp.exp(beta * (X @ X.T - 1.0))
    out = (s / (2 * beta)) * (m @ K @ m)
    if model.perceptron is not None:
        lam = jnp.exp(_kernel_log_shift(model, dtype))
        out = out + 0.5 * lam * jnp.sum(m * model.perceptron.potential(X))
    return out


def _euclidean_grads(model, X, m) -> Float[Array, "k d"]:
    """grad phi~ (ambient, R^d) at every atom."""
    return jax.vmap(jax.grad(_phi, argnums=1), in_axes=(None, 0, None, None))(model, X, X, m)


def _riemannian_grads(model, X, m) -> Float[Array, "k d"]:
    """grad_S phi~(x_i) = P_{x_i} grad phi~(x_i), shape (k, d)."""
    return project(X, _euclidean_grads(model, X, m))


# ----------------------------------------------------------------------------- inputs


def _inputs(model, X, m):
    _require_energy(model)
    return model.check_inputs(X, m)


def _positive(X, m):
    """Eagerly drop zero-mass atoms (they carry no energy); error if none is left."""
    keep = np.asarray(m) > 0
    if not keep.any():
        raise ValueError("`m` has no atom with positive mass.")
    return X[keep], m[keep]


# ----------------------------------------------------------------------------- residual


def stationarity_residual(model, X: Float[Array, "n d"], m=None, *, field: str = "energy"):
    """max_{i: m_i > 0} |grad_S phi_mu(x_i)|, in the units of `model.velocity`.

    field="energy" (default): the Riemannian gradient of the first variation of F_s,
    i.e. the USA velocity of the same (beta, sign, perceptron, kernel convention), also
    for attention="sa" (whose critical points coincide with USA's without a perceptron).
    field="model": the model's own velocity (SA, or the general non-gradient system).
    Returns a scalar array.
    """
    if field == "model":
        X, m = model.check_inputs(X, m)
        v = model.resolve_kernel(*X.shape, dtype=X.dtype)._velocity(X, m)
        return jnp.max(jnp.where(m > 0, jnp.linalg.norm(v, axis=1), 0.0))
    if field != "energy":
        raise ValueError(f"`field` must be 'energy' or 'model'; got {field!r}.")
    X, m = _inputs(model, X, m)
    return _residual(model, X, m) * jnp.exp(_log_model_factor(model, X.dtype))


@eqx.filter_jit
def _residual(model, X, m):
    g = jnp.linalg.norm(_riemannian_grads(model, X, m), axis=1)
    return jnp.max(jnp.where(m > 0, g, 0.0))


def _gradient_scale(model, X, m):
    """max_i |grad phi~(x_i)| (ambient): the size the residual is compared with."""
    g = jnp.linalg.norm(_euclidean_grads(model, X, m), axis=1)
    return jnp.maximum(jnp.max(jnp.where(m > 0, g, 0.0)), jnp.finfo(X.dtype).tiny)


# ----------------------------------------------------------------------------- Hessians


def tangent_basis(x: Float[Array, " d"]) -> Float[Array, "d d-1"]:
    """Orthonormal basis of the tangent space x^perp, shape (d, d-1).

    Columns 2..d of the Householder reflection H = I - 2 w w^T / |w|^2,
    w = x + sign(x_1) e_1, which maps e_1 to -sign(x_1) x; smooth away from x_1 = 0 sign flips.
    """
    d = x.shape[0]
    sgn = jnp.where(x[0] >= 0, 1.0, -1.0).astype(x.dtype)
    w = x.at[0].add(sgn)
    H = jnp.eye(d, dtype=x.dtype) - 2.0 * jnp.outer(w, w) / jnp.dot(w, w)
    return H[:, 1:]


def _sphere_hessian(x, grad, hess):
    """E^T grad^2 g E - <x, grad g> I in tangent coordinates at x."""
    E = tangent_basis(x)
    return E.T @ hess @ E - jnp.dot(x, grad) * jnp.eye(E.shape[1], dtype=x.dtype)


@eqx.filter_jit
def _splitting_hessians(model, X, m) -> Float[Array, "k d-1 d-1"]:
    def one(x):
        g = jax.grad(_phi, argnums=1)(model, x, X, m)
        h = jax.hessian(_phi, argnums=1)(model, x, X, m)
        return _sphere_hessian(x, g, h)

    return jax.vmap(one)(X)


def splitting_hessian(model, X: Float[Array, "k d"], m=None) -> Float[Array, "k d-1 d-1"]:
    """Riemannian Hessian of phi_mu at every atom, in tangent coordinates (model units).

    Entry i is E_i^T grad^2 phi_mu(x_i) E_i - <x_i, grad phi_mu(x_i)> I_{d-1}, with E_i =
    `tangent_basis(x_i)`. Splitting atom i along xi changes F by (m_i/2) eps^2 xi^T H_i xi.
    """
    X, m = _inputs(model, X, m)
    return _splitting_hessians(model, X, m) * jnp.exp(_log_model_factor(model, X.dtype))


@eqx.filter_jit
def _transport_hessian(model, X, m, weighted: bool = True) -> Float[Array, "K K"]:
    """Riemannian Hessian of f~ on (S^{d-1})^k in tangent coordinates, K = k (d-1)."""
    k, d = X.shape
    grad = jax.grad(_energy, argnums=1)(model, X, m)  # (k, d)
    hess = jax.hessian(_energy, argnums=1)(model, X, m)  # (k, d, k, d)
    E = jax.vmap(tangent_basis)(X)  # (k, d, d-1)
    H = jnp.einsum("iap,iajb,jbq->ipjq", E, hess, E)
    normal = jnp.sum(X * grad, axis=1)  # <x_i, d f / d x_i>
    eye = jnp.eye(d - 1, dtype=X.dtype)
    H = H - jnp.einsum("i,ij,pq->ipjq", normal, jnp.eye(k, dtype=X.dtype), eye)
    if weighted:
        w = 1.0 / jnp.sqrt(m)
        H = H * w[:, None, None, None] * w[None, None, :, None]
    H = H.reshape(k * (d - 1), k * (d - 1))
    return 0.5 * (H + H.T)


def transport_hessian(
    model, X: Float[Array, "k d"], m=None, *, weighted: bool = True
) -> Float[Array, "K K"]:
    """Hessian of f(x_1..x_k) = F_s[sum m_i delta_{x_i}] on the product of spheres.

    Shape (k(d-1), k(d-1)) in tangent coordinates (atom-major, E_i = `tangent_basis(x_i)`),
    model units. Block (i, j): E_i^T (d^2 f / dx_i dx_j) E_j - delta_ij <x_i, df/dx_i> I.
    weighted=True (default) returns H_w = M^{-1/2} H M^{-1/2}, the Hessian in the
    mass-weighted metric sum m_i |xi_i|^2 (all masses must be > 0).
    """
    X, m = _inputs(model, X, m)
    if weighted and not bool(np.all(np.asarray(m) > 0)):
        raise ValueError("`m` must be > 0 for the mass-weighted Hessian; drop zero-mass atoms.")
    H = _transport_hessian(model, X, m, weighted)
    return H * jnp.exp(_log_model_factor(model, X.dtype))


def _tangent_bases_np(X: np.ndarray) -> np.ndarray:
    """NumPy twin of `tangent_basis`, for every row: (k, d, d-1)."""
    k, d = X.shape
    sgn = np.where(X[:, 0] >= 0, 1.0, -1.0)
    W = X.copy()
    W[:, 0] += sgn
    H = np.eye(d)[None] - 2.0 * W[:, :, None] * W[:, None, :] / np.sum(W * W, 1)[:, None, None]
    return H[:, :, 1:]


def rotation_modes(X: Float[Array, "k d"], m: Float[Array, " k"]) -> Float[Array, "K r"]:
    """Orthonormal basis (in H_w coordinates) of the infinitesimal rotations of the atoms.

    Columns span {(sqrt(m_i) E_i^T A x_i)_i : A skew}; r = their rank (<= d(d-1)/2).
    Computed eagerly in NumPy (float64).
    """
    Xh, mh = np.asarray(X, np.float64), np.asarray(m, np.float64)
    k, d = Xh.shape
    p, q = np.triu_indices(d, 1)
    gens = np.zeros((len(p), d, d))
    gens[np.arange(len(p)), p, q] = 1.0
    gens[np.arange(len(p)), q, p] = -1.0
    E = _tangent_bases_np(Xh)
    V = np.einsum("gab,ib->gia", gens, Xh)  # (g, k, d) tangent vectors A x_i
    C = np.einsum("iap,gia->gip", E, V) * np.sqrt(mh)[None, :, None]
    C = C.reshape(len(p), -1).T  # (K, g)
    U, S, _ = np.linalg.svd(C, full_matrices=False)
    eps = float(jnp.finfo(jnp.result_type(X)).eps)
    r = int(np.sum(1e3 * eps * max(1.0, float(S[0])) < S))
    return jnp.asarray(U[:, :r], jnp.result_type(X))


def _complement(basis: Float[Array, "K r"], K: int, dtype) -> Float[Array, "K K-r"]:
    """Orthonormal basis of the orthogonal complement of span(basis) (eager, NumPy)."""
    if basis.shape[1] == 0:
        return jnp.eye(K, dtype=dtype)
    U, _, _ = np.linalg.svd(np.asarray(basis, np.float64), full_matrices=True)
    return jnp.asarray(U[:, basis.shape[1] :], dtype)


# ----------------------------------------------------------------------------- verdicts


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
    """
    return stability_report(model, X, m, **kwargs).stable


def is_strictly_stable(model, X, m=None, **kwargs) -> bool:
    """True when both Hessians are negative definite (modulo rotations without perceptron)."""
    return stability_report(model, X, m, **kwargs).strictly_stable


# ----------------------------------------------------------------------------- Newton


class CriticalPoint(eqx.Module):
    """A critical point candidate: atoms `X` (k, d), masses `m` (k,), `residual` (model
    units), `iterations` of the last stage, and `converged` (residual <= the target)."""

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
    `max_iter` iterations, keeping the best iterate). Returns a `CriticalPoint`.
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


# ----------------------------------------------------------------------------- optimisers

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

    method:
      "ascent": Riemannian gradient ascent x_i <- exp_{x_i}(lr grad_S phi~(x_i)) in
                normalised units (the geodesic Euler scheme of the USA flow); with
                optimize_masses also replicator ascent m_i <- m_i e^{lr phi~(x_i)} / Z.
      "adam":   optax.adam on ambient z_i (x_i = z_i / |z_i|, re-projected each step),
                maximising f~; masses m = softmax(w) if optimize_masses.
      "lbfgs":  optax.lbfgs on (z, w), same objective (zoom line search).
      "saddle": optax.lbfgs minimisation of sum_i m_i |grad_S phi~(x_i)|^2 (masses fixed):
                converges to critical points of any index, saddles included.
    Then (refine=True) atoms with mass <= mass_floor are dropped, masses renormalised,
    and `newton_refine` polishes the locations. With optimize_masses the first-order
    condition also includes phi_mu(x_i) = const on the support (not refined by Newton).
    Returns a `CriticalPoint` (residual in model units).
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


# ----------------------------------------------------------------------------- the paper


def mass_bound(beta, perceptron=None, *, shift_kernel: bool = False) -> float:
    """The d = 2 cluster-mass bound of Alvarez-Lopez, Geshkovski and Ruiz-Balet (2026).

    A cluster of diameter <= 1/(2 sqrt(beta)) of a stable critical point of the repulsive
    (s = -1) energy on S^1 has mass at most

        (2 e^{beta - 3/2} + C) / (2 e^{beta - 3/2} + (3/8) e^{beta - 1/8}),
        C = 2 sum_k |omega_k| |a_k|^2   (C = 0 without perceptron),

    evaluated as (2 e^{-3/2} + C e^{-beta}) / (2 e^{-3/2} + (3/8) e^{-1/8}) (no overflow).
    It decreases to 16 / (16 + 3 e^{11/8}) ~ 0.5742 as beta -> inf. The statement is for
    the kernel exp(beta <x, y>); with shift_kernel=True (kernel exp(beta (<x, y> - 1))) the
    perceptron is e^{beta} times stronger relative to the interaction, so C e^{-beta} -> C.
    """
    check_positive_scalar(beta, "beta")
    beta = float(beta)
    C = 0.0 if perceptron is None else float(perceptron.lipschitz_constant())
    c_eff = C if shift_kernel else C * math.exp(-beta)
    num = 2 * math.exp(-1.5) + c_eff
    den = 2 * math.exp(-1.5) + 0.375 * math.exp(-0.125)
    return num / den


MASS_BOUND_LIMIT = 16.0 / (16.0 + 3.0 * math.exp(11.0 / 8.0))
"""lim_{beta -> inf} mass_bound(beta) = 16 / (16 + 3 e^{11/8}) ~ 0.5742."""


def concavity_angle(beta):
    """theta_c = arccos((sqrt(1 + 4 beta^2) - 1) / (2 beta)).

    K(theta) = exp(beta cos theta) has K'' = K (beta^2 sin^2 theta - beta cos theta), which
    is < 0 iff beta c^2 + c - beta > 0 (c = cos theta), i.e. c > (sqrt(1 + 4 beta^2) - 1)/(2 beta):
    K is concave exactly for |theta| < theta_c. theta_c -> pi/2 as beta -> 0 and
    ~ 1/sqrt(beta) as beta -> inf. Works on arrays; computed as
    arccos(2 beta / (sqrt(1 + 4 beta^2) + 1)) to avoid cancellation at small beta.
    """
    beta = jnp.asarray(beta, dtype=jnp.result_type(float))
    return jnp.arccos(2 * beta / (jnp.sqrt(1 + 4 * beta**2) + 1))


def global_maximiser(
    model,
    key: PRNGKeyArray | None = None,
    *,
    num_starts: int = 128,
    steps: int = 300,
    learning_rate: float = 0.05,
    d: int | None = None,
) -> CriticalPoint:
    """The global maximiser of F_s for s = +1: the Dirac mass at argmax_{S^{d-1}} v.

    Proof: K <= e^{beta} (resp. 1 shifted) on S^{d-1}, so for every probability mu,
    F_+[mu] <= e^{beta}/(2 beta) + (1/2) max v, with equality iff mu = delta_{x*},
    x* in argmax v. v is maximised by multi-start projected Adam from `num_starts`
    uniform points and +-a_k, then `newton_refine` on the single atom. Without a
    perceptron every Dirac is a maximiser and e_1 is returned (pass `d`).
    For s = -1 the maximiser is not atomic (uniform without perceptron): error.
    """
    _require_energy(model)
    if float(model.sign) != 1.0:
        raise ValueError(
            "`global_maximiser` is for the attractive sign s = +1; for s = -1 without a "
            "perceptron the maximiser is the uniform measure (not atomic)."
        )
    p = model.perceptron
    if p is None:
        if d is None:
            raise ValueError("Without a perceptron pass the dimension `d`.")
        X = jnp.zeros((1, check_int(d, "d", minimum=2)), jnp.result_type(float)).at[0, 0].set(1.0)
        m = jnp.ones((1,), X.dtype)
        res = stationarity_residual(model, X, m)
        return CriticalPoint(X, m, res, jnp.asarray(0), jnp.asarray(True))
    key = jr.PRNGKey(0) if key is None else key
    dd = p.dim
    dtype = p.a.dtype
    starts = jnp.concatenate([uniform_sphere(key, num_starts, dd, dtype=dtype), p.a, -p.a])
    starts = retract(starts + 1e-3 * jr.normal(jr.fold_in(key, 1), starts.shape, dtype))
    best = _maximise_potential(p, starts, check_int(steps, "steps"), learning_rate)
    X, m = best[None], jnp.ones((1,), dtype)
    return newton_refine(model, X, m, max_iter=20)


@eqx.filter_jit
def _maximise_potential(p, starts, steps, learning_rate):
    opt = optax.adam(learning_rate)
    loss = lambda z: -jnp.sum(p.potential(retract(z)))
    state = opt.init(starts)

    def step(carry, _):
        z, state = carry
        g = jax.grad(loss)(z)
        updates, state = opt.update(g, state, z)
        return (retract(optax.apply_updates(z, updates)), state), None

    (z, _), _ = lax.scan(step, (starts, state), None, length=steps)
    return z[jnp.argmax(p.potential(z))]
