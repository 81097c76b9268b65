"""`python -m meanfield ...` is the `meanfield` command."""

from .runs.cli import main

raise SystemExit(main())
