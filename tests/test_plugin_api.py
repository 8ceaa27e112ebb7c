"""The test API, through pytester as users run pytest: accepted vs refused, waits that match,
expectations, strict mode, reports, markers, xdist ports, dumps."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import support

from pytest_smtp_sink import Transaction, parse_dump

LEAN = ("-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:trio", "-p", "no:randomly")

SEND = """
import smtplib

def send(sink, to="b@example.com", subject="x", lines=1):
    body = "".join(f"line {n}\\r\\n" for n in range(lines))
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        return smtp.sendmail("a@example.com", [to], f"Subject: {subject}\\r\\n\\r\\n{body}")
"""


def project(pytester: pytest.Pytester, ini: str = "", **files: str) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n" + ini)
    pytester.makepyfile(mailer=SEND, **{k: textwrap.dedent(v) for k, v in files.items()})


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*LEAN, *args, timeout=120)


def test_refused_mail_is_not_in_transactions(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_refused="""
        import smtplib
        import pytest
        from mailer import send

        @pytest.mark.smtp_sink(reject=".")
        def test_hard(smtp_sink):
            with pytest.raises(smtplib.SMTPDataError):
                send(smtp_sink)
            assert smtp_sink.transactions == []
            [tx] = smtp_sink.refused
            assert tx.reply == "500 5.3.0 Error: command failed" and not tx.accepted

        @pytest.mark.smtp_sink(disconnect=".")
        def test_cut_off(smtp_sink):
            with pytest.raises(smtplib.SMTPServerDisconnected):
                send(smtp_sink)
            [tx] = smtp_sink.refused
            assert tx.reply is None and smtp_sink.transactions == []

        @pytest.mark.smtp_sink(rules=[".: 451 4.3.0 Try later"])
        def test_retry_counts_once(smtp_sink):
            with pytest.raises(smtplib.SMTPDataError):
                send(smtp_sink)
            smtp_sink.configure(rules=[])
            send(smtp_sink)
            assert len(smtp_sink.transactions) == 1 and len(smtp_sink.refused) == 1
        """,
    )
    run(pytester).assert_outcomes(passed=3)


def test_waits_and_expectations(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_waits="""
        import threading
        import pytest
        from mailer import send

        def later(sink, **kw):
            thread = threading.Thread(target=send, args=(sink,), kwargs=kw)
            thread.start()
            return thread

        def test_new_only(smtp_sink):
            send(smtp_sink, subject="old")
            [old] = smtp_sink.wait_for()
            assert old.subject == "old"
            send(smtp_sink, subject="new")  # accepted before the wait: still new to it
            [tx] = smtp_sink.wait_for(new=True)
            assert tx.subject == "new"
            thread = later(smtp_sink, subject="later")
            [tx] = smtp_sink.wait_for(new=True, timeout=10)
            thread.join()
            assert tx.subject == "later"
            with pytest.raises(TimeoutError, match="expected 1 new transaction"):
                smtp_sink.wait_for(new=True, timeout=0.1)
            assert len(smtp_sink.wait_for(count=3)) == 3  # without new: all of them

        def test_timeout_lists_what_came(smtp_sink):
            send(smtp_sink, to="other@example.com", subject="not it")
            with pytest.raises(TimeoutError) as info:
                smtp_sink.wait_for(to="me@example.com", timeout=0.2)
            message = str(info.value)
            assert "expected 1 transaction(s) to me@example.com, got 0" in message
            assert "from a@example.com to other@example.com 'not it'" in message

        def test_no_mail_fails_when_mail_comes(smtp_sink):
            thread = later(smtp_sink, subject="surprise")
            with pytest.raises(AssertionError, match="expected no mail within 10 s.*surprise"):
                smtp_sink.assert_no_mail(within=10)
            thread.join()

        def test_unmet_expectation(smtp_sink):
            smtp_sink.expect(2, subject="x", timeout=0.1)
            send(smtp_sink)
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_unmet_expectation*",
         "*smtp_sink: expected 2 transaction(s) with subject 'x', got 1 within 0.1 s*"]
    )  # fmt: skip


