"""Spectral kernel summation on S^1 and S^2: O(n K) and O(n L^2) instead of O(n^2).

Circle (d = 2), x = (cos theta, sin theta), w = x_1 + i x_2 = e^{i theta}:

    exp(beta cos(theta - phi)) = sum_{k in Z} I_k(beta) e^{i k (theta - phi)}

so with the Fourier moments of the measure c_k = sum_j m_j w_j^k,

    f(x) = sum_j m_j exp(beta <x, x_j>) = e^beta sum_{k=0}^K a_k Re(conj(w)^k c_k),
    a_0 = ive_0(beta), a_k = 2 ive_k(beta)                (ive_k = I_k e^{-beta})
    d f / d theta = e^beta sum_k a_k k Im(conj(w)^k c_k).

Sphere (d = 3): exp(beta <x, y>) = sum_l (2l + 1) i_l(beta) P_l(<x, y>), and the addition
theorem P_l(<x, y>) = 4 pi / (2l + 1) sum_m Y_lm(x) Y_lm(y) (real orthonormal harmonics)
give f(x) = e^beta sum_l 4 pi si_l(beta) sum_m C_lm Y_lm(x), C_lm = sum_j m_j Y_lm(x_j),
si_l = i_l e^{-beta}. The Riemannian gradient of f is P_x grad f of the polynomial
extension, computed by forward-mode autodiff.

Truncation error (mass 1, relative to e^beta = max of the kernel):
    circle  |f - f_K| e^{-beta} <= 2 sum_{k>K} ive_k,
            |grad_S f - grad_S f_K| e^{-beta} / beta <= (2 / beta) sum_{k>K} k ive_k
    sphere  |f - f_L| e^{-beta} <= sum_{l>L} (2l+1) si_l          (|P_l| <= 1)
            |grad| e^{-beta} / beta <= sum_{l>L} (2l+1) si_l l(l+1) / (2 beta)
                                               (|sin t P_l'(cos t)| <= P_l'(1) = l(l+1)/2)
The order is the smallest K (or L) with both tails <= tol; the Bessel values inside the
traced computation come from an FFT (circle) or Gauss-Legendre quadrature (sphere) of
exp(beta(t - 1)), so beta stays a traced value and a beta sweep does not recompile, as
long as the order was chosen for the largest beta of the sweep.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

MAX_CIRCLE_ORDER = 100_000
MAX_SPHERE_DEGREE = 1_000
SPHERE_CHUNK = 4096


# ------------------------------------------------------------------ orders and bounds
def _circle_tails(beta: float, kmax: int):
    from scipy.special import ive

    k = np.arange(kmax + 2, dtype=np.float64)
    v = ive(k, beta)
    # tail[K] = sum_{k > K}: reversed cumulative sums.
    tail_f = 2 * (np.cumsum(v[::-1])[::-1] - v)
    tail_g = 2 * (np.cumsum((k * v)[::-1])[::-1] - k * v) / beta
    return tail_f, tail_g


def _sphere_tails(beta: float, lmax: int):
    from scipy.special import ive

    ell = np.arange(lmax + 2, dtype=np.float64)
    si = np.sqrt(np.pi / (2 * beta)) * ive(ell + 0.5, beta)
    term_f = (2 * ell + 1) * si
    term_g = term_f * ell * (ell + 1) / (2 * beta)
    tail_f = np.cumsum(term_f[::-1])[::-1] - term_f
    tail_g = np.cumsum(term_g[::-1])[::-1] - term_g
    return tail_f, tail_g


def _first_below(tail_f, tail_g, tol, what, limit):
    ok = np.nonzero(np.maximum(tail_f, tail_g) <= tol)[0]
    if len(ok) == 0 or ok[0] > limit:
        raise ValueError(
            f"The spectral {what} needed for this beta and tolerance exceeds the memory "
            f"budget ({limit}); use kernel='tiled', a larger `spectral_tol`, or smaller beta."
        )
    return int(ok[0])


def _tail_length(beta: float) -> int:
    """Terms summed for the tails: ive_k(beta) <= e^{-k^2 / (2 beta)} / sqrt(2 pi beta) for
    k <= beta and decays faster beyond, so terms past 60 sqrt(beta) are below e^{-1800}."""
    return int(60 * math.sqrt(beta) + 200)


def spectral_order(beta: float, d: int, tol: float) -> int:
    """Smallest truncation order K (d = 2) or degree L (d = 3) whose error bound is <= tol.

    tol is relative to e^beta (the largest value of the kernel) and applies to the kernel
    sum f and to grad_S f / beta, i.e. to the USA velocity and the energy per unit mass.
    Raises if the order would exceed MAX_CIRCLE_ORDER / MAX_SPHERE_DEGREE.

    **Arguments:** `beta` (concrete, > 0), `d` (2: the circle, 3: S^2), `tol` (> 0).

    **Returns:** the order (int).
    """
    beta, tol = float(beta), float(tol)
    if not tol > 0:
        raise ValueError(f"`spectral_tol` must be > 0; got {tol}.")
    if not beta > 0:
        raise ValueError(f"`beta` must be > 0; got {beta}.")
    if d not in (2, 3):
        raise ValueError(f"kernel='spectral' needs d = 2 or d = 3 (S^1 or S^2); got d = {d}.")
    limit = MAX_CIRCLE_ORDER if d == 2 else MAX_SPHERE_DEGREE
    if _tail_length(beta) > 20 * limit:
        _first_below(np.ones(1), np.ones(1), tol, "order", limit)  # raises the budget error
    tails = (_circle_tails if d == 2 else _sphere_tails)(beta, _tail_length(beta))
    return max(1, _first_below(*tails, tol, "order K" if d == 2 else "degree L", limit))


def error_bound(beta: float, d: int, order: int) -> float:
    """The truncation bound (relative to e^beta) at a given order; see the module docstring.

    **Arguments:** `beta`, `d` (2 or 3), `order` (K or L). **Returns:** the bound (float).
    """
    n_terms = max(order + 1, _tail_length(beta))
    tails = (_circle_tails if d == 2 else _sphere_tails)(beta, n_terms)
    return float(max(tails[0][order], tails[1][order]))


# ------------------------------------------------------------------ Bessel values, traced
def circle_bessel(beta, K: int, dtype) -> Float[Array, " K+1"]:
    """ive_k(beta) for k = 0..K as Fourier coefficients of exp(beta (cos t - 1)).

    An M = 4(K + 1) point FFT; aliasing adds ive_{M - k} + ..., below the truncation tail.
    """
    M = 4 * (K + 1)
    t = 2 * jnp.pi * jnp.arange(M, dtype=dtype) / M
    coeffs = jnp.fft.rfft(jnp.exp(beta * (jnp.cos(t) - 1))).real / M
    return coeffs[: K + 1].astype(dtype)


def sphere_bessel(beta, L: int, dtype) -> Float[Array, " L+1"]:
    """si_l(beta) = i_l(beta) e^{-beta} for l = 0..L (modified spherical Bessel, scaled).

    si_0 = (1 - e^{-2 beta}) / (2 beta) exactly; the ratios r_l = si_l / si_{l-1} satisfy
    the backward continued fraction r_l = 1 / ((2l + 1) / beta + r_{l+1}), started at
    N = 2L + 64 with r_{N+1} = 0 (the start error is damped by prod r_l^2, negligible there
    whenever L >= sqrt(2 beta log(1/tol)), i.e. for every order `spectral_order` picks).
    Relative accuracy ~ L eps, with no cancellation (a quadrature of e^{beta(t-1)} P_l(t)
    loses absolute accuracy ~1e-14 at large l).
    """
    N = 2 * L + 64
    ells = jnp.arange(N, 0, -1, dtype=dtype)

    def step(r_next, ell):
        r = 1 / ((2 * ell + 1) / beta + r_next)
        return r, r

    _, ratios = lax.scan(step, jnp.zeros((), dtype), ells)
    log_r = jnp.log(ratios[::-1][:L])  # r_1 .. r_L
    si0 = -jnp.expm1(-2 * beta) / (2 * beta)
    return si0 * jnp.exp(jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(log_r)]))


# ------------------------------------------------------------------ circle
def _circle_powers_scan(w, K: int, body, init):
    """Run `body(carry, w^k, k)` for k = 0..K with w^k carried (memory O(n))."""

    def step(state, k):
        carry, p = state
        carry, out = body(carry, p, k)
        return (carry, p * w), out

    (carry, _), outs = lax.scan(step, (init, jnp.ones_like(w)), jnp.arange(K + 1))
    return carry, outs


def circle_moments(X: Float[Array, "n 2"], m: Float[Array, " n"], K: int):
    """c_k = sum_j m_j e^{i k theta_j} for k = 0..K; complex, shape (K + 1,)."""
    w = X[:, 0] + 1j * X[:, 1]
    _, c = _circle_powers_scan(w, K, lambda carry, p, k: (carry, jnp.sum(m * p)), None)
    return c


def circle_sums(Y: Float[Array, "p 2"], X, m, beta, K: int):
    """(f e^{-beta}, grad_S f e^{-beta}) at the rows of Y, truncated at order K."""
    dtype = Y.dtype
    a = circle_bessel(beta, K, dtype)
    a = a.at[1:].multiply(2.0)
    c = circle_moments(X, m, K)
    wbar = Y[:, 0] - 1j * Y[:, 1]

    def body(carry, p, k):
        f, df = carry
        z = p * c[k]
        return (f + a[k] * z.real, df + a[k] * k * z.imag), None

    zero = jnp.zeros(Y.shape[0], dtype)
    (f, df), _ = _circle_powers_scan(wbar, K, body, (zero, zero))
    tangent = jnp.stack([-Y[:, 1], Y[:, 0]], axis=-1)
    return f, df[:, None] * tangent


def circle_log_interaction(X, m, beta, K: int):
    """log iint exp(beta <x, y>) dmu dmu = beta + log sum_k a_k |c_k|^2."""
    a = circle_bessel(beta, K, X.dtype).at[1:].multiply(2.0)
    c = circle_moments(X, m, K)
    return beta + jnp.log(jnp.sum(a * jnp.abs(c) ** 2))


# ------------------------------------------------------------------ sphere
@lru_cache(maxsize=32)
def _harmonic_recurrence(L: int):
    """Coefficients of Qbar_l^m = A z Qbar_{l-1}^m - B Qbar_{l-2}^m + D Qbar_{l-1}^{m-1}.

    Qbar_l^m(z) = N_lm P_l^m(z) / sin^m(theta) with the orthonormal N_lm; then
    Y_l0 = Qbar_l^0, Y_lm = sqrt(2) Qbar_l^m Re (x + iy)^m, Y_l,-m = sqrt(2) Qbar_l^m Im(.).
    """
    A = np.zeros((L + 1, L + 1))
    B = np.zeros((L + 1, L + 1))
    D = np.zeros((L + 1, L + 1))
    for ell in range(1, L + 1):
        for m in range(ell - 1):
            a = math.sqrt((4 * ell**2 - 1) / (ell**2 - m**2))
            b = math.sqrt(((ell - 1) ** 2 - m**2) / (4 * (ell - 1) ** 2 - 1))
            A[ell, m], B[ell, m] = a, a * b
        A[ell, ell - 1] = math.sqrt(2 * ell + 1)
        D[ell, ell] = math.sqrt((2 * ell + 1) / (2 * ell))
    return A, B, D


def _harmonic_scan(X: Float[Array, "n 3"], L: int, body, init):
    """Run `body(carry, Re, Im, Qbar_l, l)` for l = 0..L over the points X.

    Re, Im (n, L+1): sqrt(2) Re/Im (x + iy)^m (m > 0), 1 and 0 at m = 0. Qbar_l (n, L+1).
    """
    dtype = X.dtype
    A, B, D = (jnp.asarray(c, dtype) for c in _harmonic_recurrence(L))
    w = X[:, 0] + 1j * X[:, 1]
    powers = jnp.cumprod(
        jnp.concatenate([jnp.ones_like(w)[:, None], jnp.repeat(w[:, None], L, axis=1)], axis=1),
        axis=1,
    )
    scale = jnp.where(jnp.arange(L + 1) > 0, math.sqrt(2.0), 1.0).astype(dtype)
    re, im = powers.real * scale, powers.imag * scale
    z = X[:, 2:3]
    q0 = jnp.zeros((X.shape[0], L + 1), dtype).at[:, 0].set(1 / math.sqrt(4 * math.pi))

    def step(state, ell):
        carry, q1, q2 = state  # Qbar_{l-1}, Qbar_{l-2}
        shifted = jnp.pad(q1[:, :-1], ((0, 0), (1, 0)))
        q = A[ell] * z * q1 - B[ell] * q2 + D[ell] * shifted
        q = jnp.where(ell == 0, q0, q)
        carry = body(carry, re, im, q, ell)
        return (carry, q, q1), None

    zeros = jnp.zeros_like(q0)
    (carry, _, _), _ = lax.scan(step, (init, zeros, zeros), jnp.arange(L + 1))
    return carry


def _chunked(fn, X, *rest, chunk: int = SPHERE_CHUNK):
    """Apply fn to row chunks of X (and matching rows of rest), concatenating outputs."""
    n = X.shape[0]
    if n <= chunk:
        return fn(X, *rest)
    pad = (-n) % chunk
    Xp = jnp.pad(X, ((0, pad), (0, 0)), constant_values=0.0).at[n:, 2].set(1.0)
    rest = [jnp.pad(r, [(0, pad)] + [(0, 0)] * (r.ndim - 1)) for r in rest]
    out = lax.map(
        lambda args: fn(*args),
        (Xp.reshape(-1, chunk, 3), *[r.reshape(-1, chunk, *r.shape[1:]) for r in rest]),
    )
    return out


def sphere_moments(X: Float[Array, "n 3"], m: Float[Array, " n"], L: int):
    """(C_cos, C_sin) of shape (L + 1, L + 1): sum_j m_j Qbar_l^m(x_j) (Re, Im)_m(x_j)."""

    def chunk_moments(Xc, mc):
        def body(carry, re, im, q, ell):
            cc, cs = carry
            cc = cc.at[ell].set(jnp.sum(mc[:, None] * q * re, axis=0))
            cs = cs.at[ell].set(jnp.sum(mc[:, None] * q * im, axis=0))
            return cc, cs

        zero = jnp.zeros((L + 1, L + 1), Xc.dtype)
        return _harmonic_scan(Xc, L, body, (zero, zero))

    out = _chunked(chunk_moments, X, m)
    if X.shape[0] > SPHERE_CHUNK:
        out = tuple(o.sum(axis=0) for o in out)
    return out


def _sphere_field_and_grad(Y: Float[Array, "p 3"], wc, ws, L: int):
    """g(y) = sum_{l,m} Qbar_l^m(z) (Wc[l,m] Re_m + Ws[l,m] Im_m) and its ambient gradient.

    One pass over l carries Qbar_l and dQbar_l/dz (the derivative of the three-term
    recurrence) and accumulates, per point and order m, a_m = sum_l Wc[l,m] Qbar_l^m,
    b_m = sum_l Ws[l,m] Qbar_l^m and their z-derivatives. With w = x + iy and
    Re_m + i Im_m = s_m w^m (s_0 = 1, s_m = sqrt 2): dRe_m/dx = s_m m Re w^{m-1},
    dRe_m/dy = -s_m m Im w^{m-1}, dIm_m/dx = s_m m Im w^{m-1}, dIm_m/dy = s_m m Re w^{m-1}.
    About 2x the cost of the value alone (three forward-mode jvps cost ~6x).
    """
    dtype = Y.dtype
    A, B, D = (jnp.asarray(c, dtype) for c in _harmonic_recurrence(L))
    w = Y[:, 0] + 1j * Y[:, 1]
    ones = jnp.ones_like(w)[:, None]
    powers = jnp.cumprod(jnp.concatenate([ones, jnp.repeat(w[:, None], L, axis=1)], axis=1), axis=1)
    orders = jnp.arange(L + 1)
    scale = jnp.where(orders > 0, math.sqrt(2.0), 1.0).astype(dtype)
    re, im = powers.real * scale, powers.imag * scale
    prev = jnp.pad(powers[:, :-1], ((0, 0), (1, 0)))  # w^{m-1}, 0 at m = 0
    dscale = scale * orders
    z = Y[:, 2:3]
    n = Y.shape[0]
    q0 = jnp.zeros((n, L + 1), dtype).at[:, 0].set(1 / math.sqrt(4 * math.pi))

    def step(state, ell):
        acc, q1, q2, d1, d2 = state  # Qbar_{l-1}, Qbar_{l-2} and their z-derivatives
        shift_q = jnp.pad(q1[:, :-1], ((0, 0), (1, 0)))
        shift_d = jnp.pad(d1[:, :-1], ((0, 0), (1, 0)))
        q = A[ell] * z * q1 - B[ell] * q2 + D[ell] * shift_q
        dq = A[ell] * (q1 + z * d1) - B[ell] * d2 + D[ell] * shift_d
        q = jnp.where(ell == 0, q0, q)
        dq = jnp.where(ell == 0, 0.0, dq)
        a, b, da, db = acc
        acc = (a + wc[ell] * q, b + ws[ell] * q, da + wc[ell] * dq, db + ws[ell] * dq)
        return (acc, q, q1, dq, d1), None

    zeros = jnp.zeros_like(q0)
    init = ((zeros, zeros, zeros, zeros), zeros, zeros, zeros, zeros)
    ((a, b, da, db), *_), _ = lax.scan(step, init, jnp.arange(L + 1))
    value = jnp.sum(a * re + b * im, axis=1)
    gx = jnp.sum(dscale * (a * prev.real + b * prev.imag), axis=1)
    gy = jnp.sum(dscale * (-a * prev.imag + b * prev.real), axis=1)
    gz = jnp.sum(da * re + db * im, axis=1)
    return value, jnp.stack([gx, gy, gz], axis=1)


def sphere_sums(Y: Float[Array, "p 3"], X, m, beta, L: int):
    """(f e^{-beta}, grad_S f e^{-beta}) at the rows of Y, truncated at degree L."""
    dtype = Y.dtype
    si = sphere_bessel(beta, L, dtype)
    cc, cs = sphere_moments(X, m, L)
    wc = 4 * jnp.pi * si[:, None] * cc
    ws = 4 * jnp.pi * si[:, None] * cs

    def value_and_grad(Yc):
        value, grad = _sphere_field_and_grad(Yc, wc, ws, L)
        return value, grad - jnp.sum(grad * Yc, axis=1, keepdims=True) * Yc

    out = _chunked(value_and_grad, Y)
    if Y.shape[0] > SPHERE_CHUNK:
        f, g = out
        return f.reshape(-1)[: Y.shape[0]], g.reshape(-1, 3)[: Y.shape[0]]
    return out


def sphere_log_interaction(X, m, beta, L: int):
    """log iint exp(beta <x, y>) dmu dmu = beta + log sum_l 4 pi si_l sum_m C_lm^2."""
    si = sphere_bessel(beta, L, X.dtype)
    cc, cs = sphere_moments(X, m, L)
    return beta + jnp.log(4 * jnp.pi * jnp.sum(si * jnp.sum(cc**2 + cs**2, axis=1)))


# ------------------------------------------------------------------ dispatch
def spectral_sums(Y, X, m, beta, order: int):
    """(f e^{-beta}, grad_S f e^{-beta}) with f(y) = sum_j m_j exp(beta <y, x_j>)."""
    if X.shape[1] == 2:
        return circle_sums(Y, X, m, beta, order)
    return sphere_sums(Y, X, m, beta, order)


def spectral_log_interaction(X, m, beta, order: int):
    if X.shape[1] == 2:
        return circle_log_interaction(X, m, beta, order)
    return sphere_log_interaction(X, m, beta, order)
