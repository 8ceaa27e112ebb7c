"""TLS over real sockets: STARTTLS, implicit TLS, require_tls, and handshakes gone wrong.

A trustme CA signs the server's certificate; smtplib (in a thread) and raw sockets are the
clients. Every test runs on both drivers (TLS sessions are served by the portable one).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
from support import Log, config, serving

from pytest_smtp_sink import ListenError
from pytest_smtp_sink.dump.transaction import Transaction
from pytest_smtp_sink.server.certs import TestCertificates
from pytest_smtp_sink.server.server import SinkServer

pytestmark = [pytest.mark.trio, pytest.mark.drivers]

LIMIT = 10.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return TestCertificates(tmp_path_factory.mktemp("certs"))


def tls_serving(certs: TestCertificates, **options: Any) -> Any:
    return serving(config(**options), ssl_context=certs.server_context())


def send_starttls(addr: tuple[str, int], certs: TestCertificates) -> dict[str, Any]:
    with smtplib.SMTP(addr[0], addr[1], timeout=LIMIT) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls")
        smtp.starttls(context=certs.client_context())
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        return smtp.sendmail("a@example.com", ["b@example.com"], "Subject: tls\r\n\r\nhi\r\n")


async def test_starttls_with_smtplib(certs: TestCertificates) -> None:
    seen: list[Transaction] = []
    async with tls_serving(certs, starttls=True) as (server, [addr]):
        server.subscribe(seen.append)
        with trio.fail_after(LIMIT):
            assert await trio.to_thread.run_sync(send_starttls, addr, certs) == {}
    [tx] = seen
    assert tx.tls is not None and tx.tls.startswith("TLSv1.")
    assert tx.helo == "client.example" and tx.client_proto == "ESMTP"
    assert "portable" in "".join(server.served)  # TLS is served by the portable driver


async def test_implicit_tls_with_smtp_ssl(certs: TestCertificates) -> None:
    seen: list[Transaction] = []

    def send(addr: tuple[str, int]) -> None:
        context = certs.client_context()
        with smtplib.SMTP_SSL(addr[0], addr[1], context=context, timeout=LIMIT) as smtp:
            smtp.ehlo("c")
            assert not smtp.has_extn("starttls")
            smtp.login("alice", "secret")
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: s\r\n\r\nhi\r\n")

    async with tls_serving(certs, implicit_tls=True, users={"alice": "secret"}) as (
        server,
        [addr],
    ):
        server.subscribe(seen.append)
        with trio.fail_after(LIMIT):
            await trio.to_thread.run_sync(send, addr)
    [tx] = seen
    assert tx.tls is not None and tx.auth_user == "alice"


async def test_require_tls_refuses_mail_in_plaintext(certs: TestCertificates) -> None:
    def plain(addr: tuple[str, int]) -> int:
        with smtplib.SMTP(addr[0], addr[1], timeout=LIMIT) as smtp:
            smtp.ehlo("c")
            assert not smtp.has_extn("auth")  # AUTH is offered inside TLS only
            code, _ = smtp.mail("a@example.com")
            return code

    async with tls_serving(certs, starttls=True, require_tls=True) as (_server, [addr]):
        with trio.fail_after(LIMIT):
            assert await trio.to_thread.run_sync(plain, addr) == 530
            assert await trio.to_thread.run_sync(send_starttls, addr, certs) == {}


async def raw_client(addr: tuple[str, int]) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(*addr)
    assert (await stream.receive_some(1000)).startswith(b"220 ")
    return stream


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    out = b""
    with trio.fail_after(LIMIT):
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, ConnectionResetError):
                return out
            if not data:
                return out
            out += data


@pytest.mark.parametrize(
    ("after_starttls", "warning"),
    [
        (b"this is not a TLS client hello\r\n" * 4, "TLS handshake failed"),
        (b"", "the client went away during the TLS handshake"),
    ],
    ids=["garbage", "vanished"],
)
async def test_a_failed_handshake_closes_that_session_only(
    certs: TestCertificates, after_starttls: bytes, warning: str
) -> None:
    log = Log()
    async with serving(
        config(starttls=True), ssl_context=certs.server_context(), log=log
    ) as (_server, [addr]):
        bystander = await raw_client(addr)
        victim = await raw_client(addr)
        await victim.send_all(b"STARTTLS\r\n")
        assert await victim.receive_some(1000) == b"220 2.0.0 Ready to start TLS\r\n"
        if after_starttls:
            await victim.send_all(after_starttls)
        else:
            await victim.send_eof()
        await read_until_eof(victim)
        await bystander.send_all(b"NOOP\r\n")
        assert await bystander.receive_some(1000) == b"250 2.0.0 Ok\r\n"
        await bystander.aclose()
        await victim.aclose()
    assert any(warning in text for text in log.texts("warning")), log.records
    assert log.errors() == []  # a warning, never a traceback


async def test_plaintext_pipelined_after_starttls_is_not_executed(
    certs: TestCertificates,
) -> None:
    seen: list[Transaction] = []
    async with tls_serving(certs, starttls=True) as (server, [addr]):
        server.subscribe(seen.append)

        def attack() -> bytes:
            sock = socket.create_connection(addr, timeout=LIMIT)
            sock.recv(1000)
            # the injection of CVE-2011-0411: commands behind STARTTLS in the same packet
            sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\n")
            reply = sock.recv(1000)
            tls = certs.client_context().wrap_socket(sock, server_hostname="localhost")
            tls.sendall(b"RCPT TO:<v@x>\r\n")
            answer = tls.recv(1000)
            tls.close()
            return reply + answer

        with trio.fail_after(LIMIT):
            out = await trio.to_thread.run_sync(attack)
    assert out == b"220 2.0.0 Ready to start TLS\r\n503 5.5.1 Error: need MAIL command\r\n"
    assert seen == []


async def test_tls_without_a_certificate_is_a_listen_error() -> None:
    server = SinkServer(config(starttls=True), log=Log())
    with pytest.raises(ListenError, match="TLS needs a certificate"):
        await server.run()


async def test_tls_from_certificate_files(certs: TestCertificates, tmp_path: Path) -> None:
    cfg = config(implicit_tls=True, tls_cert=str(certs.cert_file))

    def send(addr: tuple[str, int]) -> None:
        with smtplib.SMTP_SSL(*addr, context=certs.client_context(), timeout=LIMIT) as smtp:
            smtp.noop()

    async with serving(cfg) as (_server, [addr]):
        with trio.fail_after(LIMIT):
            await trio.to_thread.run_sync(send, addr)
    bad = SinkServer(config(starttls=True, tls_cert=str(tmp_path / "missing.pem")), log=Log())
    with pytest.raises(ListenError):
        await bad.run()


async def test_tls_record_of_the_client_context(certs: TestCertificates) -> None:
    """client_context() checks the server's name: it must be one the certificate has."""
    async with tls_serving(certs, implicit_tls=True) as (_server, [addr]):

        def connect(name: str) -> None:
            context = certs.client_context()
            with (
                socket.create_connection(addr, timeout=LIMIT) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                assert tls.recv(100).startswith(b"220 ")

        with trio.fail_after(LIMIT):
            await trio.to_thread.run_sync(connect, "localhost")
            with pytest.raises(ssl.SSLCertVerificationError):
                await trio.to_thread.run_sync(connect, "elsewhere.example")
