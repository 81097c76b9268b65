"""Shared test configuration: float64 everywhere and a `getkey` fixture (as in diffrax)."""

import jax

jax.config.update("jax_enable_x64", True)

import itertools  # noqa: E402

import jax.random as jr  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def getkey():
    """Return a function that hands out fresh, deterministic PRNG keys."""
    counter = itertools.count()
    base = jr.PRNGKey(5678)

    def _getkey():
        return jr.fold_in(base, next(counter))

    return _getkey
