"""What a test's report says about its sinks, and what strict mode checks after it."""

from __future__ import annotations

from collections.abc import Sequence

from .capture import summary
from .handle import SmtpSink
from .settings import TestSettings


def conversation(sinks: Sequence[SmtpSink], settings: TestSettings) -> str | None:
    """The "Captured SMTP conversation" section of a failed test, if it has one."""
    if settings.report == "off":
        return None
    texts = [
        sink.transcript_text(settings.report, settings.report_data_lines)
        for sink in sinks
        if sink.sessions
    ]
    return "\n".join(texts) if texts else None


def nobody_came(sinks: Sequence[SmtpSink]) -> str | None:
    """The hint for a failed test whose sinks no client ever connected to."""
    if not sinks or any(sink.sessions for sink in sinks):
        return None
    where = ", ".join(sink.name for sink in sinks)
    return (
        f"no client connected to the smtp-sink ({where}) during this test: does the code"
        " under test send mail, and to this host and port?"
    )


def strict_problems(sink: SmtpSink) -> list[str]:
    """Strict mode: mail that came over a connection opened before the test, and the
    client's protocol errors."""
    problems = []
    first = sink.capture.first_session
    for tx in sink.capture.everything:
        if tx.session <= first:
            problems.append(
                "mail from a connection opened before this test (leaked from an earlier"
                f" one?): {summary(tx)}"
            )
    for n, transcript in enumerate(sink.sessions, 1):
        for error in transcript.protocol_errors():
            problems.append(f"the client made a protocol error (session {n}): {error}")
    return problems
