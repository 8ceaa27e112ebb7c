"""What the plugin keeps on pytest's items (stash keys shared by the hooks and fixtures)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .handle import SmtpSink
    from .settings import TestSettings

HANDLE_KEY: pytest.StashKey[list[SmtpSink]] = pytest.StashKey()  # the sinks a test used
NAMES_KEY: pytest.StashKey[dict[int, str]] = pytest.StashKey()  # id(sink) -> dump folder
SETTINGS_KEY: pytest.StashKey[TestSettings] = pytest.StashKey()
FAILED_KEY: pytest.StashKey[bool] = pytest.StashKey()  # the test's call failed
DUMP_KEY: pytest.StashKey[Any] = pytest.StashKey()  # the test's dump folder
LOG_LEVEL_KEY: pytest.StashKey[int] = pytest.StashKey()
