"""Mean-field limit study: energy, atoms and first merging time as n grows (issue 7).

    python examples/meanfield_limit_study.py --out limit_out [--quick] [--seeds 3]

Writes meanfield_limit.json and meanfield_limit_d{2,3}.png. The full run (n up to 10^6 on
S^1 and 10^5 on S^2, spectral kernel) takes several minutes on a 2-core CPU.
"""

import argparse

from meanfield.studies.limit import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="limit_out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    main(args.out, quick=args.quick, seeds=args.seeds)
