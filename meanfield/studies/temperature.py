"""Study of the critical inverse temperature across score families (docs/design.md, section 3).

For each family and each n on a grid (2^8 ... 2^22 by default), sample many score rows
(streamed in chunks of at most ``chunk`` elements, so memory stays bounded), measure

* beta*_n = max_k log k / Delta_(k) per row (median, quartiles over rows),
* the implicit scales beta(p_max = 1/2) and beta(H = theta log n) (median over rows),

and compare with the leading-order law `predicted_critical_beta(family, n)`: the ratio
measured / predicted should approach 1 as n grows (slowly: the laws are asymptotic). The
entropy curves H(beta)/log n plotted against beta / predicted scale should collapse onto
one curve across n for each family.

Pure functions returning dicts of Python floats and lists (JSON-ready); the figure
functions import matplotlib lazily and use the Agg backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..temperature import (
    beta_at_entropy_fraction,
    beta_at_pmax_half,
    critical_beta,
    predicted_critical_beta,
    sample_scores,
    softmax_curves,
)

__all__ = [
    "DEFAULT_CONFIGS",
    "collapse_curves",
    "law_table",
    "measure_family",
    "plot_collapse",
    "plot_ratios",
    "run_study",
]

#: (label, family, params) of the families studied by default.
DEFAULT_CONFIGS: tuple[tuple[str, str, dict], ...] = (
    ("gaussian", "gaussian", {"sigma": 1.0}),
    ("weibull p=3", "weibull", {"p": 3.0}),
    ("weibull p=1.5", "weibull", {"p": 1.5}),
    ("planted simplex rho=0.5", "planted_simplex", {"rho": 0.5}),
    ("finite endpoint c=1", "finite_endpoint", {"c": 1.0}),
    ("sphere cosine d=3", "sphere_cosine", {"d": 3}),
    ("sphere cosine d=5", "sphere_cosine", {"d": 5}),
    ("gumbel", "gumbel", {}),
    ("exponential", "exponential", {}),
    ("uniform", "uniform", {}),
)


def _rows_for(n: int, rows: int, elements: int, max_rows: int) -> int:
    """Rows at size n: at least `rows`, more for small n up to `elements` in total."""
    return int(max(rows, min(max_rows, elements // n)))


def measure_family(
    family: str,
    params: dict,
    ns: Sequence[int],
    key,
    *,
    rows: int = 16,
    elements: int = 2**24,
    max_rows: int = 4096,
    implicit_rows: int = 64,
    theta: float = 0.5,
    chunk: int = 2**23,
    dtype=jnp.float32,
) -> dict:
    """Measured beta*_n and implicit scales against the law, for every n in `ns`.

    Returns a dict with lists over n: ``n``, ``rows``, ``predicted``, ``beta_star_median``,
    ``beta_star_q25``, ``beta_star_q75``, ``beta_star_mean`` (of the finite values),
    ``ratio`` (median / predicted), ``ratio_q25``, ``ratio_q75``, ``pmax_half_ratio`` and
    ``entropy_ratio`` (median implicit scales / predicted, on up to `implicit_rows` rows),
    ``seconds``. Rows are sampled and processed in chunks of at most `chunk` scores.
    """
    out: dict[str, list] = {
        k: []
        for k in (
            "n",
            "rows",
            "predicted",
            "beta_star_median",
            "beta_star_q25",
            "beta_star_q75",
            "beta_star_mean",
            "ratio",
            "ratio_q25",
            "ratio_q75",
            "pmax_half_ratio",
            "entropy_ratio",
            "seconds",
        )
    }
    for i, n in enumerate(ns):
        t0 = time.perf_counter()
        n = int(n)
        total = _rows_for(n, rows, elements, max_rows)
        per_chunk = max(1, min(total, chunk // n))
        betas, pmax_half, ent = [], [], []
        done = 0
        kn = jr.fold_in(key, i)
        while done < total:
            m = min(per_chunk, total - done)
            s = sample_scores(
                family, jr.fold_in(kn, done), n, rows=per_chunk, dtype=dtype, **params
            )
            s = s[:m]
            betas.append(np.asarray(critical_beta(s), dtype=np.float64))
            if done < implicit_rows:
                k = min(m, implicit_rows - done)
                pmax_half.append(np.asarray(beta_at_pmax_half(s[:k]), dtype=np.float64))
                ent.append(np.asarray(beta_at_entropy_fraction(s[:k], theta), dtype=np.float64))
            done += m
        b = np.concatenate(betas)
        pred = float(predicted_critical_beta(family, n, **params))
        q25, med, q75 = np.quantile(b, [0.25, 0.5, 0.75])
        finite = b[np.isfinite(b)]
        out["n"].append(n)
        out["rows"].append(int(total))
        out["predicted"].append(pred)
        out["beta_star_median"].append(float(med))
        out["beta_star_q25"].append(float(q25))
        out["beta_star_q75"].append(float(q75))
        out["beta_star_mean"].append(float(finite.mean()) if finite.size else math.inf)
        out["ratio"].append(float(med / pred))
        out["ratio_q25"].append(float(q25 / pred))
        out["ratio_q75"].append(float(q75 / pred))
        out["pmax_half_ratio"].append(float(np.median(np.concatenate(pmax_half)) / pred))
        out["entropy_ratio"].append(float(np.median(np.concatenate(ent)) / pred))
        out["seconds"].append(time.perf_counter() - t0)
    return out


def collapse_curves(
    family: str,
    params: dict,
    ns: Sequence[int],
    key,
    *,
    rows: int = 8,
    x_max: float = 4.0,
    points: int = 96,
    dtype=jnp.float32,
    chunk: int = 2**23,
) -> dict:
    """Mean over rows of H(beta) / log n and of p_max on beta = x * predicted(n), x in [0, x_max].

    Returns ``{"x": [...], "n": [...], "h": [[...] per n], "p_max": [[...] per n]}``; if the
    law captures the critical scale the curves for different n collapse onto one. (For the
    power-law endpoint families, sphere_cosine and uniform, H / log n falls at beta ~ O(1),
    far below beta*_n ~ n^(1/a): the entropy measures the bulk, beta*_n the top competitors,
    whose collapse shows in p_max.)
    """
    x = np.linspace(0.0, x_max, points)
    curves, pmax = [], []
    for i, n in enumerate(ns):
        n = int(n)
        pred = float(predicted_critical_beta(family, n, **params))
        betas = jnp.asarray(x * pred, dtype=dtype)
        per_chunk = max(1, min(rows, chunk // n))
        acc, acc_p, done = np.zeros(points), np.zeros(points), 0
        while done < rows:
            m = min(per_chunk, rows - done)
            s = sample_scores(
                family,
                jr.fold_in(jr.fold_in(key, i), done),
                n,
                rows=per_chunk,
                dtype=dtype,
                **params,
            )[:m]
            c = softmax_curves(s, betas)
            acc += np.asarray(c.entropy, dtype=np.float64).sum(axis=0)
            acc_p += np.asarray(c.p_max, dtype=np.float64).sum(axis=0)
            done += m
        curves.append(list(acc / rows / math.log(n)))
        pmax.append(list(acc_p / rows))
    return {"x": list(x), "n": [int(n) for n in ns], "h": curves, "p_max": pmax}


def run_study(
    ns: Sequence[int] | None = None,
    *,
    configs: Sequence[tuple[str, str, dict]] = DEFAULT_CONFIGS,
    rows: int = 16,
    elements: int = 2**24,
    implicit_rows: int = 64,
    collapse_ns: Sequence[int] | None = None,
    collapse_rows: int = 8,
    seed: int = 0,
    dtype=jnp.float32,
    verbose: bool = True,
) -> dict:
    """Run `measure_family` and `collapse_curves` for every configuration.

    Defaults: n = 2^8, 2^10, ..., 2^22; collapse curves at four n spread over that range.
    Returns ``{"ns": ..., "families": {label: {"family", "params", "laws", "collapse"}}}``.
    """
    ns = [2**k for k in range(8, 23, 2)] if ns is None else [int(n) for n in ns]
    if collapse_ns is None:
        collapse_ns = sorted({ns[0], ns[len(ns) // 3], ns[(2 * len(ns)) // 3], ns[-1]})
    key = jr.PRNGKey(seed)
    result = {"ns": ns, "dtype": jnp.dtype(dtype).name, "families": {}}
    for j, (label, family, params) in enumerate(configs):
        t0 = time.perf_counter()
        kf = jr.fold_in(key, j)
        laws = measure_family(
            family,
            params,
            ns,
            jr.fold_in(kf, 0),
            rows=rows,
            elements=elements,
            implicit_rows=implicit_rows,
            dtype=dtype,
        )
        collapse = collapse_curves(
            family, params, collapse_ns, jr.fold_in(kf, 1), rows=collapse_rows, dtype=dtype
        )
        result["families"][label] = {
            "family": family,
            "params": params,
            "laws": laws,
            "collapse": collapse,
        }
        if verbose:
            r = laws["ratio"]
            print(
                f"{label:<26} ratio {r[0]:.3f} (n={ns[0]}) -> {r[-1]:.3f} (n={ns[-1]})"
                f"   [{time.perf_counter() - t0:.1f} s]",
                flush=True,
            )
    return result


def law_table(study: dict) -> list[dict]:
    """One row per family: n range, measured/predicted ratio at the smallest and largest n,
    and the implicit-scale ratios at the largest n."""
    table = []
    for label, fam in study["families"].items():
        laws = fam["laws"]
        table.append(
            {
                "family": label,
                "n_min": laws["n"][0],
                "n_max": laws["n"][-1],
                "rows_at_n_max": laws["rows"][-1],
                "ratio_n_min": laws["ratio"][0],
                "ratio_n_max": laws["ratio"][-1],
                "pmax_half_ratio_n_max": laws["pmax_half_ratio"][-1],
                "entropy_ratio_n_max": laws["entropy_ratio"][-1],
            }
        )
    return table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ratios(study: dict, path: str) -> str:
    """Median beta*_n / predicted (with quartile band) against log n, one line per family."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, fam in study["families"].items():
        laws = fam["laws"]
        logn = np.log(laws["n"])
        (line,) = ax.plot(logn, laws["ratio"], marker="o", ms=3, label=label)
        ax.fill_between(
            logn, laws["ratio_q25"], laws["ratio_q75"], color=line.get_color(), alpha=0.08
        )
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("log n")
    ax.set_ylabel(r"median $\beta^*_n$ / predicted law")
    ax.set_title("Critical inverse temperature: measured / predicted (band: quartiles)")
    ax.set_ylim(0.0, 2.0)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_collapse(study: dict, path: str, quantity: str = "h") -> str:
    """H(beta)/log n (``quantity="h"``) or p_max (``"p_max"``) against beta / predicted scale,
    one panel per family, one line per n."""
    plt = _pyplot()
    fams = list(study["families"].items())
    cols = min(5, len(fams))
    nrows = -(-len(fams) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.7 * nrows), squeeze=False)
    for ax, (label, fam) in zip(axes.ravel(), fams, strict=False):
        col = fam["collapse"]
        for n, h in zip(col["n"], col[quantity], strict=True):
            ax.plot(col["x"], h, label=f"n=2^{int(round(math.log2(n)))}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(r"$\beta$ / predicted", fontsize=8)
        ax.set_ylabel(r"$H / \log n$" if quantity == "h" else r"$p_{max}$", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(fams) :]:
        ax.axis("off")
    what = "H(beta)/log n" if quantity == "h" else "p_max(beta)"
    fig.suptitle(f"Collapse: {what} vs beta / law(n)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
