"""The README's main job: a tour that writes real figures and numbers (`meanfield demo`).

Every section is a saved run of one `meanfield` subcommand in its own sub-folder (so
`meanfield rerun demo_out/circle` reproduces one section and `meanfield rerun demo_out`
all of them); the demo folder adds summary.json (all results, the headline numbers and
the wall time) and report.md (the figures with a sentence each).

1. circle       SA, attractive, beta = 6 on S^1: clustering and metastability (angles,
                snapshots, energy staircase, GIF).
2. sphere       the same on S^2.
3. certify_d2   repulsive USA + GELU perceptron (shifted kernel, beta = 5) on S^1: flow to
   certify_d3   stationarity, cluster, Newton-refine (float64) and certify the atoms; S^2
                (--quick: d = 3 only, and no GIF).
4. sweep_attractive  seeds x betas ensembles of SA on S^1: the (t, beta) phase diagram.
5. sweep_repulsive   the repulsive perceptron model over beta: largest cluster mass against
                the d = 2 mass bound and its limit 0.5742.
6. temperature  entropy curves H(beta)/log n of six score families and beta*_n versus laws.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax

FULL = {
    "circle": ("simulate", dict(d=2, n=64, beta=6.0, steps=3000, save_every=10, animate=True)),
    "sphere": ("simulate", dict(d=3, n=256, beta=9.0, steps=2000, save_every=20)),
    "certify_d2": ("critical", dict(d=2, n=64, beta=5.0, max_steps=30000)),
    "certify_d3": ("critical", dict(d=3, n=256, beta=5.0, max_steps=20000)),
    "sweep_attractive": (
        "sweep",
        dict(d=2, n=64, seeds=8, betas=[0.5, 1, 2, 4, 8, 16, 32], steps=2000, save_every=20),
    ),
    "sweep_repulsive": (
        "sweep",
        dict(
            d=2,
            n=128,
            seeds=4,
            betas=[0.1, 0.5, 1, 3, 5, 10, 25, 50],
            steps=3000,
            save_every=30,
            sign=-1,
            attention="usa",
            activation="gelu",
            shift_kernel=True,
        ),
    ),
    "temperature": ("temperature", dict(ns=[256, 4096, 65536], rows=32)),
}

QUICK = {
    "circle": ("simulate", dict(d=2, n=32, beta=6.0, steps=600, save_every=10)),
    "sphere": ("simulate", dict(d=3, n=64, beta=9.0, steps=400, save_every=20)),
    "certify_d3": ("critical", dict(d=3, n=64, beta=5.0, max_steps=3000)),
    "sweep_attractive": (
        "sweep",
        dict(d=2, n=24, seeds=3, betas=[1, 4, 16], steps=400, save_every=20),
    ),
    "sweep_repulsive": (
        "sweep",
        dict(
            d=2,
            n=32,
            seeds=2,
            betas=[0.5, 5, 50],
            steps=600,
            save_every=30,
            sign=-1,
            attention="usa",
            activation="gelu",
            shift_kernel=True,
        ),
    ),
    "temperature": (
        "temperature",
        dict(families=["gaussian", "planted_simplex:rho=0.5"], ns=[256, 1024], rows=8, points=48),
    ),
}


def _headline(sections: dict) -> dict:
    """The numbers worth a glance, from every section's results."""
    c, s = sections["circle"], sections["sphere"]
    out = {
        "circle_clusters_final": c["clusters_final"],
        "circle_energy": [c["energy_initial"], c["energy_final"]],
        "sphere_clusters_final": s["clusters_final"],
        "sphere_energy": [s["energy_initial"], s["energy_final"]],
    }
    for d in (2, 3):
        r = sections.get(f"certify_d{d}")
        if r is None:  # --quick certifies d = 3 only
            continue
        out[f"certified_d{d}"] = {
            "atoms": r["atoms"],
            "masses": [round(m, 4) for m in r["masses"]],
            "residual": r["residual"],
            "strictly_stable": r["strictly_stable"],
        }
    a, r = sections["sweep_attractive"], sections["sweep_repulsive"]
    out["attractive_clusters_vs_beta"] = dict(
        zip(map(str, a["betas"]), [round(v, 2) for v in a["clusters_final_mean"]], strict=True)
    )
    out["repulsive_largest_mass_vs_beta"] = dict(
        zip(map(str, r["betas"]), [round(v, 3) for v in r["largest_mass_max"]], strict=True)
    )
    out["mass_bound_limit"] = r["mass_bound_limit"]
    out["critical_beta_ratio_at_largest_n"] = {
        k: round(v["ratio"][-1], 3) for k, v in sections["temperature"]["families"].items()
    }
    return out


def _figures(section: dict, name: str) -> str:
    """Markdown image links for every PNG of a section (GIFs as links)."""
    lines = []
    for f in section.get("files", []):
        path = f"{name}/{f}"
        stem = f.rsplit(".", 1)[0]
        lines.append(f"![{stem}]({path})" if f.endswith(".png") else f"Animation: [{f}]({path})")
    return "\n".join(lines)


def _cert_row(d: int, r: dict) -> str:
    masses = ", ".join(f"{m:.3f}" for m in r["masses"][:8]) + (" ..." if r["atoms"] > 8 else "")
    return (
        f"| {d} | {r['atoms']} | {masses} | {r['residual_before_newton']:.1e} -> "
        f"{r['residual']:.1e} | {r['stable']} | {r['strictly_stable']} |"
    )


