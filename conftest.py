"""Project-wide test configuration.

- pytester, for the plugin tests run as users run pytest;
- ``@pytest.mark.drivers``: a server test runs once on each server driver (portable, and
  selector where the platform has one); ``support.serving`` uses it and checks it was used.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "drivers: run once on each server driver (portable, selector)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("drivers") is not None:
        import support  # tests/support.py: importable once a test module there is collected

        metafunc.fixturenames.append("sink_driver")
        metafunc.parametrize("sink_driver", support.DRIVERS)


@pytest.fixture(autouse=True)
def _sink_driver(request: pytest.FixtureRequest) -> Iterator[None]:
    """The driver the servers of a ``drivers`` test use (``support.serving``)."""
    callspec = getattr(request.node, "callspec", None)
    name = callspec.params.get("sink_driver") if callspec is not None else None
    if name is None:
        yield
        return
    import support

    support.DRIVER = name
    try:
        yield
    finally:
        support.DRIVER = None
