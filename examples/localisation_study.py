"""Reproduce the localisation study of Alvarez-Lopez, Geshkovski and Ruiz-Balet (2026).

    python examples/localisation_study.py --out study_out            # full grid, both kernels
    python examples/localisation_study.py --out study_out --quick    # < 90 s on a 2-core CPU

Writes localisation_study.json (every run), localisation_study.md (table) and
localisation_study.png (atoms and largest cluster mass versus beta, bound drawn).
"""

import argparse
import time

import jax

from meanfield.studies.localisation import PAPER_BETAS, QUICK_BETAS, run_study


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="localisation_out", help="output directory")
    parser.add_argument("--quick", action="store_true", help="n=200, 5 betas, 2 seeds, d=2,3")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="dimensions d")
    parser.add_argument("--seeds", type=int, default=None, help="particle seeds per beta")
    parser.add_argument("--n", type=int, default=None, help="particles (paper: 1000)")
    parser.add_argument("--max-steps", type=int, default=None, help="Euler step cap")
    parser.add_argument(
        "--shift-kernel",
        choices=["both", "true", "false"],
        default="both",
        help="kernel convention: exp(beta(<x,y>-1)) (true), exp(beta<x,y>) (false), or both",
    )
    parser.add_argument(
        "--perceptron",
        choices=["authors", "jax"],
        default="authors",
        help="perceptron draw: the paper's code (default_rng(777)) or Perceptron.random",
    )
    parser.add_argument("--float64", action="store_true", help="enable jax_enable_x64")
    args = parser.parse_args(argv)
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    quick = args.quick
    dims = args.dims or ([2, 3] if quick else [2, 3, 8])
    seeds = args.seeds or (2 if quick else 3)
    n = args.n or (200 if quick else 1000)
    max_steps = args.max_steps or (4000 if quick else 20_000)
    conventions = {"both": (True, False), "true": (True,), "false": (False,)}[args.shift_kernel]
    betas = QUICK_BETAS if quick else PAPER_BETAS
    t0 = time.perf_counter()
    run_study(
        args.out,
        dims=dims,
        betas=betas,
        seeds=seeds,
        n=n,
        conventions=conventions,
        max_steps=max_steps,
        perceptron=args.perceptron,
    )
    print(f"total wall time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
