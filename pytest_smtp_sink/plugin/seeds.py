"""The seeds of random faults: one per run (printed in the header) and one per test.

Standard library only: the report header needs the run's seed in every pytest run.
"""

from __future__ import annotations

import hashlib
import random

import pytest

_SEED_KEY = pytest.StashKey[int]()


def session_seed(config: pytest.Config) -> int:
    """The run's seed: --smtp-sink-seed, else pytest-randomly's, else a new one."""
    seed = config.stash.get(_SEED_KEY, None)
    if seed is None:
        chosen = config.getoption("smtp_sink_seed", None)
        if chosen is None:
            randomly = getattr(config.option, "randomly_seed", None)
            chosen = randomly if isinstance(randomly, int) else random.randrange(1, 2**31)
        seed = config.stash[_SEED_KEY] = int(chosen)
    return seed


def seed_of_test(config: pytest.Config, nodeid: str) -> int:
    """One test's seed, from the run's and the test's id: a test gets the same faults
    whichever tests run before it."""
    digest = hashlib.sha256(f"{session_seed(config)}:{nodeid}".encode()).digest()
    return int.from_bytes(digest[:4], "big") | 1
