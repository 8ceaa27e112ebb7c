"""``--smtp-sink-dump=DIR``: every test's transactions in the smtp-sink dump format.

One folder per test (its node id made safe), replaced by each run that runs the test; a
factory sink gets a sub-folder named as the test named it (``smtp_sink_factory(name=...)``)
or ``sink<n>``. Files are named ``<n>-<queue id>`` in the order the messages came, so that
``parse_dump`` (which reads a folder in name order) gives them back in that order.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..dump.transaction import Transaction
from ..dump.writer import CREATE_NEW, FILE_MODE

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(nodeid: str) -> str:
    """A folder name for a node id.

    ``tests/test_x.py::test_y[a-b]`` → ``tests_test_x.py_test_y_a-b``.
    """
    name = _UNSAFE.sub("_", nodeid).strip("._") or "test"
    return name[:200]


def fresh_folder(root: str | Path, nodeid: str) -> Path:
    """The test's folder under ``root``, emptied of what an earlier run left there."""
    folder = Path(root) / safe_name(nodeid)
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def write_dumps(folder: Path, transactions: list[Transaction]) -> None:
    """Each transaction as a -d style file, ``0001-<queue id>`` and on, in arrival order."""
    if not transactions:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for n, tx in enumerate(transactions, 1):
        fd = os.open(folder / f"{n:04d}-{tx.queue_id}", CREATE_NEW, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(tx.render())
