"""Test certificates without effort: a trustme CA and a server certificate it signs.

For the pytest plugin (once per session) and for ``smtp-sink --starttls`` without
``--tls-cert``. The keys are EC (fast handshakes); the CA is written to a PEM file for
clients that take a path (curl, nodemailer, Django), and ``client_context()`` trusts it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

# The names a test client connects to.
HOSTNAMES = ("localhost", "127.0.0.1", "::1", "smtp-sink")


class TestCertificates:
    """A CA and a server certificate for ``hostnames``, their PEM files in ``folder``."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, folder: str | Path, hostnames: tuple[str, ...] = HOSTNAMES) -> None:
        import trustme  # only where TLS is used

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="pytest-smtp-sink test CA")
        self._server = self._ca.issue_cert(*hostnames)
        self.ca_file = self.folder / "ca.pem"
        self.cert_file = self.folder / "server.pem"  # chain and key
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._server.private_key_and_cert_chain_pem.write_to_path(str(self.cert_file))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and checks host names)."""
        return ssl.create_default_context(cafile=str(self.ca_file))
