"""The replies of smtp-sink, byte for byte, and the tables computed once per configuration."""

from __future__ import annotations

from .config import SinkConfig
from .values import encode_text

ABORT_REPLY = b"550 This violates SMTP\r\n"
R_MAIL = b"250 2.1.0 Ok\r\n"
R_RCPT = b"250 2.1.5 Ok\r\n"
R_OK = b"250 2.0.0 Ok\r\n"
R_DATA = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R_LMTP_DOT = b"250 2.2.0 Ok\r\n"
R_BYE = b"221 Bye\r\n"
R_421 = b"421 4.0.0 Server closing connection\r\n"
R_UNKNOWN = b"500 5.5.1 Error: unknown command\r\n"
R_EMPTY = b"500 5.5.2 Error: unknown command\r\n"
R_NESTED = b"503 5.5.1 Error: nested MAIL command\r\n"
R_NEED_MAIL = b"503 5.5.1 Error: need MAIL command\r\n"
R_NEED_RCPT = b"503 5.5.1 Error: need RCPT command\r\n"
R_STORE_FAILED = b"451 4.3.0 Error: queue file write error\r\n"
R_TOO_BIG = b"552 5.3.4 Error: message file too big\r\n"
R_AUTH_OK = b"235 2.7.0 Authentication successful\r\n"
R_AUTH_SYNTAX = b"501 5.5.4 Syntax: AUTH mechanism\r\n"
R_AUTH_MECH = b"504 5.5.4 Error: unsupported authentication mechanism\r\n"
R_AUTH_AGAIN = b"503 5.5.1 Error: already authenticated\r\n"
R_AUTH_ABORTED = b"501 5.7.0 Authentication aborted\r\n"
R_AUTH_BAD64 = b"501 5.5.2 Error: invalid base64 data\r\n"
R_334_EMPTY = b"334 \r\n"
R_334_USER = b"334 VXNlcm5hbWU6\r\n"
R_334_PASS = b"334 UGFzc3dvcmQ6\r\n"


def _line(text: str) -> bytes:
    return encode_text(text) + b"\r\n"


class Tables:
    """Replies and command tables computed once per configuration."""

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        host = config.hostname
        esmtp = config.esmtp and not config.pix
        if config.pix:
            self.greeting = b"220 ********\r\n"
        elif not esmtp:
            self.greeting = _line(f"220 {host}")
        else:
            self.greeting = _line(f"220 {host} ESMTP")
        lines = [host]
        if config.advertise_pipelining:
            lines.append("PIPELINING")
        if config.eightbitmime:
            lines.append("8BITMIME")
        if config.auth:
            lines.append("AUTH PLAIN LOGIN")
        if config.xclient:
            lines.append("XCLIENT NAME HELO")
        if config.xforward:
            lines.append("XFORWARD NAME ADDR PROTO HELO")
        if config.enhanced_status_codes:
            lines.append("ENHANCEDSTATUSCODES")
        if config.dsn:
            lines.append("DSN")
        self.ehlo = b"".join(_line(f"250-{x}") for x in lines) + b"250 \r\n"
        self.helo = _line(f"250 {host}")
        self.hard = _line(config.hard_bounce_reply)
        self.soft = _line(config.soft_bounce_reply)
        enabled = ["AUTH", "MAIL", "RCPT", "DATA", ".", "RSET", "NOOP", "VRFY", "QUIT"]
        if config.lmtp:
            enabled.append("LHLO")
        elif esmtp:
            enabled += ["HELO", "EHLO"]
        else:
            enabled.append("HELO")
        if config.xclient:
            enabled.append("XCLIENT")
        if config.xforward:
            enabled.append("XFORWARD")
        self.enabled: dict[bytes, str] = {name.encode(): name for name in enabled}
        # Commands that need more than the normal reply; the fast path skips the rest.
        self.special = (
            config.reject | config.soft_reject | config.disconnect | config.disconnect_421
            | config.log_commands | frozenset(config.delays)
        )  # fmt: skip
        self.initial_proto = "LMTP" if config.lmtp else "SMTP"
