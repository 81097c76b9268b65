"""The d = 2 cluster-mass bound of Alvarez-Lopez, Geshkovski and Ruiz-Balet (arXiv
2601.21366): a stable repulsive cluster carries at most `mass_bound(beta, perceptron)`,
whose large-beta limit is MASS_BOUND_LIMIT = 16 / (16 + 3 e^{11/8}) ~ 0.5742; the
concavity angle and the perceptron potential's global maximiser.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jax import lax
from jaxtyping import PRNGKeyArray

from .._validation import as_key, check_int, check_positive_scalar
from ..sphere import retract, uniform_sphere
from ._refine import CriticalPoint, newton_refine
from ._units import stationarity_residual


def mass_bound(beta, perceptron=None, *, shift_kernel: bool = False) -> float:
    """The d = 2 cluster-mass bound of Alvarez-Lopez, Geshkovski and Ruiz-Balet (2026).

    A cluster of diameter <= 1/(2 sqrt(beta)) of a stable critical point of the repulsive
    (s = -1) energy on S^1 has mass at most

        (2 e^{beta - 3/2} + C) / (2 e^{beta - 3/2} + (3/8) e^{beta - 1/8}),
        C = 2 sum_k |omega_k| |a_k|^2   (C = 0 without perceptron),

    evaluated as (2 e^{-3/2} + C e^{-beta}) / (2 e^{-3/2} + (3/8) e^{-1/8}) (no overflow).
    It decreases to 16 / (16 + 3 e^{11/8}) ~ 0.5742 as beta -> inf (for C > 0; without a
    perceptron it equals that value for every beta). The statement is for
    the kernel exp(beta <x, y>); with shift_kernel=True (kernel exp(beta (<x, y> - 1))) the
    perceptron is e^{beta} times stronger relative to the interaction, so C e^{-beta} -> C.

    **Arguments:**

    - `beta`: inverse temperature, a finite scalar > 0 (concrete).
    - `perceptron`: a `Perceptron` (C = its `lipschitz_constant()`), or None (default,
        C = 0).
    - `shift_kernel`: the kernel convention of the model, as in `MeanField` (default
        False).

    **Returns:** the bound, a Python float (in (0, 1] without a perceptron, ~0.5742; it can
    exceed 1 with a strong perceptron, in which case it says nothing).

    **Raises:** `ValueError` if `beta` is not a finite scalar > 0.
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

    **Arguments:**

    - `beta`: inverse temperature >= 0, a scalar or an array of any shape (not validated;
        traceable).

    **Returns:** theta_c in radians, an array of the shape of `beta` in the default float
    dtype, in (0, pi/2] (pi/2 at beta = 0).
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

    **Arguments:**

    - `model`: a `MeanField` with sign s = +1 and attention "usa" or "sa".
    - `key`: PRNG key for the random starts (and their 1e-3 jitter); None (default) for
        `jax.random.PRNGKey(0)`.
    - `num_starts`: number of uniform random starts, besides the 2 K points +-a_k
        (default 128).
    - `steps`: Adam steps on v, an integer >= 1 (default 300).
    - `learning_rate`: Adam step size (default 0.05).
    - `d`: the dimension, an integer >= 2; required without a perceptron, ignored with one
        (the perceptron's dimension is used).

    **Returns:** a `CriticalPoint` with one atom, `X` (1, d) and `m` = [1]: the result of
    `newton_refine(model, X, m, max_iter=20)` from the best start; without a perceptron
    X = e_1, `iterations` = 0 and `converged` = True.

    **Raises:** `ValueError` if the energy is not defined (attention="general"), if the
    sign is not +1, if there is no perceptron and `d` is missing or < 2, or if `steps` is
    not an integer >= 1.
    """
    model.require_energy()
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
    key = jr.PRNGKey(0) if key is None else as_key(key)
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
