"""The application layer: run folders (config, arrays, results, figures; written
atomically), checkpoints, the workflows behind the `meanfield` command and the CLI.

Nothing in the library imports this package; `meanfield` re-exports the run format.
Modules: `_config` (schemas, coercion), `_format` (files on disk), `_run` (`Run`,
`load_run`), `_save` (`save_run`), `_folder` (atomic folders, locks), `_checkpoint`,
`_env`, `_progress`, `_workflow` (shared helpers), `workflows/` (one module per command,
one table), `_execute` (`execute`, resume), `cli`.

**Format (version 1).** A run folder DIR holds

    DIR/config.json    {"format": "meanfield-run", "version": 1, "command": "simulate",
                        "rerunnable": true (false for `save_run` from Python),
                        "config": {every option, resolved, defaults included},
                        "environment": {"jax", "jaxlib", "numpy", "python", "platform",
                                        "backend", "device", "dtype", "x64", "seed",
                                        "meanfield", "created", "seconds"},
                        "files": {"arrays.npz": {"bytes"},
                                  "results.json": {"bytes", "sha256"}}}
    DIR/arrays.npz     NumPy arrays (`numpy.savez_compressed`, lossless), listed below
    DIR/results.json   the run's numbers (JSON; floats as Python floats)
    DIR/*.png, *.gif   figures (optional, `plots = false` skips them)

config.json is written last and its "files" manifest ties the other two to it (older
folders without it still load).

Arrays per command (shapes; B betas, S seeds, T saves, F families, N sizes, P grid points):

    simulate     ts (T,), xs (T, n, d) every `save_every`-th step (xs[0] = initial state),
                 energy (T,) (absent for models without an energy)
    sweep        betas (B,), ts (T,), counts (B, S, T) cluster counts, largest_mass
                 (B, S, T), final (B, S, n, d); xs (B, S, T, n, d) with save_states = true
    critical     x (n, d) the flowed state, locations (k, d) / masses (k,) clustered atoms,
                 refined (k, d) Newton-refined atoms (float64), splitting_eigenvalues
                 (k, d-1), transport_eigenvalues (K,); localisation mode: beta, d, seed,
                 atoms, largest_mass, mass_bound per record
    temperature  ns (N,), betas (F, P), entropy (F, N, P) = mean H / log n, p_max (F, N, P),
                 beta_star (F, N, rows), predicted (F, N)
    transformer  rows (R,) sampled query positions, n_keys (R,), beta_star (L, H, R),
                 bin_n (B,), beta_star_bins / ratio_bins (L, H, B), ratio_longest (L, H),
                 law_constants / law_rms (L, H, 3), best_law, gamma, c_gamma, ratio_train
                 (L, H), s_grid (S,), s_recommended (L, H, S), s_median, s_log_n, s_yarn (S,)
    demo         one sub-folder per section, each a run of the above
    python       whatever `save_run` was given (a Trajectory gives ts, xs)

Trajectories are subsampled by `save_every` (a divisor of `steps`) and never truncated: a
run whose saved states would exceed `max_trajectory_mb` is refused before it starts, with
the smallest `save_every` that fits.

**Writing.** A run is never written in place: `RunWriter` (`meanfield.runs._folder`) takes
the lock ``.DIR.lock`` next to DIR (a second writer fails at once, naming the pid; locks
of dead processes are replaced), refuses an existing, non-empty DIR unless `overwrite`
(`--overwrite`, which replaces the folder as a whole and only if it is a run), stages
every file in a hidden sibling and moves it into place with one atomic rename (an atomic
exchange for --overwrite). A kill -9 at any moment leaves DIR as it was or as the
complete new run. With `--checkpoint-every K` (simulate) the state is saved every K
steps into the sibling ``.DIR.checkpoint`` (with the resolved config in run.json), which
`meanfield resume DIR` (`resume_run`) continues to the same bits as the uninterrupted
run; the checkpoint is deleted once DIR is in place.

**Reading.** `load_run(DIR)` checks every file first (missing, truncated, corrupt zip or
CRC, not matching the manifest) and names it in a one-line `ValueError`; `save_run`
saves Python results as a run; `compare_runs(a, b)` lists every array that differs.
`execute(command, config, out)` runs a workflow from a config dict (validated first:
unknown keys, wrong types and out-of-range values raise `ConfigError`, and the output
folder is checked and locked, before anything is compiled) and saves it; the command line
`meanfield rerun DIR` re-executes DIR's config and compares the arrays bit for bit.
"""

from ._checkpoint import Checkpoint, integrate_checkpointed
from ._checkpoint import load_checkpoint as read_checkpoint
from ._config import ConfigError
from ._execute import execute, resume_info, resume_run
from ._run import Run, compare_runs, load_run
from ._save import save_run

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
