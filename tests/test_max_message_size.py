"""max_message_size: capture keeps memory bounded; an oversized message gets 552, not 250."""

from __future__ import annotations

import pytest

from pytest_smtp_sink.core.config import SinkConfig, from_options
from pytest_smtp_sink.core.errors import ConfigError
from pytest_smtp_sink.core.events import MessageReceived
from pytest_smtp_sink.core.protocol import SinkProtocol
from pytest_smtp_sink.dump.transaction import Transaction

R_TOO_BIG = b"552 5.3.4 Error: message file too big\r\n"


def session(cfg: SinkConfig, data: bytes) -> tuple[bytes, list[object]]:
    proto = SinkProtocol(cfg, collect=True)
    proto.start()
    proto.receive(data)
    events: list[object] = []
    while True:
        batch = proto.take_events()
        events += batch
        stored = [e for e in batch if isinstance(e, MessageReceived)]
        if not stored:
            break
        proto.message_stored(True)
    return proto.take_output(), events


def mail(body: bytes, rcpts: int = 1) -> bytes:
    rcpt = b"".join(b"RCPT TO:<r%d@x>\r\n" % i for i in range(rcpts))
    return b"HELO x\r\nMAIL FROM:<a@x>\r\n" + rcpt + b"DATA\r\n" + body + b"\r\n.\r\n"


def test_at_the_limit_is_kept_over_it_is_refused() -> None:
    body = b"x" * 100
    # the limit counts DATA octets as received, terminator included
    exact = len(body) + len(b"\r\n.\r\n")
    out, events = session(from_options({"max_message_size": exact}), mail(body))
    assert out.endswith(b"250 2.0.0 Ok\r\n")
    assert sum(isinstance(e, MessageReceived) for e in events) == 1
    out, events = session(from_options({"max_message_size": exact - 1}), mail(body))
    assert out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n" + R_TOO_BIG)
    assert not any(isinstance(e, MessageReceived) for e in events)


def test_lmtp_gets_one_552_per_recipient_and_the_next_message_is_kept() -> None:
    cfg = from_options({"max_message_size": 50, "lmtp": True})
    data = mail(b"y" * 500, rcpts=3).replace(b"HELO", b"LHLO") + b"MAIL FROM:<a@x>\r\n"
    data += b"RCPT TO:<b@x>\r\nDATA\r\nsmall\r\n.\r\n"
    out, events = session(cfg, data)
    assert out.count(R_TOO_BIG) == 3
    assert out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n250 2.2.0 Ok\r\n")
    [tx] = [Transaction.from_envelope(e.envelope) for e in events if isinstance(e, MessageReceived)]
    assert tx.data == b"small\n\n"


def test_not_collecting_has_no_limit() -> None:
    proto = SinkProtocol(from_options({"max_message_size": 10}), collect=False)
    proto.start()
    proto.receive(mail(b"z" * 1000))
    assert proto.take_output().endswith(b"250 2.0.0 Ok\r\n")


@pytest.mark.parametrize("value", [-1, "x", 1.5, True])
def test_bad_values(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        from_options({"max_message_size": value})
    assert info.value.option == "max_message_size"


@pytest.mark.parametrize("value", [None, 0, "0", "none"])
def test_no_limit(value: object) -> None:
    assert from_options({"max_message_size": value}).max_message_size is None


def test_plugin_default_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import smtplib
        import pytest

        def send(sink, size):
            with smtplib.SMTP(sink.host, sink.port) as smtp:
                smtp.sendmail("a@x", ["b@x"], b"Subject: s\\r\\n\\r\\n" + b"x" * size)

        def test_default(smtp_sink):
            assert smtp_sink.config.max_message_size == 64 * 1024 * 1024

        @pytest.mark.smtp_sink(max_message_size=1000)
        def test_marker(smtp_sink):
            send(smtp_sink, 100)
            with pytest.raises(smtplib.SMTPSenderRefused) as info:  # SIZE= at MAIL
                send(smtp_sink, 5000)
            assert info.value.smtp_code == 552
            assert len(smtp_sink.transactions) == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:benchmark")
    result.assert_outcomes(passed=2)
