"""Figures of the transformer diagnostics (matplotlib, imported when a figure is drawn):
`plot_diagnostics` (beta*_n against n per head, entropy collapse, the particle view) and
`plot_long_context` (the long-context sweep of a decoder).
"""

from __future__ import annotations

import math

import numpy as np

from ._long_context import LAW_NAMES, fit_laws
from ._text import STDLIB_MODULES, stdlib_text  # noqa: F401  (re-exported)


def plot_diagnostics(summary: dict) -> dict:
    """Matplotlib figures from `run_diagnostics` output: ratio heatmap, entropy curves,
    growth of beta*_n with n, particle view. Returns {name: Figure}."""
    import matplotlib.pyplot as plt

    arr = summary["_arrays"]
    beta = arr["beta"]
    figs = {}

    # 1. beta*_n / beta_model heatmap.
    ratio = arr["ratio"]
    fig, ax = plt.subplots(figsize=(9, 4))
    im = ax.imshow(np.log2(ratio), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
    for (li, a), v in np.ndenumerate(ratio):
        ax.text(a, li, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(
        f"median beta*_n / beta_model at n = {int(arr['ns'][-1])} (<1: head above critical)"
    )
    fig.colorbar(im, ax=ax, label="log2 ratio")
    fig.tight_layout()
    figs["critical_ratio"] = fig

    # 2. entropy curves.
    curves, grid = arr["curves"], arr["beta_grid"]
    L, H = curves.shape[:2]
    fig, axes = plt.subplots(2, math.ceil(L / 2), figsize=(12, 6), sharex=True, sharey=True)
    cmap = plt.get_cmap("viridis")
    for li, ax in enumerate(np.ravel(axes)[:L]):
        for a in range(H):
            ax.semilogx(grid, curves[li, a], color=cmap(a / max(H - 1, 1)), lw=1)
            ax.plot(
                beta * ratio[li, a],
                np.interp(beta * ratio[li, a], grid, curves[li, a]),
                "o",
                color=cmap(a / max(H - 1, 1)),
                ms=3,
            )
        ax.axvline(beta, color="k", ls="--", lw=1, label="beta_model = 1/sqrt(d_h)")
        ax.set_title(f"layer {li}")
        if li == 0:
            ax.legend(fontsize=7)
    for ax in np.ravel(axes):
        ax.set_xlabel("beta (on raw q.k)")
    np.ravel(axes)[0].set_ylabel("H(beta) / log n")
    fig.suptitle("Entropy of attention rows vs beta (dots: median beta*_n of each head)")
    fig.tight_layout()
    figs["entropy_curves"] = fig

    # 3. growth with n.
    ns, bs = arr["ns"], arr["beta_star"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for li in range(bs.shape[1]):
        ax.loglog(ns, np.median(bs[:, li], axis=-1) / beta, "o-", ms=3, label=f"layer {li}")
    if len(arr["causal_keys"]):
        ax.loglog(arr["causal_keys"], arr["causal_median"] / beta, "k--", label="causal (all)")
    fit = summary["growth"]["truncation"]
    if fit is not None:
        nn = np.geomspace(ns[0], ns[-1], 50)
        ax.loglog(
            nn,
            fit["c_log"] * np.log(nn) ** fit["gamma"] / beta,
            "k:",
            label=f"fit (log n)^{fit['gamma']:.2f}",
        )
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xlabel("number of keys n")
    ax.set_ylabel("median beta*_n / beta_model")
    ax.set_title("Growth of the critical scale with sequence length")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["growth"] = fig

    # 4. particle view.
    p = arr["particles"]
    edges = p["bin_edges"]
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for li, s in enumerate(p["model"]):
        axes[0].plot(
            centres, s["hist"], color=cmap(li / max(len(p["model"]) - 1, 1)), label=f"layer {li}"
        )
    axes[0].set_xlabel("cosine similarity of token pairs")
    axes[0].set_ylabel("density")
    axes[0].set_title("MiniLM hidden states on S^383")
    axes[0].legend(fontsize=7)
    layers = np.arange(len(p["model"]))
    axes[1].plot(layers, [s["clusters"] for s in p["model"]], "ko-", label="MiniLM")
    axes[2].plot(layers, [s["largest_mass"] for s in p["model"]], "ko-", label="MiniLM")
    for name, stats in p["flow"].items():
        axes[1].plot(
            layers,
            [s["clusters"] for s in stats[: len(layers)]],
            "s--",
            label=f"SA flow, beta {name}",
        )
        axes[2].plot(
            layers,
            [s["largest_mass"] for s in stats[: len(layers)]],
            "s--",
            label=f"SA flow, beta {name}",
        )
    axes[1].set_ylabel("number of clusters")
    axes[2].set_ylabel("largest cluster mass")
    for ax in axes[1:]:
        ax.set_xlabel("layer l  /  flow time t")
        ax.legend(fontsize=7)
    fig.tight_layout()
    figs["particles"] = fig
    return figs


def plot_long_context(result: dict) -> dict:
    """Figures of `long_context_diagnostics` output: {name: Figure}.

    ``critical_ratio``: heat map of log2(beta_model / beta*_n) per layer and head at the
    longest n; ``beta_star``: beta*_n(n) (median over each layer's heads, and every head
    faintly) with the fitted laws c sqrt(log n), c log n, c (log n)^2 of the median head;
    ``logit_scale``: the recommended s(n) per head and its median, against log-n scaling
    and YaRN's (0.1 ln(n / n_train) + 1)^2.
    """
    import matplotlib.pyplot as plt

    figs = {}
    beta = result["beta_model"]
    ratio = np.asarray(result["ratio_longest"], float)
    L, H = ratio.shape
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * H + 2), max(3, 0.4 * L + 1.5)))
    im = ax.imshow(np.log2(ratio), cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
    if L * H <= 400:
        for (li, a), v in np.ndenumerate(ratio):
            ax.text(a, li, f"{v:.2f}", ha="center", va="center", fontsize=6)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    n_last = float(np.asarray(result["bin_n"])[-1])
    ax.set_title(f"beta_model / beta*_n at n ~ {n_last:.0f} keys (>1: above critical)")
    fig.colorbar(im, ax=ax, label="log2 ratio")
    fig.tight_layout()
    figs["critical_ratio"] = fig

    n = np.asarray(result["bin_n"], float)
    med = np.asarray(result["beta_star_bins"], float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cmap = plt.get_cmap("viridis")
    for li in range(L):
        colour = cmap(li / max(L - 1, 1))
        for a in range(H):
            ax.loglog(n, med[li, a], color=colour, lw=0.4, alpha=0.3)
        ax.loglog(n, np.nanmedian(med[li], axis=0), "o-", ms=3, color=colour, label=f"layer {li}")
    overall = np.nanmedian(med.reshape(-1, n.size), axis=0)
    fit = fit_laws(n, overall)
    nn = np.geomspace(n[0], n[-1], 64)
    laws = {"sqrt_log": np.sqrt(np.log(nn)), "log": np.log(nn), "log_squared": np.log(nn) ** 2}
    for i, name in enumerate(LAW_NAMES):
        c = fit["constants"][i]
        ax.loglog(nn, c * laws[name], "--", lw=1, label=f"{c:.3g} {name} (rms {fit['rms'][i]:.2f})")
    ax.axhline(beta, color="k", lw=0.8, label="beta_model")
    ax.set_xlabel("keys seen by the query, n")
    ax.set_ylabel("beta*_n (median per bin)")
    ax.set_title(f"{result['model']}: critical scale of causal rows")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    figs["beta_star"] = fig

    grid = np.asarray(result["s_grid"], float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    rec = np.asarray(result["s_recommended"], float).reshape(-1, grid.size)
    for row in rec:
        ax.semilogx(grid, row, color="tab:blue", lw=0.4, alpha=0.25)
    ax.semilogx(
        grid,
        result["s_median"],
        color="tab:blue",
        lw=2.5,
        label=f"recommended, median head (gamma = {result['gamma_median']:.2f})",
    )
    ax.semilogx(grid, result["s_log_n"], "k--", label="log-n scaling log n / log n_train")
    ax.semilogx(grid, result["s_yarn"], "r:", lw=2, label="YaRN (0.1 ln(n/n_train) + 1)^2")
    ax.axvline(result["n_train"], color="gray", lw=0.8)
    ax.axvline(result["n_tokens"], color="gray", lw=0.8, ls=":")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("logit scale s(n)")
    ax.set_ylim(0, max(3.0, float(np.nanmax(result["s_median"])) * 1.1))
    ax.set_title("scale keeping each head at its training-length critical ratio")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figs["logit_scale"] = fig
    return figs
