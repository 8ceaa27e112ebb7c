"""A minimal aiosmtpd sink for the benchmarks: accepts and discards every message.

    python benchmarks/aiosmtpd_sink.py PORT [--lmtp] [--tls-cert=FILE]

With ``--tls-cert`` (a PEM file with the key) it offers STARTTLS.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok"


async def main(port: int, lmtp: bool, cert: str | None) -> None:
    import ssl

    from aiosmtpd.lmtp import LMTP
    from aiosmtpd.smtp import SMTP

    cls = LMTP if lmtp else SMTP
    handler = Discard()
    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: cls(
            handler, hostname="aiosmtpd-sink", data_size_limit=None, tls_context=context
        ),
        "127.0.0.1",
        port,
        backlog=1000,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)  # aiosmtpd logs every session at INFO
    cert = next((a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--tls-cert=")), None)
    asyncio.run(main(int(sys.argv[1]), "--lmtp" in sys.argv[2:], cert))
