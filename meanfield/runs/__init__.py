"""The application layer: run folders (config, arrays, results, figures; written
atomically), checkpoints, the workflows behind the `meanfield` command and the CLI.

Nothing in the library imports this package; `meanfield` re-exports the run format.
"""

from ._checkpoint import Checkpoint, integrate_checkpointed
from ._checkpoint import load_checkpoint as read_checkpoint
from ._runs import (
    ConfigError,
    Run,
    compare_runs,
    execute,
    load_run,
    resume_info,
    resume_run,
    save_run,
)

__all__ = [
    "Checkpoint",
    "ConfigError",
    "Run",
    "compare_runs",
    "execute",
    "integrate_checkpointed",
    "load_run",
    "read_checkpoint",
    "resume_info",
    "resume_run",
    "save_run",
]
