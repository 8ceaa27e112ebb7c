"""Typed spellings of the options, for type checkers: ``SinkOptions`` (the marker, factory
and ``configure`` keywords) and ``mark`` (``SmtpSinkFactory`` is with ``SmtpSink``).

    import pytest_smtp_sink

    @pytest_smtp_sink.mark(reject="RCPT")        # pytest.mark.smtp_sink, checked by mypy
    def test_refused(smtp_sink: pytest_smtp_sink.SmtpSink) -> None: ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict

import pytest

from ..core.rules import Rule

if TYPE_CHECKING:
    from typing_extensions import Unpack

Commands = str | Sequence[str]  # "RCPT", "RCPT,DATA", ["MAIL", "."]


class SinkOptions(TypedDict, total=False):
    """Every keyword of ``@pytest.mark.smtp_sink``, ``smtp_sink_factory`` and
    ``smtp_sink.configure`` (the option table says what each does), for type checkers."""

    family: Literal["inet", "inet4", "inet6"]
    max_connections: int
    tcp_window: int | None
    eightbitmime: bool
    auth: bool
    xclient: bool
    xforward: bool
    esmtp: bool
    enhanced_status_codes: bool
    dsn: bool
    pipelining: bool
    pix: bool
    lmtp: bool
    hostname: str
    soft_bounce_reply: str
    hard_bounce_reply: str
    reject: Commands
    soft_reject: Commands
    disconnect: Commands
    disconnect_421: Commands
    log_commands: Commands
    delays: Mapping[str, float | tuple[float, int]] | str
    data_delay: float | None
    abort_delay: float | None
    data_read_delay: float | None
    timeout: float
    dump_template: str | None
    dump_file_template: str | None
    start_string: str
    verbose: bool | int
    max_message_size: int | None
    starttls: bool
    implicit_tls: bool
    require_tls: bool
    tls_cert: str | None
    tls_key: str | None
    smtputf8: bool
    chunking: bool
    auth_mechanisms: str | Sequence[str]
    users: Mapping[str, str] | None
    auth_required: bool
    rules: Sequence[Rule | str] | str
    mail: Mapping[str, str]
    rcpt: Mapping[str, str]
    seed: int | None
    listen: str
    strict: bool
    report: Literal["full", "envelope", "off"]
    report_data_lines: int


def mark(**options: Unpack[SinkOptions]) -> pytest.MarkDecorator:
    """``pytest.mark.smtp_sink(**options)``, with the keywords checked by type checkers."""
    return pytest.mark.smtp_sink(**options)

