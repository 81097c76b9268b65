"""The stored reference numbers (the peers' code, re-run by
tests/fixtures/make_reproduce_fixtures.py into tests/fixtures/reproduce/NAME.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "MEANFIELD_REPRODUCE_REFERENCES"


def reference_dir() -> Path:
    """$MEANFIELD_REPRODUCE_REFERENCES, else tests/fixtures/reproduce of the source tree."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "reproduce"


def load_reference(name: str) -> dict | None:
    """The reference dict `name` (e.g. "perceptron_localisation"), or None if not found."""
    path = reference_dir() / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