def _text(name: str, plan: dict, sections: dict) -> str:
    """The heading and one paragraph of numbers for a section."""
    r, v = sections[name], plan[name][1]
    if name in ("circle", "sphere"):
        where = "the circle S^1" if name == "circle" else "the sphere S^2"
        return (
            f"## Clustering on {where} (SA, attractive, beta = {v['beta']:g}, n = {v['n']})\n"
            "Particles gather into a few clusters quickly, which then merge on much longer "
            "time scales: the energy climbs in a staircase of metastable plateaus "
            f"({r['energy_initial']:.3f} -> {r['energy_final']:.3f}); {r['clusters_final']} "
            f"cluster(s) at t = {r['t_final']:g}."
        )
    if name.startswith("certify"):
        head = (
            ""
            if name != _first(plan, "certify")
            else (
                "## Certified atoms (repulsive USA + GELU perceptron, shifted kernel)\n"
                "The flow stops at max speed <= 1e-4; the particles are clustered (tolerance "
                "0.1/sqrt(beta)), Newton-refined in float64 and certified by the splitting and "
                "transport Hessians (docs/design.md, section 2).\n\n"
                "| d | atoms | masses | residual before -> after Newton | stable "
                "| strictly stable |\n"
                "| --- | --- | --- | --- | --- | --- |\n"
            )
        )
        return head + _cert_row(r["d"], r)
    if name == "sweep_attractive":
        return (
            f"## Phase diagram of cluster counts (SA on S^1, {v['seeds']} seeds per beta)\n"
            "Mean number of clusters over time and beta: small beta collapses to one cluster "
            "fast, large beta holds many metastable clusters for a long time. Final means: "
            + ", ".join(
                f"beta {b:g}: {c:.1f}"
                for b, c in zip(r["betas"], r["clusters_final_mean"], strict=True)
            )
            + "."
        )
    if name == "sweep_repulsive":
        return (
            "## Largest cluster versus beta (repulsive USA + GELU perceptron on S^1)\n"
            f"Largest cluster mass at t = {r['t_final']:g} over {v['seeds']} seeds, against "
            "the mass bound of stable critical points (clipped at 1) and its limit "
            f"16/(16+3e^(11/8)) = {r['mass_bound_limit']:.4f}; largest measured "
            f"{max(r['largest_mass_max']):.3f}."
        )
    fams = r["families"]
    first = next(iter(fams.values()))
    return (
        "## Critical inverse temperature of softmax rows\n"
        f"H(beta)/log n for n = {', '.join(map(str, first['n']))}: each row goes from spread "
        "to one-hot around beta*_n (dots: median measured beta*_n, dashed: the law). "
        f"Measured/predicted at n = {first['n'][-1]}: "
        + ", ".join(f"{k} {f['ratio'][-1]:.2f}" for k, f in fams.items())
        + " (the laws are leading order: ratios approach 1 slowly, in log n)."
    )


def _first(plan: dict, prefix: str) -> str:
    return next(k for k in plan if k.startswith(prefix))


def _report(out: Path, cfg: dict, plan: dict, sections: dict, seconds: float) -> str:
    head = (
        "# meanfield demo\n\n"
        f"{jax.devices()[0]}, JAX {jax.__version__}, "
        f"{'float64' if cfg['x64'] else 'float32'}, seed {cfg['seed']}; {seconds:.1f} s in "
        f"total{' (--quick sizes)' if cfg['quick'] else ''}. Every section is a saved run "
        f"(config.json, arrays.npz, results.json) that `meanfield rerun {out.name}/<section>` "
        "reproduces bit for bit on this machine.\n"
    )
    parts = [head]
    names = list(plan)
    for i, name in enumerate(names):
        parts.append(_text(name, plan, sections))
        last_of_group = i + 1 == len(names) or names[i + 1].split("_")[0] != name.split("_")[0]
        if name.startswith("certify") and not last_of_group:
            continue
        group = [k for k in names if k.split("_")[0] == name.split("_")[0]]
        if not name.startswith("certify"):
            group = [name]
        parts.append("\n" + "\n".join(_figures(sections[k], k) for k in group) + "\n")
    return "\n".join(parts)


def run_demo(cfg: dict, out, quiet: bool = False, *, execute) -> tuple[dict, dict]:
    """Run every section into `out/<section>`, then write summary.json and report.md.

    `cfg` is the resolved demo config (quick, seed, x64, device, plots); `execute(command,
    values, folder, quiet=)` runs one workflow into a saved run (the runs layer passes its
    own, so this module does not import it back; see `workflows.Workflow`). Returns
    (arrays, results) for the demo's own saved run (the arrays live in the sections).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan = QUICK if cfg["quick"] else FULL
    shared = {k: cfg[k] for k in ("seed", "x64", "device", "plots")}
    sections, timings, files = {}, {}, []
    for i, (name, (command, values)) in enumerate(plan.items()):
        if not quiet:
            print(f"[{i + 1}/{len(plan)}] {name}: meanfield {command}", flush=True)
        t0 = time.perf_counter()
        run = execute(command, {**values, **shared}, out / name, quiet=quiet)
        timings[name] = time.perf_counter() - t0
        sections[name] = run.results
        files += [f"{name}/{f}" for f in run.results.get("files", [])]
    seconds = time.perf_counter() - start
    files += ["summary.json", "report.md"]
    results = {
        "headline": _headline(sections),
        "sections": sections,
        "files": files,
        "meta": {
            "seconds": seconds,
            "section_seconds": timings,
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "seed": cfg["seed"],
            "quick": cfg["quick"],
        },
    }
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    if cfg["plots"]:
        (out / "report.md").write_text(_report(out, cfg, plan, sections, seconds))
    return {}, results