def test_strict_mode(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_strict="""
        import smtplib
        import pytest

        pytestmark = pytest.mark.smtp_sink(strict=True)
        HOLD = []

        def test_opens_and_leaves(smtp_sink):
            smtp = smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10)
            smtp.mail("a@example.com")
            smtp.rcpt("b@example.com")
            HOLD.append(smtp)  # the mail goes out during the next test

        def test_gets_the_leak(smtp_sink):
            smtp = HOLD.pop()
            smtp.data("Subject: late\\r\\n\\r\\nx\\r\\n")
            smtp.quit()

        def test_protocol_error(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.docmd("RCPT TO:<b@example.com>")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_gets_the_leak*",
            "smtp_sink: mail from a connection opened before this test*'late'*",
            "*ERROR at teardown of test_protocol_error*",
            "smtp_sink: the client made a protocol error (session 1): 'RCPT TO:<b@example.com>'"
            " -> 503 5.5.1 Error: need MAIL command",
        ]
    )


def test_reports(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_report="""
        import pytest
        from mailer import send

        def test_long_message(smtp_sink):
            send(smtp_sink, lines=100)
            assert False

        @pytest.mark.smtp_sink(report="envelope")
        def test_envelope_only(smtp_sink):
            send(smtp_sink, subject="secret")
            assert False

        def test_nobody_came(smtp_sink):
            assert smtp_sink.transactions, "the app sent nothing"

        @pytest.mark.smtp_sink(report="off")
        def test_off(smtp_sink):
            send(smtp_sink, subject="hidden")
            assert False
        """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    long = out[out.index("_ test_long_message _") : out.index("_ test_envelope_only _")]
    assert "--- smtp-sink smtp-sink at 127.0.0.1:" in long and ": session 1 from" in long
    # 20 lines of data shown (the Subject, the blank line, 18 body lines), 82 left out
    assert long.count("C: b'line ") == 18 and "... 82 more line(s) of message data" in long
    envelope = out[out.index("_ test_envelope_only _") : out.index("_ test_nobody_came _")]
    section = envelope[envelope.index("Captured SMTP conversation") :]
    assert "secret" not in section and "message data not shown" in section
    nobody = out[out.index("_ test_nobody_came _") : out.index("_ test_off _")]
    assert "no client connected to the smtp-sink (smtp-sink at 127.0.0.1:" in nobody
    off = out[out.index("_ test_off _") :]
    assert "Captured SMTP conversation" not in off.split("short test summary")[0]


def test_markers(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_markers="""
        import pytest

        pytestmark = pytest.mark.smtp_sink(delays={"NOOP": 0.01}, rcpt={"a@x": "550 5.1.1 A"})

        @pytest.mark.smtp_sink(delays={"VRFY": 0.01}, rcpt={"b@x": "550 5.1.1 B"})
        def test_merged(smtp_sink):
            assert set(smtp_sink.config.delays) == {"NOOP", "VRFY"}
            assert [r.match for r in smtp_sink.config.rules] == ["a@x", "b@x"]

        @pytest.mark.smtp_sink(reject="RCPT")
        def test_unused_marker():
            pass

        @pytest.mark.smtp_sink(rejct="RCPT")
        def test_misspelt(smtp_sink):
            pass
        """,
    )
    result = run(pytester, "-W", "default")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.smtp_sink: unknown option rejct (did you mean reject*",
            "*SmtpSinkWarning: @pytest.mark.smtp_sink has no effect on a test that does not use"
            " the smtp_sink fixture*",
        ]
    )
    assert "bad value for rejct" not in result.stdout.str()


def test_factory_errors_have_no_plugin_traceback(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_factory="""
        def test_bad(smtp_sink_factory):
            smtp_sink_factory(rejct="RCPT")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "UnknownOption: smtp_sink_factory: unknown option rejct (did you mean reject" in out
    assert "plugin/__init__.py" not in out and "settings.py" not in out


def test_xdist_workers_get_their_own_port(pytester: pytest.Pytester) -> None:
    base = support.free_port(count=2)
    project(
        pytester,
        ini=f"smtp_sink_listen = 127.0.0.1:{base}+\n",
        test_ports="""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_port(smtp_sink, n):
            worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
            assert smtp_sink.port == {base} + worker
        """.replace("{base}", str(base)),
    )
    run(pytester, "-n", "2").assert_outcomes(passed=4)


def test_dumps(pytester: pytest.Pytester) -> None:
    dumps = pytester.path / "dumps"
    project(
        pytester,
        test_dumped="""
        import os
        from mailer import send

        def test_order(smtp_sink):
            for subject in ("one", "two", "three"):
                send(smtp_sink, subject=subject)
            if os.environ.get("FAIL"):
                assert False

        def test_named_factory(smtp_sink_factory):
            send(smtp_sink_factory(name="backup-mx"), subject="to backup")
        """,
    )
    run(pytester, f"--smtp-sink-dump={dumps}")
    run(pytester, f"--smtp-sink-dump={dumps}")  # a second run replaces the first
    order = dumps / "test_dumped.py_test_order"
    names = sorted(p.name for p in order.iterdir())
    assert [n[:5] for n in names] == ["0001-", "0002-", "0003-"]
    assert [tx.subject for tx in parse_dump(order)] == ["one", "two", "three"]
    [backup] = parse_dump(dumps / "test_dumped.py_test_named_factory" / "backup-mx")
    assert backup.subject == "to backup"
    only_failed = pytester.path / "failed-dumps"
    pytester.runpytest_subprocess(
        *LEAN, f"--smtp-sink-dump={only_failed}", "--smtp-sink-dump-failed", timeout=120
    )
    assert not only_failed.exists() or not any(only_failed.iterdir())


def test_transaction_accessors(tmp_path: Path) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"] = "Grüße"
    msg.set_content("Reset it at https://example.com/reset?t=1.\n")
    msg.add_alternative('<a href="https://example.com/html?a=1&amp;b=2">here</a>', subtype="html")
    msg.add_attachment(b"\x00data", maintype="application", subtype="pdf", filename="r.pdf")
    data = msg.as_bytes().replace(b"\r\n", b"\n") + b"\n"
    tx = Transaction("127.0.0.1", "ESMTP", "c", "<a@x>", ("<b@x>",), "00000001", "r", data)
    assert tx.subject == "Grüße"
    assert tx.text == "Reset it at https://example.com/reset?t=1.\n"
    assert tx.html is not None and "href" in tx.html
    assert tx.links == ["https://example.com/html?a=1&b=2", "https://example.com/reset?t=1"]
    [attachment] = tx.attachments
    assert attachment == ("r.pdf", "application/pdf", b"\x00data")
