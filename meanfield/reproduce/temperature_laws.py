"""temperature-laws: the scaling laws of the critical inverse temperature beta*_n of
Karakida and Hayase, "A Unified Framework for Critical Scaling of Inverse Temperature in
Self-Attention", arXiv 2605.12697, measured against n for six score families.

Setup (the paper's, as stated; it has no public code): for each family, rows of n
i.i.d. scores (`mf.sample_scores`), beta*_n = max_k log k / Delta_(k) per row
(`mf.critical_beta`), its median over rows divided by the leading-order law
(`mf.predicted_critical_beta`):

    gaussian             sqrt(2 log n)              weibull p = 3      (p) (log n)^(2/3)
    planted simplex 0.5  log n / (1 - rho)          finite endpoint 1  (log n)^2 / c
    sphere cosine d = 3  kappa (C n)^(2/(d-1))      uniform            kappa n

"theirs" is the law (ratio 1 in the limit); the difference is ratio - 1, which must
shrink as n grows (slowly: the laws are asymptotic, in log n for the Gumbel-domain
families). float64, seed 0, rows = max(64, 2^22 / n) (quick: max(16, 2^12 / n)).
"""

from __future__ import annotations

import jax.random as jr
import numpy as np

import meanfield as mf

from ._report import Result, Row, pyplot

FAMILIES = (
    ("gaussian", "gaussian", {}),
    ("weibull p=3", "weibull", {"p": 3.0}),
    ("planted simplex rho=0.5", "planted_simplex", {"rho": 0.5}),
    ("finite endpoint c=1", "finite_endpoint", {"c": 1.0}),
    ("sphere cosine d=3", "sphere_cosine", {"d": 3}),
    ("uniform", "uniform", {}),
)
QUICK_FAMILIES = ("gaussian", "sphere cosine d=3")
NS = (2**8, 2**10, 2**12, 2**14, 2**16, 2**18)
QUICK_NS = (2**6, 2**8)
ELEMENTS = 2**22


def measure(family: str, params: dict, ns, key, *, elements: int = ELEMENTS, min_rows=64):
    """Median beta*_n, quartiles and the law for every n; lists over n."""
    out = dict(n=[], rows=[], median=[], q25=[], q75=[], law=[], ratio=[])
    for i, n in enumerate(ns):
        rows = max(min_rows, elements // int(n))
        s = mf.sample_scores(family, jr.fold_in(key, i), int(n), rows=rows, **params)
        b = np.asarray(mf.critical_beta(s), dtype=np.float64)
        q25, med, q75 = np.quantile(b, [0.25, 0.5, 0.75])
        law = float(mf.predicted_critical_beta(family, int(n), **params))
        for k, v in zip(out, (int(n), rows, med, q25, q75, law, med / law), strict=True):
            out[k].append(float(v) if k not in ("n", "rows") else int(v))
    return out


def figure(results: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, r in results.items():
        ax.plot(np.log2(r["n"]), r["ratio"], "o-", ms=3, label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("log2 n")
    ax.set_ylabel("median beta*_n / law")
    ax.set_ylim(0, 2)
    ax.legend(fontsize=8)
    ax.set_title("arXiv 2605.12697: measured beta*_n over the predicted law")
    return fig


def run(quick: bool = False) -> Result:
    """The entry. Full: the six families, n = 2^8 ... 2^18; quick: two of them (a law in
    sqrt(log n) and a power of n), n = 2^6, 2^8, fewer rows.

    **Returns:** a `Result` (rows: ratio per family and n, theirs = 1).
    """
    ns = QUICK_NS if quick else NS
    elements = 2**12 if quick else ELEMENTS
    key = jr.PRNGKey(0)
    families = [f for f in FAMILIES if not quick or f[0] in QUICK_FAMILIES]
    results = {
        label: measure(
            fam, prm, ns, jr.fold_in(key, j), elements=elements, min_rows=16 if quick else 64
        )
        for j, (label, fam, prm) in enumerate(families)
    }
    rows: list[Row] = []
    for label, r in results.items():
        for n, med, law in zip(r["n"], r["median"], r["law"], strict=True):
            rows.append(Row(label, f"n = {n}: median beta*_n (law {law:.4g})", med, law))
        rows.append(Row(label, "abs(ratio - 1) at the largest n", abs(r["ratio"][-1] - 1)))
        rows.append(
            Row(
                label,
                "abs(ratio - 1) shrinks from the smallest to the largest n",
                bool(abs(r["ratio"][-1] - 1) <= abs(r["ratio"][0] - 1)),
            )
        )
    notes = [
        "No peer code: the reference is the law itself; the laws are leading-order, so "
        "the ratios approach 1 slowly and never exactly at finite n.",
        "Constants kappa of the endpoint families are mf.temperature.endpoint_law_constant "
        "(the median of the limit law), so the median ratio tends to 1.",
    ]
    summary = {label: dict(n=r["n"], ratio=r["ratio"]) for label, r in results.items()}
    return Result(
        rows=rows,
        summary=summary,
        notes=notes,
        arrays={"n": np.asarray(ns)}
        | {f"ratio_{fam}": np.asarray(results[lab]["ratio"]) for lab, fam, _ in families},
        figures={"temperature_laws.png": figure(results)},
        config=dict(ns=list(ns), elements=elements, seed=0, families=[f[0] for f in families]),
    )
