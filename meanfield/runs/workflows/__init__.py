"""The workflows behind the `meanfield` command, one module each, registered in ONE table.

A workflow is `run(cfg, out, quiet, **extra) -> (arrays, results)`: it reads the resolved
config `cfg`, writes its figures into the (staging) folder `out` and returns the arrays and
numbers that `execute` saves as the run. `checkpointed` workflows also take `checkpoint=`
(`--checkpoint-every`); `composite` ones (the demo) run other workflows through the
`execute=` they are given, so no workflow imports the executor back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .critical import run_critical
from .demo import run_demo
from .simulate import run_simulate
from .sweep import run_sweep
from .temperature import run_temperature
from .transformer import run_transformer


class Workflow(NamedTuple):
    """One command: its `run` function and what it accepts beyond (cfg, out, quiet)."""

    run: Callable
    checkpointed: bool = False
    composite: bool = False


WORKFLOWS: dict[str, Workflow] = {
    "simulate": Workflow(run_simulate, checkpointed=True),
    "sweep": Workflow(run_sweep),
    "critical": Workflow(run_critical),
    "temperature": Workflow(run_temperature),
    "transformer": Workflow(run_transformer),
    "demo": Workflow(run_demo, composite=True),
}

#: Commands that take `--checkpoint-every` (and can be resumed).
CHECKPOINTED = tuple(name for name, w in WORKFLOWS.items() if w.checkpointed)

__all__ = ["CHECKPOINTED", "WORKFLOWS", "Workflow"]
