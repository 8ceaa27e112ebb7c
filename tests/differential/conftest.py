"""Fixtures for the differential tests (see ``sinkdiff.py`` and ``test_differential.py``).

Postfix's ``smtp-sink`` is looked up in ``$SMTP_SINK_POSTFIX_BIN`` (a directory),
``<repo>/.postfix/bin`` and ``/work/postfix/bin``. When it is missing the tests are skipped,
except under ``CI=true``, where they fail.

The order of the collected dialogues is handed to the ``ServerPool`` (see ``sinkdiff.py``),
which uses it to start upcoming server pairs early and to stop shared ones after their
last dialogue.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import support

from .sinkdiff import Dialogue, Programs, ServerPool, collected, find_postfix_sink

_ORDER = pytest.StashKey[list[Dialogue]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_ORDER] = collected(session.items, "dialogue", Dialogue)


@pytest.fixture(scope="session")
def programs() -> Programs:
    if not support.ON_LINUX:
        pytest.skip("Postfix's smtp-sink and this harness (/proc/net) run on Linux")
    exe = find_postfix_sink()
    if exe is None:
        msg = (
            "Postfix smtp-sink not found (set SMTP_SINK_POSTFIX_BIN, or run "
            "tools/get-postfix.sh .postfix)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return Programs(exe)


@pytest.fixture(scope="session")
def server_pool(request: pytest.FixtureRequest, programs: Programs) -> Iterator[ServerPool]:
    # Under pytest-xdist a worker does not know which items it will get: no look-ahead.
    order = [] if os.environ.get("PYTEST_XDIST_WORKER") else request.config.stash.get(_ORDER, [])
    pool = ServerPool(programs, order)
    try:
        yield pool
    finally:
        pool.close()
