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
# # Getting started with meanfield
#
# Particles x_1..x_n on the sphere S^{d-1} interacting through self-attention. We build a
# model, integrate its flow, check that the energy increases, and look at the clusters.
# Sizes are small so the notebook runs in seconds; raise `N` for real studies.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import meanfield as mf

N = int(os.environ.get("MEANFIELD_NB_N", 64))
key = jax.random.PRNGKey(0)

# %% [markdown]
# ## Unnormalised attention (USA) is the gradient ascent of the energy
#
# F_s[mu] = (s / 2 beta) iint exp(beta <x, y>) dmu dmu + (1/2) int v dmu. With a random
# GELU perceptron and repulsion (s = -1), the energy must be non-decreasing.

# %%
k1, k2 = jax.random.split(key)
perceptron = mf.Perceptron.random(k1, 3, activation="gelu")
model = mf.MeanField(2.0, sign=-1, attention="usa", perceptron=perceptron)
X0 = mf.uniform_sphere(k2, N, 3)
traj = mf.integrate(model, X0, dt=0.02, steps=500, method="rk4", save_every=10)
energy = jax.vmap(model.energy)(traj.xs)
assert bool(jnp.all(jnp.diff(energy) >= -1e-5 * jnp.abs(energy).max()))
print(f"energy {float(energy[0]):.4f} -> {float(energy[-1]):.4f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
mf.plot.energy_curve(traj.ts, energy, ax=axes[0], title="Energy along the USA flow")
mf.plot.cosine_histogram(traj.final, ax=axes[1], title="Final cosine similarities")
fig.tight_layout()

# %% [markdown]
# ## Softmax attention (SA) on the circle: clustering and metastability

# %%
sa = mf.MeanField(9.0, sign=1, attention="sa")
traj2 = mf.integrate(sa, mf.uniform_sphere(key, N, 2), dt=0.1, steps=1000, save_every=10)
fig = mf.plot.circle_trajectory(traj2, title="SA on the circle, beta = 9")

# %% [markdown]
# ## A beta sweep compiles once
# `ensemble` vmaps over seeds and betas; the result has shape (betas, seeds, saves, n, d).

# %%
betas = jnp.geomspace(0.3, 20.0, 6)
ens = mf.ensemble(sa, key, n=16, d=2, seeds=4, dt=0.1, steps=200, betas=betas)
order = jnp.sum(ens.final.mean(axis=2) ** 2, axis=-1)  # |mean x|^2 per (beta, seed)
print(ens.xs.shape)
fig = mf.plot.sweep_curve(betas, order.mean(1), ylabel="|mean x|^2", title="Order vs beta")
