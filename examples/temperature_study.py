"""Critical inverse temperature of softmax rows: measured beta*_n against the laws.

Runs `meanfield.studies.temperature.run_study` over the score families of docs/design.md, section 3,
writes `ratios.png` (median beta*_n / predicted against log n), `collapse.png` (H/log n
against beta / predicted for several n), `collapse_pmax.png` (the same for p_max) and
`temperature_study.json` (all numbers plus the law table), and prints the law table.

    python examples/temperature_study.py --out out/temperature            # n = 2^8 .. 2^22
    python examples/temperature_study.py --out out/temperature --quick    # < 60 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from meanfield.studies.temperature import (  # noqa: E402
    DEFAULT_CONFIGS,
    law_table,
    plot_collapse,
    plot_ratios,
    run_study,
)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Critical inverse temperature study.")
    parser.add_argument("--out", default=os.path.join("out", "temperature"), help="output folder")
    parser.add_argument("--n-max", type=int, default=2**22, help="largest n (default 2^22)")
    parser.add_argument("--n-min", type=int, default=2**8, help="smallest n (default 2^8)")
    parser.add_argument(
        "--rows", type=int, default=16, help="minimum rows per n (more for small n)"
    )
    parser.add_argument("--elements", type=int, default=2**24, help="target scores per n")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small run: n <= 2^16, few rows")
    args = parser.parse_args(argv)

    configs = DEFAULT_CONFIGS
    if args.quick:
        n_max, rows, elements, implicit_rows, collapse_rows = min(args.n_max, 2**16), 8, 2**19, 8, 4
        step = 4
        configs = [c for c in DEFAULT_CONFIGS if c[0] not in ("weibull p=1.5", "sphere cosine d=5")]
    else:
        n_max, rows, elements, implicit_rows, collapse_rows = (
            args.n_max,
            args.rows,
            args.elements,
            64,
            8,
        )
        step = 2
    ns, k = [], args.n_min.bit_length() - 1
    while 2**k <= n_max:
        ns.append(2**k)
        k += step
    if ns[-1] != n_max:
        ns.append(n_max)

    t0 = time.perf_counter()
    study = run_study(
        ns,
        configs=configs,
        rows=rows,
        elements=elements,
        implicit_rows=implicit_rows,
        collapse_rows=collapse_rows,
        seed=args.seed,
    )
    os.makedirs(args.out, exist_ok=True)
    table = law_table(study)
    study["law_table"] = table
    study["seconds"] = time.perf_counter() - t0
    with open(os.path.join(args.out, "temperature_study.json"), "w") as f:
        json.dump(study, f, indent=1)
    plot_ratios(study, os.path.join(args.out, "ratios.png"))
    plot_collapse(study, os.path.join(args.out, "collapse.png"))
    plot_collapse(study, os.path.join(args.out, "collapse_pmax.png"), quantity="p_max")

    print(
        f"\n{'family':<26}{'n range':>18}{'ratio(n_min)':>14}{'ratio(n_max)':>14}"
        f"{'pmax=1/2':>10}{'H=log n/2':>11}"
    )
    for r in table:
        rng = f"2^{r['n_min'].bit_length() - 1}..2^{r['n_max'].bit_length() - 1}"
        print(
            f"{r['family']:<26}{rng:>18}{r['ratio_n_min']:14.3f}{r['ratio_n_max']:14.3f}"
            f"{r['pmax_half_ratio_n_max']:10.3f}{r['entropy_ratio_n_max']:11.3f}"
        )
    print(
        f"\n(ratios: median over rows of the measured scale / predicted law; implicit scales at"
        f" n_max)\nwrote {args.out} in {study['seconds']:.1f} s"
    )
    return study


if __name__ == "__main__":
    main()
