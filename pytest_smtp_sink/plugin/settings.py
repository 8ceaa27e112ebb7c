"""What a test asked for: ini defaults, markers (module, class, function), the listen
address of each xdist worker, and the seeds of random faults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ..core.config import SinkConfig, from_options
from ..core.endpoint import Endpoint, ListenError
from ..core.errors import ConfigError
from ..core.options import CLI_ONLY_NAMES, CONVERTERS, LISTENER_NAMES, PLUGIN_NAMES, PYTEST_NAMES

# Captured messages live in memory: a runaway client should fail its test, not the machine.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
# In pytest the defaults model a modern MTA; TLS only when a test asks for it.
PYTEST_DEFAULTS: dict[str, Any] = {
    "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,  # and SIZE announced
    "smtputf8": True,
    "chunking": True,
    "auth_mechanisms": ("PLAIN", "LOGIN", "CRAM-MD5"),
}
# Marker options whose values add up from module to class to function.
_MERGED = ("delays", "users", "mail", "rcpt", "rules")


class UnknownOption(ConfigError):
    """A marker or factory keyword that is no option."""


@dataclass(frozen=True)
class TestSettings:
    """The plugin's own options of a test (not the server's)."""

    __test__ = False  # not a test class, whatever its name

    strict: bool = False
    report: str = "full"
    report_data_lines: int = 20


@dataclass(frozen=True)
class Asked:
    """A test's sink: its configuration, listener, and plugin settings."""

    config: SinkConfig
    listen: str | None  # a dedicated listener's address, if one was asked for
    dedicated: bool
    settings: TestSettings


# ----------------------------------------------------------------------------- ini


def ini_options(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in PYTEST_NAMES:
        value = config.getini(f"smtp_sink_{name}")
        if isinstance(value, str) and value.strip() != "":
            out[name] = value.strip()
    return out


_BASE_KEY = pytest.StashKey[Asked]()


def ini_asked(config: pytest.Config) -> Asked:
    """The ini defaults (and --smtp-sink-verbose), computed once per run."""
    cached = config.stash.get(_BASE_KEY, None)
    if cached is not None:
        return cached
    options = {**PYTEST_DEFAULTS, **ini_options(config)}
    if config.getoption("smtp_sink_verbose", False):
        options.setdefault("verbose", True)
    try:
        base = build(SinkConfig(), TestSettings(), options)
    except ConfigError as exc:
        name = exc.option or "?"
        raise ConfigError(f"smtp_sink_{name}: {exc}", option=exc.option) from None
    config.stash[_BASE_KEY] = base
    return base


def worker_index() -> int:
    """This xdist worker's number (gw3: 3), 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    digits = re.sub(r"\D", "", worker)
    return int(digits) if digits else 0


def ini_listen(config: pytest.Config) -> str:
    """ini ``smtp_sink_listen``, per xdist worker: ``{worker}`` is the worker's number and a
    port written ``N+`` is N plus that number (``127.0.0.1:2525+``: gw0 2525, gw1 2526)."""
    value = str(config.getini("smtp_sink_listen") or "127.0.0.1:0").strip()
    index = worker_index()
    value = value.replace("{worker}", str(index))
    match = re.fullmatch(r"(.*:)([0-9]+)\+", value)
    if match:
        value = f"{match.group(1)}{int(match.group(2)) + index}"
    return value


def check_ini(config: pytest.Config) -> None:
    """Bad ini values are a usage error of the whole run, named by option."""
    try:
        ini_asked(config)
    except ConfigError as exc:
        raise pytest.UsageError(f"smtp_sink ini option: {exc}") from None
    try:
        Endpoint.parse(ini_listen(config))
    except ListenError as exc:
        raise pytest.UsageError(
            f"smtp_sink ini option: smtp_sink_listen: {exc.explained()}"
        ) from None


# ------------------------------------------------------------------------- markers


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """Marker kwargs, farthest (module) first so that the closest (function) wins; the
    mappings (``delays``, ``users``, ``mail``, ``rcpt``) and ``rules`` add up."""
    options: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("smtp_sink"))):
        if mark.args:
            raise ConfigError(
                f"smtp_sink marker takes keyword arguments only, got {mark.args!r}",
                option="smtp_sink",
            )
        for name, value in mark.kwargs.items():
            before = options.get(name)
            if name in _MERGED and isinstance(before, Mapping) and isinstance(value, Mapping):
                value = {**before, **value}
            elif name == "rules" and before is not None:
                value = [*_as_list(before), *_as_list(value)]
            options[name] = value
    return options


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def build(base: SinkConfig, settings: TestSettings, options: Mapping[str, Any]) -> Asked:
    """A test's sink from options over ``base``: config, listener, plugin settings."""
    options = dict(options)
    for name in options:
        if name in CLI_ONLY_NAMES:
            raise ConfigError(
                f"{name} is a command-line option of smtp-sink; it cannot be used in a test",
                option=name,
            )
        if name not in CONVERTERS and name not in PLUGIN_NAMES:
            raise _unknown(name)
    listen = options.pop("listen", None)
    if listen is not None:
        if not isinstance(listen, str):
            raise ConfigError(f"listen must be an address string, not {listen!r}", option="listen")
        try:
            Endpoint.parse(listen)
        except ListenError as exc:
            raise ConfigError(exc.explained(), option="listen") from None
    own = {n: CONVERTERS[n](n, options.pop(n)) for n in list(options) if n in PLUGIN_NAMES}
    if own:
        settings = TestSettings(**{**settings.__dict__, **own})
    # No options: the very same object, so that the fixture can skip the config swap.
    cfg = from_options(options, base=base) if options else base
    dedicated = listen is not None or any(n in LISTENER_NAMES for n in options)
    return Asked(cfg, listen, dedicated, settings)


def _unknown(name: str) -> UnknownOption:
    import difflib

    known = sorted(set(CONVERTERS) | PLUGIN_NAMES)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UnknownOption(f"unknown option {name}{hint}", option=name)


# --------------------------------------------------------------------------- seeds


def is_random(cfg: SinkConfig) -> bool:
    """The configuration draws random numbers for faults (rule odds, -W dice)."""
    return any(r.odds is not None for r in cfg.rules) or any(o for _, o in cfg.delays.values())
