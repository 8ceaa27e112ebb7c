"""Real clients against the sink, as users' code talks to it: STARTTLS required, implicit TLS,
checked AUTH (CRAM-MD5 among them), a UTF-8 address.

.ci/run installs them (swaks, curl and msmtp from Debian, nodemailer from npm, aiosmtplib and
Django from PyPI). Where one is missing the test is skipped, except in CI (CI=true), where it
fails: these tests must run there.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import smtplib
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from pytest_smtp_sink import SmtpSink, open_sink
from pytest_smtp_sink.server.certs import TestCertificates

pytestmark = pytest.mark.trio

LIMIT = 20.0
USERS = {"alice": "s3cret"}
UTF8_SENDER = "jösé@y.example"
MESSAGE = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"
ROOT = Path(__file__).resolve().parent.parent


def required(what: str) -> None:
    """Skip without ``what``; in CI its absence is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed (.ci/run installs it)", pytrace=False)
    pytest.skip(f"{what} is not installed")


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        required(name)
    assert path is not None
    return path


def node_modules() -> Path:
    for folder in (os.environ.get("SMTP_SINK_NODE_MODULES"), ROOT / ".ci" / "node_modules"):
        if folder and (Path(folder) / "nodemailer").is_dir():
            return Path(folder)
    required("nodemailer (npm)")
    raise AssertionError  # not reached


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return TestCertificates(tmp_path_factory.mktemp("client-certs"))


@asynccontextmanager
async def sink(certs: TestCertificates, **options: Any) -> AsyncIterator[SmtpSink]:
    async with open_sink(ssl_context=certs.server_context(), **options) as running:
        yield running


