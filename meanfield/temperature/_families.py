"""Score families with their leading-order laws of beta*_n (`predicted_critical_beta`,
the table of docs/design.md section 3) and a sampler (`sample_scores`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validation import as_key
from .._validation import is_concrete as _is_concrete

#: Score families known to `sample_scores` and `predicted_critical_beta`, with their
#: parameters and defaults.
FAMILIES: dict[str, dict[str, float]] = {
    "gaussian": {"sigma": 1.0},
    "weibull": {"p": 2.0, "sigma": 1.0},
    "planted_simplex": {"rho": 0.5, "noise": 0.0},
    "finite_endpoint": {"c": 1.0},
    "sphere_cosine": {"d": 3},
    "gumbel": {"sigma": 1.0},
    "exponential": {"sigma": 1.0},
    "uniform": {"sigma": 1.0},
    "pareto": {"alpha": 2.0, "sigma": 1.0},
}


def family_params(family: str, params: dict) -> dict:
    """The parameters of a score family: its defaults in `FAMILIES` updated with `params`.

    Used by `sample_scores` and `predicted_critical_beta` to validate their `**params`.
    Range checks on sigma, p, c, rho and noise run only for concrete values.

    **Arguments:**

    - `family`: a key of `FAMILIES`.
    - `params`: a dict of overrides, whose keys must be parameters of that family.

    **Returns:** a new dict with every parameter of the family (with `d` cast to int for
    "sphere_cosine").

    **Raises:** `ValueError` if `family` is unknown, if `params` has a key the family does
    not take, if sigma, p, c or alpha is not > 0, if rho is not in (-1, 1), if noise is negative,
    or if d is not an integer >= 2.
    """
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {sorted(FAMILIES)}; got {family!r}.")
    unknown = set(params) - set(FAMILIES[family])
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for family {family!r}; "
            f"it takes {sorted(FAMILIES[family])}."
        )
    out = {**FAMILIES[family], **params}
    for name in ("sigma", "p", "c", "alpha"):
        if name in out and _is_concrete(out[name]) and not float(out[name]) > 0:
            raise ValueError(f"`{name}` must be > 0 for family {family!r}; got {out[name]!r}.")
    if family == "planted_simplex":
        rho, noise = out["rho"], out["noise"]
        if _is_concrete(rho) and not -1.0 < float(rho) < 1.0:
            raise ValueError(f"`rho` must lie in (-1, 1); got {rho!r}.")
        if _is_concrete(noise) and not float(noise) >= 0:
            raise ValueError(f"`noise` must be >= 0; got {noise!r}.")
    if family == "sphere_cosine":
        d = out["d"]
        if int(d) != d or int(d) < 2:
            raise ValueError(f"`d` must be an integer >= 2; got {d!r}.")
        out["d"] = int(d)
    return out


def _sphere_tail(d: int) -> tuple[float, float]:
    """(alpha, C) with P(1 - <q, x> <= u) ~ C u^alpha, x uniform on S^{d-1}.

    1 - <q, x> = 2 B with B ~ Beta(a, a), a = (d - 1)/2, and P(B <= v) ~ v^a / (a B(a, a)).
    """
    a = (d - 1) / 2
    log_beta_fn = 2 * math.lgamma(a) - math.lgamma(2 * a)
    return a, math.exp(-a * math.log(2) - math.log(a) - log_beta_fn)


@functools.lru_cache(maxsize=64)
def endpoint_law_constant(alpha: float, samples: int = 16384, terms: int = 2048) -> float:
    """Median of the limit law of beta*_n (n C)^(-1/alpha) for a power-law upper endpoint.

    If P(endpoint - s <= u) ~ C u^alpha (u -> 0), the top gaps satisfy
    (n C)^(1/alpha) (endpoint - s_(k)) -> Gamma_k^(1/alpha), Gamma_k = E_1 + ... + E_k
    (i.i.d. standard exponentials), so beta*_n (n C)^(-1/alpha) converges in law to
    S_alpha = max_k log k / (Gamma_{k+1}^(1/alpha) - Gamma_1^(1/alpha)), a non-degenerate random
    variable. Returns its median, by Monte Carlo with a fixed seed (deterministic; cached).
    Examples: alpha = 1/2 (d = 2 cosines) ~ 0.136, alpha = 1 (uniform scores, d = 3) ~ 0.512.
    For alpha -> inf it grows like alpha (the exponential-tail case, whose median is ~1.00).

    **Arguments:**

    - `alpha`: the tail exponent, > 0 (not validated).
    - `samples`: Monte Carlo samples of S_alpha (default 16384).
    - `terms`: number of terms k = 1..terms kept in the maximum (default 2048).

    **Returns:** the median, a Python float (NumPy, float64; memoised per argument triple
    by `functools.lru_cache`).
    """
    rng = np.random.default_rng(20260512)
    out = []
    chunk = 1024
    logk = np.log(np.arange(1, terms + 1))
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        gam = np.cumsum(rng.exponential(size=(m, terms + 1)), axis=1) ** (1.0 / alpha)
        gaps = gam[:, 1:] - gam[:, :1]
        out.append(np.max(logk / gaps, axis=1))
    return float(np.median(np.concatenate(out)))


def predicted_critical_beta(family: str, n: ArrayLike, **params) -> Float[Array, "..."]:
    """Leading-order law of beta*_n for a score family (docs/design.md, section 3), shape of `n`.

    ====================  ==================================================================
    gaussian(sigma)       sqrt(2 log n) / sigma
    weibull(p, sigma)     (p / sigma) (log n)^(1 - 1/p) for p >= 1 (the table); for p < 1 the
                          sup in t is reached in the bulk and the law is (1/sigma)(log n)^(1-1/p),
                          so we return max(p, 1)/sigma (log n)^(1 - 1/p)
    planted_simplex(rho)  log n / (1 - rho)   (exact value log(n - 1)/(1 - rho) at noise = 0)
    finite_endpoint(c)    (log n)^2 / c
    sphere_cosine(d)      of order n^(2/(d-1)): kappa_a (C_d n)^(1/a), a = (d - 1)/2, with
                          C_d = 2^-a / (a B(a, a)) (P(1 - cos <= u) ~ C_d u^a) and
                          kappa_a = `endpoint_law_constant(a)`, the median of the limit law, so
                          that the median measured/predicted ratio tends to 1
    uniform(sigma)        of order n: kappa_1 n / sigma (same construction, a = 1, C = 1/sigma)
    gumbel(sigma)         of order 1: 1 / sigma (the tail hazard; the limit law of
    exponential(sigma)    beta*_n sigma has median ~1.00, by Monte Carlo)
    pareto(alpha, sigma)  heavy tail P(s > x) = (x / sigma)^-alpha, x >= sigma: decreasing in n,
                          log n / (sigma ((n / log 2)^(1/alpha) - 1)), to leading order
                          (log 2)^(1/alpha) log n / (sigma n^(1/alpha)). The top score
                          M ~ sigma (n / E)^(1/alpha), E ~ Exp(1), is far above the bulk, so
                          the k = n - 1 term wins: beta*_n ~ log n / (M - sigma), at the
                          median of M (rows fluctuate by the factor (E / log 2)^(1/alpha))
    ====================  ==================================================================

    The laws are asymptotic: at finite n, measured/predicted ratios approach 1 slowly (in
    log n for the Gumbel-domain families), never exactly.

    **Arguments:**

    - `family`: a key of `FAMILIES`.
    - `n`: number of keys, >= 2; a scalar or an array.
    - `**params`: the family's parameters (defaults in `FAMILIES`; see `family_params`).

    **Returns:** the predicted beta*_n, an array of the shape of `n` in the default float
    dtype.

    **Raises:** `ValueError` from `family_params` (unknown family or parameter, out of
    range), or if a concrete `n` has an entry < 2.
    """
    prm = family_params(family, params)
    if not hasattr(n, "shape"):
        n = np.asarray(n)
    if _is_concrete(n) and np.any(np.asarray(n) < 2):
        raise ValueError(f"`n` must be >= 2 (number of keys); got {n!r}.")
    n = jnp.asarray(n, dtype=jnp.result_type(float))
    logn = jnp.log(n)
    if family == "gaussian":
        return jnp.sqrt(2 * logn) / prm["sigma"]
    if family == "weibull":
        p = prm["p"]
        return jnp.maximum(p, 1.0) / prm["sigma"] * logn ** (1 - 1 / p)
    if family == "planted_simplex":
        return logn / (1 - prm["rho"])
    if family == "finite_endpoint":
        return logn**2 / prm["c"]
    if family == "sphere_cosine":
        a, c = _sphere_tail(prm["d"])
        return endpoint_law_constant(a) * (c * n) ** (1 / a)
    if family == "uniform":
        return endpoint_law_constant(1.0) * n / prm["sigma"]
    if family == "pareto":
        alpha = prm["alpha"]
        return logn / (prm["sigma"] * ((n / math.log(2)) ** (1 / alpha) - 1))
    # gumbel, exponential
    return jnp.ones_like(n) / prm["sigma"]


def sample_scores(
    family: str,
    key: PRNGKeyArray,
    n: int,
    rows: int | None = None,
    *,
    dtype=None,
    **params,
) -> Float[Array, "... n"]:
    """Sample score rows of a family: shape (n,) if rows is None, else (rows, n).

    ====================  ==================================================================
    gaussian(sigma=1)     i.i.d. N(0, sigma^2)
    weibull(p=2, sigma=1) sigma E^(1/p), E ~ Exp(1): tail P(s > x) = exp(-(x/sigma)^p)
    planted_simplex       one query against n equiangular keys (pairwise correlation rho), the
    (rho=0.5, noise=0)    query being one of them (Chen-Lin-Polyanskiy-Rigollet): one planted
                          score 1 at a random position, n - 1 scores rho + (1 - rho) noise xi,
                          xi ~ N(0, 1). At noise = 0, beta*_n = log(n - 1)/(1 - rho) exactly;
                          the law survives noise as long as noise^2 log n -> 0 (e.g. Gaussian
                          keys in dimension d >> log n, noise ~ 1/sqrt(d))
    finite_endpoint(c=1)  -c / E, E ~ Exp(1): top endpoint 0 with P(0 - s <= u) = exp(-c/u)
    sphere_cosine(d=3)    <q, x_j> - 1 for a query q and keys x_j uniform on S^{d-1}, returned
                          shifted by -1 (same softmax and gaps) and computed as
                          -|g_perp|^2 / (|g| (|g| + g_1)), g ~ N(0, I_d), to keep full relative
                          precision near the top (O(n d) normals)
    gumbel(sigma=1)       sigma * standard Gumbel
    exponential(sigma=1)  sigma * Exp(1)
    uniform(sigma=1)      -sigma U, U ~ U(0, 1) (top endpoint 0), with twice the mantissa bits
                          (U1 + eps U2) so that the top gaps ~ sigma/n are resolved in float32
    pareto(alpha=2,       sigma U^(-1/alpha): the heavy-tailed (Frechet domain) family,
    sigma=1)              P(s > x) = (x / sigma)^-alpha for x >= sigma
    ====================  ==================================================================

    Tail-generated samples use uniforms with twice the mantissa bits (U1 + eps U2), so float32
    rows of n = 2^22 have no spurious ties at the top from the 2^-23 lattice of
    `jax.random.uniform` (which `jax.random.normal` and `exponential` inherit).

    **Arguments:**

    - `family`: a key of `FAMILIES`.
    - `key`: a JAX PRNG key, or an integer seed.
    - `n`: number of scores per row, a positive integer.
    - `rows`: number of rows, a positive integer, or None (default) for a single row.
    - `dtype`: a float dtype; None (default) for the default float dtype (float32 unless
        x64 is enabled).
    - `**params`: the family's parameters (defaults in `FAMILIES`; see `family_params`).

    **Returns:** an array of shape (n,) (rows=None) or (rows, n) in `dtype`.

    **Raises:** `ValueError` from `family_params`, or if `n` or `rows` is not a positive
    integer.
    """
    prm = family_params(family, params)
    if int(n) != n or int(n) < 1:
        raise ValueError(f"`n` must be a positive integer; got {n!r}.")
    if rows is not None and (int(rows) != rows or int(rows) < 1):
        raise ValueError(f"`rows` must be None or a positive integer; got {rows!r}.")
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.result_type(float)
    shape = (int(n),) if rows is None else (int(rows), int(n))
    return _sample(family, as_key(key), shape, dtype, tuple(sorted(prm.items())))


def _fine_uniform(key, shape, dtype):
    """U(0, 1) with twice the mantissa bits (U1 + eps U2), strictly positive.

    `jax.random.uniform` lives on a lattice of spacing eps (2^-23 in float32), which turns the
    top order statistics of tail-generated samples (e.g. -log U) into ties at large n.
    """
    k1, k2 = jr.split(key)
    eps = 2.0 ** -jnp.finfo(dtype).nmant
    u = jr.uniform(k1, shape, dtype) + eps * (jr.uniform(k2, shape, dtype) + 0.5 * eps)
    return jnp.minimum(u, 1.0 - 0.5 * eps)


def _fine_exponential(key, shape, dtype):
    """Exp(1) resolved in the upper tail: -log U with a fine uniform U."""
    return -jnp.log(_fine_uniform(key, shape, dtype))


def _fine_normal(key, shape, dtype):
    """N(0, 1) resolved in both tails: random sign times -ndtri(U / 2), fine uniform U."""
    k1, k2 = jr.split(key)
    mag = -jax.scipy.special.ndtri(0.5 * _fine_uniform(k1, shape, dtype))
    return jnp.where(jr.bernoulli(k2, 0.5, shape), mag, -mag)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample(family, key, shape, dtype, items):
    prm = dict(items)
    if family == "gaussian":
        return prm["sigma"] * _fine_normal(key, shape, dtype)
    if family == "weibull":
        return prm["sigma"] * _fine_exponential(key, shape, dtype) ** (1.0 / prm["p"])
    if family == "planted_simplex":
        k1, k2 = jr.split(key)
        rho = prm["rho"]
        s = rho + (1 - rho) * prm["noise"] * _fine_normal(k1, shape, dtype)
        planted = jr.randint(k2, shape[:-1], 0, shape[-1])
        hit = jnp.arange(shape[-1]) == planted[..., None]
        return jnp.where(hit, jnp.ones((), dtype), s)
    if family == "finite_endpoint":
        return -prm["c"] / _fine_exponential(key, shape, dtype)
    if family == "sphere_cosine":
        # x = g / |g|, g ~ N(0, I_d): 1 - x_1 = |g_perp|^2 / (|g| (|g| + g_1)), no cancellation
        # near the top x_1 -> 1.
        k1, k2 = jr.split(key)
        g1 = jr.normal(k1, shape, dtype)
        perp2 = jnp.zeros(shape, dtype)
        for ki in jr.split(k2, prm["d"] - 1):
            perp2 = perp2 + jr.normal(ki, shape, dtype) ** 2
        norm = jnp.sqrt(g1**2 + perp2)
        top = g1 >= 0
        near = perp2 / (norm * jnp.where(top, norm + g1, 1.0))
        return -jnp.where(top, near, 1.0 - g1 / norm)
    if family == "gumbel":
        # -log E, E = -log1p(-U) ~ Exp(1): the top (E -> 0) is resolved by a fine U -> 0.
        e = -jnp.log1p(-_fine_uniform(key, shape, dtype))
        return -prm["sigma"] * jnp.log(e)
    if family == "exponential":
        return prm["sigma"] * _fine_exponential(key, shape, dtype)
    if family == "uniform":
        return -prm["sigma"] * _fine_uniform(key, shape, dtype)
    if family == "pareto":
        return prm["sigma"] * _fine_uniform(key, shape, dtype) ** (-1.0 / prm["alpha"])
    raise AssertionError(family)  # pragma: no cover
