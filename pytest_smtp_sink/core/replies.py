"""The replies of smtp-sink, byte for byte, and the tables computed once per configuration."""

from __future__ import annotations

import random

from .config import SinkConfig
from .rules import Rule, RuleCounters
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
# extensions (DESIGN §7), with the texts of Postfix's smtpd where it has them
R_STARTTLS = b"220 2.0.0 Ready to start TLS\r\n"
R_STARTTLS_SYNTAX = b"501 5.5.4 Syntax: STARTTLS\r\n"
R_TLS_ACTIVE = b"554 5.5.1 Error: TLS already active\r\n"
R_TLS_REQUIRED = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
R_AUTH_REQUIRED = b"530 5.7.0 Authentication required\r\n"
R_AUTH_INVALID = b"535 5.7.8 Authentication credentials invalid\r\n"
R_SIZE_EXCEEDED = b"552 5.3.4 Message size exceeds fixed limit\r\n"
R_SIZE_SYNTAX = b"501 5.5.4 Bad message size syntax\r\n"
R_BDAT_SYNTAX = b"501 5.5.4 Syntax: BDAT count [LAST]\r\n"
R_DATA_AFTER_BDAT = b"503 5.5.1 Error: DATA after BDAT\r\n"
R_BINARYMIME_NEEDS_BDAT = b"503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n"
R_SMTPUTF8_UNSUPPORTED = b"555 5.5.4 Unsupported option: SMTPUTF8\r\n"


def bdat_ok(octets: int) -> bytes:
    """The reply to a BDAT chunk that is not the last one."""
    return b"250 2.0.0 Ok: %d octets\r\n" % octets


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
        self.auth_mechanisms = frozenset(config.auth_mechanisms)
        self.ehlo = self._ehlo(config, tls=False)
        self.ehlo_tls = self._ehlo(config, tls=True)  # after STARTTLS, or implicit TLS
        self.helo = _line(f"250 {host}")
        self.hard = _line(config.hard_bounce_reply)
        self.soft = _line(config.soft_bounce_reply)
        enabled = ["AUTH", "MAIL", "RCPT", "DATA", ".", "RSET", "NOOP", "VRFY", "QUIT"]
        if config.starttls:
            enabled.append("STARTTLS")
        if config.chunking:
            enabled.append("BDAT")
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
        rules = (
            config.reject | config.soft_reject | config.disconnect | config.disconnect_421
            | config.log_commands | frozenset(config.delays)
        )  # fmt: skip
        # failure rules by command, their counters (per sink) and random generators
        self.rules_for: dict[str, tuple[Rule, ...]] = {}
        for rule in config.rules:
            self.rules_for[rule.command] = (*self.rules_for.get(rule.command, ()), rule)
        self.counters = RuleCounters()
        seed = config.seed
        self._odds = {
            rule: random.Random(f"{seed}:{i}:{rule}" if seed is not None else None)
            for i, rule in enumerate(config.rules)
            if rule.odds is not None
        }
        self.dice = random.Random(seed) if seed is not None else None  # -W odds
        self.track_rcpts = "." in self.rules_for  # "." rules match the recipients
        self.bdat_rules = "BDAT" in rules or "BDAT" in self.rules_for
        self.special = rules | set(self.rules_for) | ({"BDAT"} if config.chunking else set())
        # MAIL: must wait for TLS / AUTH; parameters to look at (SIZE=, BODY=, SMTPUTF8)
        self.guarded = config.require_tls or config.auth_required
        self.mail_params = (
            config.max_message_size is not None or config.chunking or config.smtputf8
        )
        self.initial_proto = "LMTP" if config.lmtp else "SMTP"
        self.size_limit = config.max_message_size

    def odds_hit(self, rule: Rule) -> bool:
        """Whether a rule with ``odds`` acts this time (its own seeded generator)."""
        assert rule.odds is not None
        return self._odds[rule].random() < rule.odds

    @staticmethod
    def _ehlo(config: SinkConfig, tls: bool) -> bytes:
        """The EHLO/LHLO reply: Postfix's lines, then our extensions where asked for."""
        lines = [config.hostname]
        if config.advertise_pipelining:
            lines.append("PIPELINING")
        if config.max_message_size is not None:
            lines.append(f"SIZE {config.max_message_size}")
        if config.eightbitmime:
            lines.append("8BITMIME")
        if config.starttls and not tls:
            lines.append("STARTTLS")
        if config.auth and config.auth_mechanisms and (tls or not config.require_tls):
            lines.append("AUTH " + " ".join(config.auth_mechanisms))
        if config.xclient:
            lines.append("XCLIENT NAME HELO")
        if config.xforward:
            lines.append("XFORWARD NAME ADDR PROTO HELO")
        if config.enhanced_status_codes:
            lines.append("ENHANCEDSTATUSCODES")
        if config.dsn:
            lines.append("DSN")
        if config.smtputf8:
            lines.append("SMTPUTF8")
        if config.chunking:
            lines += ["CHUNKING", "BINARYMIME"]
        return b"".join(_line(f"250-{x}") for x in lines) + b"250 \r\n"