async def run(argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
    with trio.fail_after(LIMIT):
        done = await trio.run_process(
            argv, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{argv[0]} failed ({done.returncode}):\n{out}"
    return out


def port(running: SmtpSink) -> str:
    return str(running.port)


STARTTLS_REQUIRED = {"starttls": True, "require_tls": True}


# ------------------------------------------------------------------------------ swaks


async def test_swaks_starttls_cram_md5(certs: TestCertificates) -> None:
    swaks = program("swaks")
    async with sink(
        certs, **STARTTLS_REQUIRED, users=USERS, auth_mechanisms="PLAIN LOGIN CRAM-MD5"
    ) as running:
        await run([
            swaks, "--server", "127.0.0.1", "--port", port(running), "--tls", "--tls-verify",
            "--tls-ca-path", str(certs.ca_file), "--tls-sni", "localhost",
            "--auth", "CRAM-MD5", "--auth-user", "alice", "--auth-password", "s3cret",
            "--from", "a@example.com", "--to", "b@example.com",
        ])  # fmt: skip
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None and tx.auth_user == "alice"


async def test_swaks_implicit_tls_and_a_utf8_sender(certs: TestCertificates) -> None:
    swaks = program("swaks")
    async with sink(certs, implicit_tls=True, smtputf8=True) as running:
        await run([
            swaks, "--server", "127.0.0.1", "--port", port(running), "--tls-on-connect",
            "--from", UTF8_SENDER, "--to", "b@example.com",
        ])  # fmt: skip
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None
    assert tx.mail_from == UTF8_SENDER  # raw 8-bit (no SMTPUTF8 from swaks), kept as sent


# ------------------------------------------------------------------------------- curl


async def test_curl_ssl_reqd_and_smtps(certs: TestCertificates, tmp_path: Path) -> None:
    curl = program("curl")
    message = tmp_path / "message.txt"
    message.write_text(MESSAGE)
    common = ["--silent", "--show-error", "--cacert", str(certs.ca_file),
              "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com",
              "--upload-file", str(message)]  # fmt: skip
    async with sink(certs, **STARTTLS_REQUIRED, users=USERS) as running:
        await run([curl, "--ssl-reqd", f"smtp://127.0.0.1:{running.port}",
                   "--user", "alice:s3cret", "--login-options", "AUTH=PLAIN", *common])  # fmt: skip
        [tx] = await running.wait_async(count=1)
        assert tx.tls is not None and tx.auth_user == "alice"
    async with sink(certs, implicit_tls=True) as running:
        await run([curl, f"smtps://127.0.0.1:{running.port}", *common])
        [tx] = await running.wait_async(count=1)
        assert tx.tls is not None and tx.message["Subject"] == "hi"


# ------------------------------------------------------------------------------ msmtp


async def test_msmtp_starttls_required(certs: TestCertificates) -> None:
    msmtp = program("msmtp")
    async with sink(
        certs, **STARTTLS_REQUIRED, users=USERS, auth_mechanisms="PLAIN LOGIN CRAM-MD5"
    ) as running:
        await run(
            [msmtp, "--host=127.0.0.1", f"--port={running.port}", "--tls=on",
             "--tls-starttls=on", f"--tls-trust-file={certs.ca_file}", "--auth=cram-md5",
             "--user=alice", "--passwordeval=echo s3cret", "--from=a@example.com",
             "b@example.com"],
            stdin=MESSAGE.encode(),
        )  # fmt: skip
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None and tx.auth_user == "alice"


# ------------------------------------------------------------------------- nodemailer

NODEMAILER = """
const nodemailer = require("nodemailer");
const fs = require("fs");
const [port, mode, ca] = process.argv.slice(2);
const transport = nodemailer.createTransport({
  host: "127.0.0.1", port: Number(port), secure: mode === "secure",
  requireTLS: mode === "requireTLS", tls: { ca: fs.readFileSync(ca), servername: "localhost" },
  auth: { user: "alice", pass: "s3cret", method: "CRAM-MD5" },
});
transport.sendMail({ from: "jösé@y.example", to: "b@example.com", subject: "Grüße",
                     text: "Hallo" })
  .then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
"""


@pytest.mark.parametrize("mode", ["requireTLS", "secure"])
async def test_nodemailer(certs: TestCertificates, tmp_path: Path, mode: str) -> None:
    node = program("node")
    modules = node_modules()
    script = tmp_path / "send.js"
    script.write_text(NODEMAILER)
    options: dict[str, Any] = {"implicit_tls": True} if mode == "secure" else STARTTLS_REQUIRED
    async with sink(
        certs, **options, users=USERS, smtputf8=True, auth_mechanisms="PLAIN LOGIN CRAM-MD5"
    ) as running:
        await run([node, str(script), port(running), mode, str(certs.ca_file)],
                  env={"NODE_PATH": str(modules)})  # fmt: skip
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None and tx.auth_user == "alice"
    assert tx.smtputf8 and tx.mail_from == UTF8_SENDER


# -------------------------------------------------------------------------- aiosmtplib


async def in_thread(fn: Callable[[], None]) -> None:
    with trio.fail_after(LIMIT):
        await trio.to_thread.run_sync(fn)


@pytest.mark.parametrize("implicit", [False, True], ids=["start_tls", "use_tls"])
async def test_aiosmtplib(certs: TestCertificates, implicit: bool) -> None:
    try:
        import aiosmtplib
    except ImportError:
        required("aiosmtplib")
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = UTF8_SENDER, "b@example.com", "x"
    msg.set_content("hi")
    options: dict[str, Any] = {"implicit_tls": True} if implicit else STARTTLS_REQUIRED
    async with sink(certs, **options, users=USERS, smtputf8=True) as running:

        def send() -> None:
            asyncio.run(
                aiosmtplib.send(
                    msg, hostname="127.0.0.1", port=running.port, username="alice",
                    password="s3cret", use_tls=implicit, start_tls=not implicit,
                    tls_context=certs.client_context(),
                )
            )

        await in_thread(send)
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None and tx.auth_user == "alice" and tx.mail_from == UTF8_SENDER


# ------------------------------------------------------------------------------ Django


DJANGO_SEND = """
import sys
import django
from django.conf import settings

settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
django.setup()
from django.core.mail import get_connection, send_mail

port, mode = int(sys.argv[1]), sys.argv[2]
connection = get_connection(host="127.0.0.1", port=port, username="alice", password="s3cret",
                            use_tls=mode == "tls", use_ssl=mode == "ssl", timeout=10)
assert send_mail("Welcome", "Hi!", "a@example.com", ["b@example.com"],
                 connection=connection) == 1
"""


@pytest.mark.parametrize("mode", ["tls", "ssl"], ids=["EMAIL_USE_TLS", "EMAIL_USE_SSL"])
async def test_django_backend(certs: TestCertificates, tmp_path: Path, mode: str) -> None:
    if importlib.util.find_spec("django") is None:
        required("Django")
    script = tmp_path / "send.py"
    script.write_text(textwrap.dedent(DJANGO_SEND))
    options: dict[str, Any] = {"implicit_tls": True} if mode == "ssl" else STARTTLS_REQUIRED
    async with sink(certs, **options, users=USERS) as running:
        # Django trusts the default CAs: SSL_CERT_FILE makes the test CA one of them.
        await run([sys.executable, str(script), port(running), mode],
                  env={"SSL_CERT_FILE": str(certs.ca_file)})  # fmt: skip
        [tx] = await running.wait_async(count=1)
    assert tx.tls is not None and tx.auth_user == "alice"
    assert tx.message["Subject"] == "Welcome"


# ------------------------------------------------------------------------------ smtplib


async def test_smtplib_send_message_negotiates_smtputf8(certs: TestCertificates) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = UTF8_SENDER, "ñ@z.example", "x"
    msg.set_content("hi")
    async with sink(certs, smtputf8=True, **STARTTLS_REQUIRED) as running:

        def send() -> None:
            assert running.port is not None
            with smtplib.SMTP("127.0.0.1", running.port, timeout=LIMIT) as smtp:
                smtp.starttls(context=certs.client_context())
                smtp.send_message(msg)

        await in_thread(send)
        [tx] = await running.wait_async(count=1)
    assert tx.smtputf8 and tx.rcpt_to == ["ñ@z.example"]
    assert "SMTPUTF8" in tx.mail_params
