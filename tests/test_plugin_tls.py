"""The plugin's TLS and extension defaults, run through pytester as users run pytest."""

from __future__ import annotations

import textwrap

import pytest

# Imported now, before a pytester test snapshots sys.modules: pytester drops what a test
# imported, and cryptography (under trustme) cannot be imported a second time.
import trustme  # noqa: F401

from pytest_smtp_sink import parse_dump

LEAN = ("-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:trio")


def project(pytester: pytest.Pytester, ini: str = "", **files: str) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n" + ini)
    pytester.makepyfile(**{k: textwrap.dedent(v) for k, v in files.items()})


TESTS = """
import smtplib, ssl, sys
import pytest

def send_tls(sink):
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
        smtp.starttls(context=sink.client_ssl_context())
        smtp.login("alice", "secret")
        smtp.sendmail("jösé@y.example", ["b@example.com"], "Subject: x\\r\\n\\r\\nhi\\r\\n",
                      mail_options=["SMTPUTF8"])

def test_no_tls_no_trustme(smtp_sink):
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
        code, text = smtp.ehlo("c")
    lines = text.decode().splitlines()
    assert "SMTPUTF8" in lines and "CHUNKING" in lines and "STARTTLS" not in lines
    assert "AUTH PLAIN LOGIN CRAM-MD5" in lines and "SIZE 67108864" in lines
    assert "trustme" not in sys.modules  # the test CA is made only when TLS is used

@pytest.mark.smtp_sink(starttls=True, users={"alice": "secret"})
def test_starttls_on_the_session_sink(smtp_sink, smtp_sink_server):
    assert smtp_sink is smtp_sink_server
    send_tls(smtp_sink)
    [tx] = smtp_sink.transactions
    assert tx.tls and tx.auth_user == "alice" and tx.mail_from == "jösé@y.example"

def test_the_ca_file(smtp_sink, smtp_sink_certificates):
    assert smtp_sink.ca_file == str(smtp_sink_certificates.ca_file)
    assert open(smtp_sink.ca_file).read().startswith("-----BEGIN CERTIFICATE-----")

def test_factory_tls(smtp_sink_factory):
    sink = smtp_sink_factory(implicit_tls=True)
    with smtplib.SMTP_SSL(sink.host, sink.port, context=sink.client_ssl_context(),
                          timeout=10) as smtp:
        smtp.noop()
"""


def test_tls_and_extensions_in_pytest(pytester: pytest.Pytester) -> None:
    dumps = pytester.path / "dumps"
    project(pytester, test_x=TESTS)
    result = pytester.runpytest_subprocess(*LEAN, f"--smtp-sink-dump={dumps}", timeout=120)
    result.assert_outcomes(passed=4)
    [tx] = parse_dump(dumps)
    assert tx.smtputf8 and tx.auth_user == "alice" and tx.tls is not None
    assert tx.mail_from == "jösé@y.example"


OWN_CONTEXT = """
import smtplib, ssl
import pytest

@pytest.fixture(scope="session")
def smtp_sink_ssl_context():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain({cert!r})
    return context

@pytest.mark.smtp_sink(starttls=True)
def test_own_certificate(smtp_sink):
    client = ssl.create_default_context(cafile={ca!r})
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
        smtp.starttls(context=client)
        assert smtp.noop()[0] == 250
"""


def test_the_server_context_can_be_overridden(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pytest_smtp_sink.server.certs import TestCertificates

    own = TestCertificates(tmp_path_factory.mktemp("own"))
    project(pytester, conftest=OWN_CONTEXT.format(cert=str(own.cert_file), ca=str(own.ca_file)))
    pytester.makepyfile(test_own="from conftest import test_own_certificate\n")
    result = pytester.runpytest_subprocess(*LEAN, "test_own.py", timeout=120)
    result.assert_outcomes(passed=1)


def test_ini_starttls_for_the_session_sink(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        ini="smtp_sink_starttls = true\nsmtp_sink_require_tls = yes\n",
        test_ini="""
        import smtplib

        def test_required(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.ehlo()
                assert smtp.mail("a@example.com")[0] == 530
                smtp.starttls(context=smtp_sink.client_ssl_context())
                smtp.ehlo()
                assert smtp.mail("a@example.com")[0] == 250
        """,
    )
    result = pytester.runpytest_subprocess(*LEAN, timeout=120)
    result.assert_outcomes(passed=1)


def test_bad_extension_values_name_the_option(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_bad="""
        import pytest

        @pytest.mark.smtp_sink(auth_mechanisms="GSSAPI")
        def test_mech(smtp_sink):
            pass

        @pytest.mark.smtp_sink(reject="BDAT", chunking=False)
        def test_bdat(smtp_sink):
            pass
        """,
    )
    result = pytester.runpytest_subprocess(*LEAN, timeout=120)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*bad value for auth_mechanisms: unknown AUTH mechanism: GSSAPI*",
            "*bad value for reject: reject: BDAT needs chunking=True*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "During handling of the above exception" not in result.stdout.str()  # said once
