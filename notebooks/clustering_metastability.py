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
# # Clustering and metastability
#
# Under softmax self-attention (SA, attractive, s = +1) particles on the sphere gather
# into clusters within a time of order one, and the clusters then merge on time scales
# that grow quickly with beta: the number of clusters and the energy move in a staircase
# of long metastable plateaus (Geshkovski, Letrouit, Polyanskiy, Rigollet, arXiv
# 2312.10794). We watch it on the circle, count clusters in time, draw the (t, beta)
# phase diagram from one jitted ensemble, and look at S^2. `MEANFIELD_NB_N` sets n.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import meanfield as mf

N = int(os.environ.get("MEANFIELD_NB_N", 64))
key = jax.random.PRNGKey(0)
kx, ks = jax.random.split(key)

# %% [markdown]
# ## One trajectory on the circle
# beta = 6: clusters form by t ~ 7, then pairs of clusters merge after long plateaus.

# %%
model = mf.MeanField(6.0, sign=1, attention="sa")
X0 = mf.uniform_sphere(kx, N, 2)
traj = mf.integrate(model, X0, dt=0.1, steps=2000, save_every=10)
energy = jax.vmap(model.energy)(traj.xs)
# Count clusters at every saved time: vmap over the saves of a jit-friendly clustering.
m = jnp.full((N,), 1.0 / N)
counts = jax.vmap(lambda X: mf.atoms.cluster_padded(X, m, 0.04).count)(traj.xs)

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
mf.plot.circle_trajectory(traj, ax=axes[0], title="Angles on S^1 (SA, beta = 6)")
mf.plot.energy_curve(traj.ts, energy, ax=axes[1], title="Energy staircase")
axes[2].step(np.asarray(traj.ts), np.asarray(counts), where="post")
axes[2].set(xlabel="time t", ylabel="number of clusters", title="Clusters over time", yscale="log")
fig.tight_layout()
print(
    "clusters at the end:", int(counts[-1]), "| energy", float(energy[0]), "->", float(energy[-1])
)

# %% [markdown]
# Snapshots at chosen times (nearest saved states):

# %%
fig = mf.plot.snapshots(traj, times=[0, 2, 5, 200], title="SA on the circle, beta = 6")

# %% [markdown]
# ## The (t, beta) phase diagram
# `ensemble` runs seeds x betas in one compiled program (beta is a traced value). For each
# beta we count clusters at every save, with the tolerance 0.1 / sqrt(beta).

# %%
betas = jnp.asarray([1.0, 2.0, 4.0, 8.0, 16.0])
seeds = 3
ens = mf.ensemble(
    model, ks, n=max(N // 2, 8), d=2, seeds=seeds, dt=0.1, steps=600, save_every=20, betas=betas
)
n_small = ens.xs.shape[-2]
m_small = jnp.full((n_small,), 1.0 / n_small)


def count(X, beta):
    return mf.atoms.cluster_padded(X, m_small, jnp.minimum(0.1 / jnp.sqrt(beta), 0.2)).count


per_beta = jax.vmap(lambda xs, b: jax.vmap(jax.vmap(lambda X: count(X, b)))(xs))
phase = per_beta(ens.xs, betas)  # (betas, seeds, saves)
fig = mf.plot.phase_diagram(
    ens.ts[0, 0], betas, phase, label="clusters", log=True, title="SA on S^1: clusters, (t, beta)"
)
print("mean clusters at the end per beta:", np.asarray(phase[:, :, -1].mean(1)))

# %% [markdown]
# ## On the sphere S^2
# The same dynamics in d = 3; the cosine similarities concentrate near 1 (inside clusters)
# and at the cosines between cluster centres.

# %%
sa3 = mf.MeanField(9.0, sign=1, attention="sa")
traj3 = mf.integrate(sa3, mf.uniform_sphere(ks, 2 * N, 3), dt=0.1, steps=600, save_every=20)
fig = mf.plot.snapshots(traj3, panels=3, title="SA on S^2, beta = 9")
fig = mf.plot.cosine_histogram(traj3.xs[0], label="t = 0")
mf.plot.cosine_histogram(traj3.final, ax=fig.axes[0], label=f"t = {float(traj3.ts[-1]):g}")
print("clusters on S^2:", int(mf.cluster(traj3.final, tol=0.05).count))
