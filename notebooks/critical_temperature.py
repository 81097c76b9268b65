# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The critical inverse temperature of softmax rows
#
# One attention row with scores s_1..s_n: p(beta) = softmax(beta s) goes from spread
# (entropy H = log n) to one-hot (H = 0) as beta grows. Karakida and Hayase (arXiv
# 2605.12697) locate the transition at beta*_n = max_k log k / Delta_(k), the sorted gaps
# to the top score, and derive its growth with n for each score family (docs/design.md,
# section 3). We measure beta*_n on sampled rows, compare with the laws, draw the entropy
# curves, and look at the rows of a particle configuration. `MEANFIELD_NB_N` scales n.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import meanfield as mf

SCALE = int(os.environ.get("MEANFIELD_NB_N", 64))
NS = [16 * SCALE, 128 * SCALE, 512 * SCALE]  # 384 ... 12288 keys at the test size
ROWS = 16
key = jax.random.PRNGKey(0)
print("families:", sorted(mf.temperature.FAMILIES))

# %% [markdown]
# ## Entropy curves and beta*_n for Gaussian scores
# The law is sqrt(2 log n) / sigma; at finite n the measured/predicted ratio approaches 1
# slowly (in log n).

# %%
betas = jnp.geomspace(0.05, 50.0, 80)
curves, measured, predicted = [], [], []
for i, n in enumerate(NS):
    s = mf.sample_scores("gaussian", jax.random.fold_in(key, i), n, rows=ROWS)
    curves.append(np.asarray(mf.entropy_curve(s, betas)).mean(0))  # nats: the plot divides by log n
    measured.append(float(jnp.median(mf.critical_beta(s))))
    predicted.append(float(mf.predicted_critical_beta("gaussian", n)))
fig = mf.plot.entropy_curves(
    betas,
    np.stack(curves),
    NS,
    predicted=predicted,
    measured=measured,
    title="Gaussian scores: H(beta) / log n",
)
for n, b, p in zip(NS, measured, predicted, strict=True):
    print(f"n = {n:6d}: beta*_n = {b:.3f}, law {p:.3f}, ratio {b / p:.3f}")

# %% [markdown]
# ## Several families against their laws
# Gumbel-domain families (Gaussian, Weibull) grow like powers of log n, the planted simplex
# like log n / (1 - rho), a finite endpoint with an essential singularity like (log n)^2.

# %%
families = {
    "gaussian": {},
    "weibull": {"p": 3.0},
    "planted_simplex": {"rho": 0.5},
    "finite_endpoint": {"c": 1.0},
}
ratios = {}
for j, (fam, params) in enumerate(families.items()):
    r = []
    for i, n in enumerate(NS):
        s = mf.sample_scores(fam, jax.random.fold_in(key, 100 * j + i), n, rows=ROWS, **params)
        r.append(
            float(jnp.median(mf.critical_beta(s)) / mf.predicted_critical_beta(fam, n, **params))
        )
    ratios[fam] = r
fig = mf.plot.critical_ratios(NS, ratios)

# %% [markdown]
# ## Implicit scales are differentiable
# beta where p_max = 1/2 solves an equation in beta; its gradient with respect to the
# scores comes from the implicit function theorem.

# %%
s = mf.sample_scores("gaussian", key, NS[0])
b_half = mf.temperature.beta_at_pmax_half(s)
grad = jax.grad(lambda x: mf.temperature.beta_at_pmax_half(x))(s)
print(
    f"beta(p_max = 1/2) = {float(b_half):.3f}; most negative d beta / d s_j:",
    np.round(np.sort(np.asarray(grad))[:3], 4),
)

# %% [markdown]
# ## Rows of a particle configuration
# For particles uniform on S^{d-1}, query i sees keys with scores <x_i, x_j>; the median
# beta*_n over queries follows the `sphere_cosine` law, of order n^{2/(d-1)}. After SA
# clustering the rows are nearly one-hot already at small beta: beta*_n collapses.

# %%
X = mf.uniform_sphere(key, 4 * SCALE, 3)
b_uniform = mf.critical_beta_of_particles(X)
law = float(mf.predicted_critical_beta("sphere_cosine", X.shape[0] - 1, d=3))
traj = mf.integrate(mf.MeanField(4.0, attention="sa"), X, dt=0.1, steps=300)
b_clustered = mf.critical_beta_of_particles(traj.final)
fig, ax = plt.subplots(figsize=(6, 4))
ax.hist(np.log10(np.asarray(b_uniform)), bins=30, alpha=0.6, label="uniform particles")
finite = np.asarray(b_clustered)[np.isfinite(np.asarray(b_clustered))]
ax.hist(np.log10(finite), bins=30, alpha=0.6, label="after SA clustering (finite rows)")
ax.axvline(np.log10(law), color="k", ls="--", label="sphere_cosine law")
ax.set(xlabel="log10 beta*_n per query", ylabel="queries", title="beta*_n of particle rows")
ax.legend()
print(f"median beta*_n uniform {float(jnp.median(b_uniform)):.1f} vs law {law:.1f}")
