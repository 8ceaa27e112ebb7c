"""Differential tests: the same client dialogues against Postfix's ``smtp-sink`` and ours.

Each row of ``DIALOGUES`` is run against a Postfix ``smtp-sink`` and a
``python -m pytest_smtp_sink`` started with the same options
(``<prog> [-u nobody] <options> 127.0.0.1:<port> 10``). The replies must be identical
byte for byte, step by step, including where the server closes the connection. For
dialogues with ``-d``/``-D`` the dump directories are compared too (file names, modes,
owners and contents, with the message id, the year in paths and the date in ``Received:``
normalised); with ``-c`` the counter lines on stdout; with ``expect_exit`` the exit status.

Dialogues never exercise the documented, deliberate differences (DESIGN.md §3): AUTH,
``-M`` on the last message, ``-n`` without ``-c``, LMTP repeated ``.``, pipelined
commands behind a ``-W`` delay, replies held back behind a partial line (checked only in
ways where the bytes are the same), the idle timer during delays, ``-W connect`` with
``-f connect``, fractional delays, empty-host listening.

Environment:

* ``SMTP_SINK_POSTFIX_BIN``: directory with Postfix's ``smtp-sink`` (else
  ``<repo>/.postfix/bin``, else ``/work/postfix/bin``). Missing: skip, or fail when
  ``CI=true``.
* ``SMTP_SINK_DIFF_OURS=postfix``: run Postfix on the "ours" side as well. Every dialogue
  must then pass; use it to check that the harness and the table are deterministic.
"""

from __future__ import annotations

import pytest
from support import ipv6_loopback_available

from .sinkdiff import (
    CloseMode,
    Dialogue,
    Family,
    ServerPool,
    Session,
    Step,
    dialogue_problems,
)

pytestmark = pytest.mark.postfix

# --------------------------------------------------------------------------------------
# building blocks

EHLO = b"EHLO client.example\r\n"
HELO = b"HELO client.example\r\n"
LHLO = b"LHLO client.example\r\n"
MAIL = b"MAIL FROM:<sender@example.com>\r\n"
RCPT = b"RCPT TO:<rcpt@example.com>\r\n"
RCPT2 = b"RCPT TO:<two@example.com>\r\n"
RCPT3 = b"RCPT TO:<three@example.com>\r\n"
DATA = b"DATA\r\n"
MSG = b"Subject: hello\r\n\r\nbody text\r\n.\r\n"
QUIT = b"QUIT\r\n"
NOOP = b"NOOP\r\n"
RSET = b"RSET\r\n"
XFWD = b"XFORWARD NAME=x.example\r\n"


def s(send: bytes, replies: int = 0) -> Step:
    """Send ``send``, then read ``replies`` complete replies (0: read nothing)."""
    return Step(send, replies)


def sess(*steps: Step, greeting: int = 1, close: CloseMode = "shutdown") -> Session:
    return Session(tuple(steps), greeting=greeting, close=close)


def one(
    name: str,
    options: tuple[str, ...],
    *steps: Step,
    greeting: int = 1,
    close: CloseMode = "shutdown",
    family: Family = "inet",
    stderr: bool = False,
    umask: int | None = None,
) -> Dialogue:
    """A dialogue of one session."""
    return Dialogue(
        name,
        options,
        (sess(*steps, greeting=greeting, close=close),),
        family=family,
        stderr=stderr,
        umask=umask,
    )


def multi(
    name: str, options: tuple[str, ...], *sessions: Session, expect_exit: bool = False
) -> Dialogue:
    return Dialogue(name, options, tuple(sessions), expect_exit=expect_exit)


TXN = (s(MAIL, 1), s(RCPT, 1), s(DATA, 1), s(MSG, 1))
T1 = (s(EHLO, 1), *TXN, s(QUIT, 1))
LONG_2046 = b"NOOP " + b"x" * 2041 + b"\r\n"  # 2046 octets + CRLF: accepted
LONG_2047 = b"NOOP " + b"x" * 2042 + b"\r\n"  # 2047 octets + CRLF: dropped
assert len(LONG_2046) == 2048 and len(LONG_2047) == 2049


def big_message() -> bytes:
    """About 250 KB of data with stuffed dots, unstuffed dots, bare CR/LF, 8-bit, NUL."""
    lines: list[bytes] = []
    for i in range(4000):
        line = b"line %d " % i + b"x" * (i % 97)
        if i % 7 == 0:
            line = b"." + line
        if i % 11 == 0:
            line = b".." + line
        if i % 13 == 0:
            line = b""
        if i % 17 == 0:
            line += b"\rbare cr"
        if i % 19 == 0:
            line += b"\nbare lf\n.not a terminator"
        if i % 23 == 0:
            line += b"\x00\xff\x80 8-bit"
        lines.append(line)
    return b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n.\r\n"


# --------------------------------------------------------------------------------------
# the table

DIALOGUES: list[Dialogue] = []
add = DIALOGUES.append

# ---- default options, one shared server pair -----------------------------------------
D: tuple[str, ...] = ()
add(one("t1_default_session", D, *T1, close="wait"))
add(
    one(
        "t8_pipelined_batch",
        D,
        s(EHLO + MAIL + b"RCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n" + DATA, 5),
        s(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n", 2),
        close="wait",
    )
)
add(
    one(
        "t6_unknown_and_out_of_sequence",
        D,
        s(b"\r\n", 1),
        s(b"   \r\n", 1),
        s(b"FOO bar\r\n", 1),
        s(b"LHLO x\r\n", 1),
        s(b"CONNECT\r\n", 1),
        s(b"ETRN example.com\r\n", 1),
        s(b"STARTTLS\r\n", 1),
        s(b"BDAT 5 LAST\r\n", 1),
        s(b"HELP\r\n", 1),
        s(b"EXPN list\r\n", 1),
        s(b"RCPT TO:<a@b>\r\n", 1),
        s(DATA, 1),
        s(b"MAIL FROM:<a@b>\r\n", 1),
        s(b"MAIL FROM:<c@d>\r\n", 1),
        s(DATA, 1),
        s(b"NOOP\n", 0),
        s(b"\r\n", 1),
        s(b"QUIT\r\r\n", 1),
        s(b"vrfy someone\r\n", 1),
        s(b"XCLIENT NAME=spike.porcupine.org\r\n", 1),
        s(b".\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "batch_unknown_commands",
        D,
        s(
            b"\r\n   \r\nFOO bar\r\nHELP\r\nEXPN x\r\nLHLO x\r\nCONNECT\r\nETRN x\r\n"
            b"STARTTLS\r\nBDAT 5 LAST\r\nNOOP\nNOOP\r\nQUIT\r\r\nvrfy x\r\nTURN\r\n"
        ),
        greeting=0,
    )
)
add(
    one(
        "sequencing_errors",
        D,
        s(RCPT, 1),
        s(DATA, 1),
        s(MAIL, 1),
        s(DATA, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(RSET, 1),
        s(DATA, 1),
        s(RCPT, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(MSG, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "helo_aborts_transaction",
        D,
        s(MAIL, 1),
        s(RCPT, 1),
        s(HELO, 1),
        s(DATA, 1),
        s(RCPT, 1),
        s(MAIL, 1),
    )
)
add(
    one(
        "ehlo_aborts_transaction",
        D,
        s(MAIL, 1),
        s(RCPT, 1),
        s(EHLO, 1),
        s(DATA, 1),
        s(RCPT, 1),
        s(MAIL, 1),
    )
)
add(one("no_helo_needed", D, *TXN, s(QUIT, 1), close="wait"))
add(one("repeated_helo_ehlo", D, s(HELO, 1), s(EHLO, 1), s(HELO, 1), s(EHLO, 1), *TXN))
add(
    one(
        "helo_argument_variants",
        D,
        s(b"HELO\r\n", 1),
        s(b"EHLO\r\n", 1),
        s(b"HELO  \tweird\thelo \r\n", 1),
        s(b"helo\tx\r\n", 1),
        s(b"EhLo a b c\r\n", 1),
    )
)
add(
    one(
        "typed_dot_smtp",
        D,
        s(b".\r\n", 1),
        s(MAIL, 1),
        s(b".\r\n", 1),
        s(RCPT, 1),
        s(b".\r\n", 1),
        s(DATA, 1),
        s(MSG, 1),
        s(b". extra\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "bare_lf_in_commands",
        D,
        s(b"NOOP\n", 0),
        s(b"\r\n", 1),
        s(b"NOOP\nNOOP\r\n", 1),
        s(b"MAIL FROM:<a>\nRCPT TO:<b>\r\n", 1),
        s(b"RCPT TO:<b>\r\n", 1),
        s(b"\n\r\n", 1),
        s(b"\n\n\n\r\n", 1),
    )
)
add(
    one(
        "bare_cr_in_commands",
        D,
        s(b"QUIT\r\r\n", 1),
        s(b"NOOP\rX\r\n", 1),
        s(b"\rNOOP\r\n", 1),
        s(b"NOOP \r\r\n", 1),
        s(b"\r\r\n", 1),
        s(b"\r\r\r\r\n", 1),
    )
)
add(
    one(
        "nul_in_commands",
        D,
        s(b"NO\x00OP\r\n", 1),
        s(b"NOOP\x00junk\r\n", 1),
        s(b"\x00NOOP\r\n", 1),
        s(b"MAIL FROM:<a\x00b>\r\n", 1),
        s(b"QUIT\x00\r\n", 1),
        close="wait",
    )
)
add(
    one(
        "whitespace_and_case",
        D,
        s(b"  NoOp  extra args\r\n", 1),
        s(b"\tNOOP\r\n", 1),
        s(b"noop\r\n", 1),
        s(b" \t vrfy x\r\n", 1),
        s(b"MAIL  FROM:<a>\r\n", 1),
        s(b"rcpt\tTO:<b>\r\n", 1),
        s(b"NOOP\t\r\n", 1),
        s(b"QuIt\r\n", 1),
        close="wait",
    )
)
add(
    one(
        "blank_lines",
        D,
        s(b"\r\n", 1),
        s(b"   \r\n", 1),
        s(b"\t\t\r\n", 1),
        s(b" \t \r\n", 1),
        s(b"\x0b\r\n", 1),
    )
)
add(
    one(
        "eight_bit_commands",
        D,
        s(b"NOOP \xff\xfe\r\n", 1),
        s(b"\xffNOOP\r\n", 1),
        s(b"N\xc3\x96OP\r\n", 1),
        s(b"MAIL FROM:<\xe4@b>\r\n", 1),
        s(b"RCPT TO:<\x7f\x01>\r\n", 1),
    )
)
add(
    one(
        "line_2046_accepted",
        D,
        s(LONG_2046, 1),
        s(b"MAIL FROM:<" + b"a" * 2034 + b">\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(one("line_2047_dropped_pipelined", D, s(NOOP + LONG_2047 + NOOP, 0), close="wait"))
add(one("partial_2048_then_one_octet", D, s(b"x" * 2048, 0), s(b"y", 0), close="wait"))
add(one("partial_2048_then_crlf", D, s(b"N" * 2048, 0), s(b"\r\n", 0), close="wait"))
add(one("line_2047_mid_transaction", D, s(MAIL, 1), s(RCPT, 1), s(LONG_2047, 0), close="wait"))
add(
    one(
        "long_data_lines",
        D,
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"x" * 10000 + b"\r\n" + b"y" * 70000 + b"\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(one("quit_then_more_same_packet", D, s(b"NOOP\r\nQUIT\r\nNOOP\r\nRSET\r\n", 2), close="wait"))
add(one("quit_with_arguments", D, s(b"QUIT now please\r\n", 1), close="wait"))
add(one("eof_mid_data", D, s(MAIL, 1), s(RCPT, 1), s(DATA, 1), s(b"Subject: x\r\n\r\npartial", 0)))
add(one("eof_after_dot_without_crlf", D, s(MAIL, 1), s(RCPT, 1), s(DATA, 1), s(b"abc\r\n.", 0)))
add(one("eof_after_partial_command", D, s(b"NOOP\r\nNOO", 0)))
add(one("eof_right_after_greeting", D))
add(
    one(
        "pipelined_after_message",
        D,
        s(EHLO, 1),
        s(MAIL + RCPT + DATA, 3),
        s(b"Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<a>\r\nRSET\r\nNOOP\r\nQUIT\r\n", 5),
        close="wait",
    )
)
add(one("many_pipelined_noops", D, s(NOOP * 1000, 1000), s(QUIT, 1), close="wait"))
add(
    one(
        "three_transactions_one_packet",
        D,
        s(HELO + (MAIL + RCPT + DATA + b"m\r\n.\r\n") * 3 + QUIT, 14),
        close="wait",
    )
)
add(
    one(
        "data_terminator_variants",
        D,
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"a\r\r\n.\r\n", 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"b\n.\nc\n.\r\nd\r\n.\r\n", 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"..\r\n...\r\n. \r\n.x\r\n.\r\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "data_terminator_split",
        D,
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"line\r", 0),
        s(b"\n", 0),
        s(b".", 0),
        s(b"\r", 0),
        s(b"\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(one("empty_message", D, s(MAIL, 1), s(RCPT, 1), s(DATA, 1), s(b".\r\n", 1)))
add(one("message_in_data_packet", D, s(MAIL + RCPT + DATA + b".\r\n", 4), s(NOOP, 1)))
add(
    one(
        "command_split_across_segments",
        D,
        s(b"NO", 0),
        s(b"OP\r", 0),
        s(b"\n", 1),
        s(b"QU", 0),
        s(b"IT\r\n", 1),
        close="wait",
    )
)
add(
    one(
        "vrfy_xclient_xforward",
        D,
        s(b"VRFY x\r\n", 1),
        s(b"XCLIENT NAME=x ADDR=1.2.3.4\r\n", 1),
        s(XFWD, 1),
        s(b"XCLIENT\r\n", 1),
        s(b"xforward\r\n", 1),
        s(b"TURN\r\n", 1),
    )
)
add(
    one(
        "odd_mail_rcpt_syntax",
        D,
        s(b"MAIL\r\n", 1),
        s(b"RCPT TO::<c>\r\n", 1),
        s(b"RCPT x\r\n", 1),
        s(b"RCPT\r\n", 1),
        s(b"MAILFROM:<x>\r\n", 1),
        s(b"RCPTTO:<x>\r\n", 1),
        s(b"DATAX\r\n", 1),
        s(DATA, 1),
        s(b".\r\n", 1),
    )
)
add(
    one(
        "esmtp_parameters",
        D,
        s(b"MAIL FROM:<a>  SIZE=10 BODY=8BITMIME\r\n", 1),
        s(b"RCPT  TO:  <b>  NOTIFY=NEVER\r\n", 1),
        s(b"MAIL FROM:<>\r\n", 1),
        s(DATA, 1),
        s(MSG, 1),
    )
)
add(
    one(
        "data_after_message_needs_rcpt",
        D,
        *TXN,
        s(DATA, 1),
        s(RCPT, 1),
        s(MAIL, 1),
        s(DATA, 1),
    )
)

# ---- EHLO lines and greeting variants ---------------------------------------------------
EHLO_PROBE = (
    s(EHLO, 1),
    s(b"HELO x\r\n", 1),
    s(b"LHLO x\r\n", 1),
    s(b"XCLIENT NAME=x\r\n", 1),
    s(XFWD, 1),
    s(MAIL, 1),
    s(RCPT, 1),
    s(QUIT, 1),
)
for flag, what in [
    ("-8", "8bitmime"),
    ("-a", "auth"),
    ("-C", "xclient"),
    ("-E", "enhancedstatuscodes"),
    ("-F", "xforward"),
    ("-N", "dsn"),
    ("-p", "pipelining"),
]:
    add(one(f"ehlo_without_{what}", (flag,), *EHLO_PROBE, close="wait"))
add(one("ehlo_all_removed", ("-8", "-a", "-C", "-E", "-F", "-N", "-p"), *EHLO_PROBE, close="wait"))
add(one("ehlo_all_removed_bundled_flags", ("-8aCEFNp",), *EHLO_PROBE, close="wait"))
add(one("f_implies_no_pipelining", ("-f", "VRFY"), *EHLO_PROBE[:1], s(b"VRFY x\r\n", 1)))
add(one("r_implies_no_pipelining", ("-r", "VRFY"), *EHLO_PROBE[:1], s(b"VRFY x\r\n", 1)))
QQ = ("-q", "XFORWARD", "-Q", "XCLIENT")
add(one("q_Q_keep_pipelining_Q_xclient", QQ, s(EHLO, 1), s(b"XCLIENT NAME=x\r\n", 0), close="wait"))
add(one("q_Q_keep_pipelining_q_xforward", QQ, s(EHLO, 1), s(XFWD, 0), close="wait"))
add(
    one(
        "no_esmtp",
        ("-e",),
        s(EHLO, 1),
        s(LHLO, 1),
        s(HELO, 1),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)
add(one("t5_pix", ("-P",), s(EHLO, 1), s(HELO, 1), s(QUIT, 1), close="wait"))
add(one("pix_hostname", ("-P", "-h", "foo"), s(HELO, 1), s(EHLO, 1), s(QUIT, 1), close="wait"))
add(
    one(
        "lmtp_no_esmtp",
        ("-L", "-e"),
        s(EHLO, 1),
        s(HELO, 1),
        s(LHLO, 1),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)
add(one("hostname", ("-h", "mx.example.org"), s(EHLO, 1), s(HELO, 1), s(QUIT, 1), close="wait"))
add(one("hostname_no_esmtp", ("-h", "mx.example.org", "-e"), s(HELO, 1), s(EHLO, 1)))
add(one("tcp_window", ("-T", "65536"), *T1, close="wait"))
add(one("syslog_commands", ("-s", "connect,helo,ehlo,mail,rcpt,data,.,quit"), *T1, close="wait"))
add(one("verbose", ("-v",), *T1, close="wait"))
add(one("ipv4_only", ("-4",), *T1, close="wait"))
add(one("chroot_root", ("-R", "/"), *T1, close="wait"))

# ---- the greeting ("connect") ------------------------------------------------------------
add(
    one(
        "connect_hard_reject",
        ("-f", "connect"),
        s(EHLO, 1),
        s(HELO, 1),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "connect_soft_reject",
        ("-r", "connect"),
        s(EHLO, 1),
        s(HELO, 1),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)
add(one("connect_421", ("-Q", "connect"), close="wait"))
add(one("connect_drop", ("-q", "connect"), close="wait"))

# ---- -f / -r / -q / -Q on each command ----------------------------------------------------
SIMPLE = {
    "helo": HELO,
    "ehlo": EHLO,
    "mail": MAIL,
    "rset": RSET,
    "noop": NOOP,
    "vrfy": b"VRFY x\r\n",
    "quit": QUIT,
}
SIMPLE_LIST = "HELO,EHLO,MAIL,RSET,NOOP,VRFY,QUIT"
for flag, kind in (("-f", "hard"), ("-r", "soft")):
    for name, cmd in SIMPLE.items():
        after = s(RCPT, 1) if name == "mail" else s(XFWD, 1)
        add(one(f"{kind}_reject_{name}", (flag, SIMPLE_LIST), s(cmd, 1), after, s(cmd, 1)))
    add(
        one(
            f"{kind}_reject_rcpt",
            (flag, "RCPT"),
            s(EHLO, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(RCPT2, 1),
            s(DATA, 1),
            s(RSET, 1),
            s(QUIT, 1),
            close="wait",
        )
    )
    add(
        one(
            f"{kind}_reject_data",
            (flag, "DATA"),
            s(DATA, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(DATA, 1),
            s(RSET, 1),
            s(QUIT, 1),
            close="wait",
        )
    )
    add(
        one(
            f"{kind}_reject_dot",
            (flag, "."),
            s(b".\r\n", 1),
            *TXN,
            s(MAIL, 1),
            s(QUIT, 1),
            close="wait",
        )
    )
    add(
        one(
            f"{kind}_reject_lhlo_and_dot_lmtp_three_rcpts",
            ("-L", flag, "LHLO,."),
            s(LHLO, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(RCPT2, 1),
            s(RCPT3, 1),
            s(DATA, 1),
            s(MSG, 3),
            s(QUIT, 1),
            close="wait",
        )
    )
for flag, kind in (("-q", "drop"), ("-Q", "421")):
    other = "-Q" if flag == "-q" else "-q"
    for name, cmd in SIMPLE.items():
        # the XFORWARD reply is still buffered when the connection is closed: it is flushed
        add(one(f"{kind}_on_{name}", (flag, SIMPLE_LIST), s(XFWD + cmd + NOOP, 0), close="wait"))
    add(one(f"{kind}_on_rcpt", (flag, "RCPT"), s(MAIL + RCPT + NOOP, 0), close="wait"))
    add(
        one(
            f"{kind}_on_data",
            (flag, "DATA"),
            s(HELO + MAIL + b"RCPT TO:<c@d>\r\n" + DATA, 0),
            close="wait",
        )
    )
    add(one(f"{kind}_on_data_without_rcpt", (flag, "DATA"), s(DATA, 0), close="wait"))
    add(
        one(
            f"{kind}_on_dot",
            (flag, "."),
            s(MAIL, 1),
            s(RCPT, 1),
            s(DATA, 1),
            s(MSG, 0),
            close="wait",
        )
    )
    add(one(f"{kind}_on_typed_dot", (flag, "."), s(NOOP + b".\r\n" + NOOP, 0), close="wait"))
    lmtp = ("-L", flag, "LHLO", other, ".")
    add(one(f"{kind}_on_lhlo_lmtp", lmtp, s(NOOP + LHLO, 0), close="wait"))
    add(
        one(
            f"{'421' if flag == '-q' else 'drop'}_on_dot_lmtp",
            lmtp,
            s(MAIL, 1),
            s(RCPT, 1),
            s(RCPT2, 1),
            s(DATA, 1),
            s(MSG, 0),
            close="wait",
        )
    )
add(one("t4_421_on_mail", ("-Q", "MAIL"), s(EHLO, 1), s(MAIL, 0), close="wait"))
add(
    one(
        "t9_drop_on_data_pending_replies",
        ("-q", "DATA"),
        s(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 0),
        close="wait",
    )
)

# ---- custom reply texts -------------------------------------------------------------------
add(
    one(
        "custom_reply_texts",
        (
            "-f",
            "HELO,RCPT",
            "-r",
            "MAIL,NOOP",
            "-B",
            "554 5.7.1 Go away",
            "-b",
            "451 4.7.1 Try again later",
        ),
        s(HELO, 1),
        s(NOOP, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(EHLO, 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "custom_reply_texts_edge",
        ("-r", "NOOP", "-b", "450x", "-f", "VRFY", "-B", "599"),
        s(NOOP, 1),
        s(b"VRFY x\r\n", 1),
        s(b"RSET\r\n", 1),
    )
)
add(
    one(
        "t10_lmtp_soft_reject_dot_custom_text",
        ("-L", "-r", ".", "-b", "452 4.2.2 mailbox full"),
        s(b"LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n", 5),
        s(b"x\r\n.\r\n", 2),
        s(QUIT, 1),
        close="wait",
    )
)

# ---- LMTP ------------------------------------------------------------------------------------
L = ("-L",)
add(
    one(
        "t2_lmtp_two_rcpts",
        L,
        s(LHLO, 1),
        s(MAIL, 1),
        s(b"RCPT TO:<one@example.com>\r\n", 1),
        s(RCPT2, 1),
        s(DATA, 1),
        s(b"Subject: hello\r\n\r\nbody\r\n.\r\n", 2),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "lmtp_three_rcpts_then_second_message",
        L,
        s(LHLO, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(RCPT2, 1),
        s(RCPT3, 1),
        s(DATA, 1),
        s(MSG, 3),
        s(MAIL, 1),
        s(RCPT, 1),
        s(RSET, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(MSG, 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(one("lmtp_helo_ehlo_unknown", L, s(HELO, 1), s(EHLO, 1), s(LHLO, 1), s(QUIT, 1), close="wait"))
add(
    one(
        "lmtp_pipelined",
        L,
        s(LHLO + MAIL + RCPT + RCPT2 + DATA, 5),
        s(b"x\r\n.\r\nQUIT\r\n", 3),
        close="wait",
    )
)
add(
    one(
        "lmtp_rejected_rcpts",
        ("-L", "-f", "RCPT"),
        s(LHLO, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(RCPT2, 1),
        s(DATA, 1),
        s(QUIT, 1),
        close="wait",
    )
)

# ---- delays (integral seconds only: Postfix takes no fractions) -------------------------------
add(
    one(
        "t12_data_delay_pipelined",
        ("-w", "1"),
        s(b"HELO x\r\nMAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\n", 4),
        s(b"x\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(one("data_delay_without_rcpt", ("-w", "1"), s(DATA, 1), s(QUIT, 1), close="wait"))
add(one("rcpt_delay", ("-W", "rcpt:1"), *TXN, s(QUIT, 1), close="wait"))
add(one("greeting_delay", ("-W", "connect:1"), s(NOOP, 1), s(QUIT, 1), close="wait"))
add(one("quit_delay", ("-W", "quit:1"), s(NOOP, 1), s(QUIT, 1), close="wait"))
add(one("dot_delay", ("-W", ".:1"), *TXN, s(QUIT, 1), close="wait"))
add(one("rejected_command_not_delayed", ("-W", "noop:1", "-f", "noop"), s(NOOP, 1), s(RSET, 1)))
add(one("data_read_delay", ("-H", "1"), *TXN, s(QUIT, 1), close="wait"))
for delay in ("0", "1"):
    add(
        one(
            f"abort_after_data_{delay}",
            ("-A", delay),
            s(HELO + MAIL + RCPT, 3),
            s(DATA, 2),
            close="wait",
        )
    )
add(
    one(
        "abort_not_triggered_by_refused_data",
        ("-A", "0"),
        s(DATA, 1),
        s(MAIL, 1),
        s(DATA, 1),
        s(QUIT, 1),
        close="wait",
    )
)

# ---- idle timeout and too-long lines, with stderr ---------------------------------------------
# -t 2, not 1: a loaded CI machine once stalled the client for a second between two steps.
add(one("idle_timeout", ("-t", "2"), s(NOOP, 1), close="wait", stderr=True))
add(
    one(
        "idle_timeout_in_data",
        ("-t", "2"),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"partial", 0),
        close="wait",
        stderr=True,
    )
)
add(one("line_2047_dropped_warning", D, s(NOOP, 1), s(LONG_2047, 0), close="wait", stderr=True))

# ---- counters (-c), -n, -M ---------------------------------------------------------------------
add(
    multi(
        "counters_two_sessions",
        ("-c",),
        sess(s(HELO, 1), *TXN, *TXN, s(QUIT, 1), close="wait"),
        sess(s(NOOP, 1)),
    )
)
add(
    multi(
        "counters_quit_count_1",
        ("-c", "-n", "1"),
        sess(s(NOOP, 1), s(QUIT, 1), close="wait"),
        expect_exit=True,
    )
)
add(
    multi(
        "counters_quit_count_2_eof_not_counted",
        ("-c", "-n", "2"),
        sess(s(QUIT, 1), close="wait"),
        sess(s(NOOP, 1)),
        sess(s(HELO, 1), *TXN, s(QUIT, 1), close="wait"),
        expect_exit=True,
    )
)
add(
    multi(
        "counters_message_count_not_reached",
        ("-c", "-M", "2"),
        sess(s(HELO, 1), *TXN, s(QUIT, 1), close="wait"),
    )
)
add(multi("counters_rejected_dot_counted", ("-c", "-f", "."), sess(*TXN, s(QUIT, 1), close="wait")))
add(
    multi(
        "counters_421_on_connect",
        ("-c", "-Q", "connect"),
        sess(close="wait"),
        sess(close="wait"),
    )
)
add(
    multi(
        "counters_lmtp",
        ("-c", "-L"),
        sess(
            s(LHLO, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(RCPT2, 1),
            s(DATA, 1),
            s(MSG, 2),
            s(QUIT, 1),
            close="wait",
        ),
    )
)

# ---- dump files ------------------------------------------------------------------------------
SINGLE = ("-d", "{dump}/single/%Y/msg.")
SMTPLIB_LIKE = (
    s(EHLO, 1),
    s(b"mail FROM:<sender@example.com>\r\n", 1),
    s(b"rcpt TO:<one@example.com>\r\n", 1),
    s(b"rcpt TO:<two@example.com>\r\n", 1),
    s(b"data\r\n", 1),
    s(
        b"Subject: dump test\r\nFrom: sender@example.com\r\n\r\nfirst line\r\n"
        b"..line starting with a dot\r\n\r\nlast line\r\n.\r\n",
        1,
    ),
    s(b"mail FROM:<>\r\n", 1),
    s(b"rcpt TO:<three@example.com>\r\n", 1),
    s(b"data\r\n", 1),
    s(b"Subject: second\r\n\r\nsecond body\r\n.\r\n", 1),
    s(b"mail FROM:<x@example.com>\r\n", 1),
    s(b"rcpt TO:<y@example.com>\r\n", 1),
    s(b"rset\r\n", 1),
    s(QUIT, 1),
)
add(
    one(
        "dump_d_two_messages_and_rset", (*SINGLE, "-h", "sink.example"), *SMTPLIB_LIKE, close="wait"
    )
)
add(one("dump_d_umask_000", SINGLE, *SMTPLIB_LIKE, close="wait", umask=0o000))
add(one("dump_d_umask_077", SINGLE, *SMTPLIB_LIKE, close="wait", umask=0o077))
add(
    one(
        "dump_D_shared_mbox",
        ("-D", "{dump}/shared/%Y.mbox", "-S", "From MAILER-DAEMON\\n"),
        *SMTPLIB_LIKE,
        close="wait",
    )
)
add(
    one(
        "dump_S_escapes_no_helo",
        ("-d", "{dump}/m/msg.", "-S", "START\\n\\101\\tX\\q\\\\"),
        s(b"MAIL FROM:<nohelo@x>\r\n", 1),
        s(b"RCPT TO:<a>\r\n", 1),
        s(DATA, 1),
        s(b"no helo\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_S_more_escapes",
        ("-d", "{dump}/m/msg.", "-S", '\\a\\b\\f\\r\\v\\0777\\x41\\"\\1\\12end\\'),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"x\r\n.\r\n", 1),
    )
)
add(
    one(
        "dump_S_nul_truncates",
        ("-d", "{dump}/m/msg.", "-S", "AB\\0CD\\n"),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"x\r\n.\r\n", 1),
    )
)
add(
    one(
        "dump_empty_helo_mail_rcpt",
        SINGLE,
        s(b"HELO\r\n", 1),
        s(b"MAIL\r\n", 1),
        s(b"RCPT\r\n", 1),
        s(DATA, 1),
        s(b"empty helo\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_odd_args_and_data",
        SINGLE,
        s(b"HELO  \tweird\thelo \r\n", 1),
        s(b"MAIL FROM:<a>  SIZE=10 BODY=8BITMIME\r\n", 1),
        s(b"RCPT  TO:  <b>  NOTIFY=NEVER\r\n", 1),
        s(b"RCPT TO::<c>\r\n", 1),
        s(b"RCPT x\r\n", 1),
        s(DATA, 1),
        s(
            b"bare\rcr and bare\nlf\r\n.no stuff\r\n\xff\x00\x80binary\r\n.\r\r\n..\r\n"
            b"end\r\n\r\n.\r\n",
            1,
        ),
        s(b"EHLO \xe4\x7f\x01 x\r\n", 1),
        s(b"MAIL FROM: \t<\xe4\x7f\tx> \r\n", 1),
        s(b"RCPT TO:::::   <y>\r\n", 1),
        s(b"RCPT FROM <z>\r\n", 1),
        s(DATA, 1),
        s(b"\r\n\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_empty_messages",
        SINGLE,
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b".\r\n", 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_hard_reject_dot_kept",
        (*SINGLE, "-f", "."),
        s(EHLO, 1),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_drop_on_dot_kept",
        (*SINGLE, "-q", "."),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(MSG, 0),
        close="wait",
    )
)
add(
    multi(
        "dump_aborted_transactions",
        SINGLE,
        sess(
            s(MAIL, 1),
            s(RCPT, 1),
            s(RSET, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(HELO, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(EHLO, 1),
            s(MAIL, 1),
            s(RCPT, 1),
            s(QUIT, 1),
            close="wait",
        ),
        sess(s(MAIL, 1), s(RCPT, 1), s(DATA, 1), s(b"partial\r\n", 0)),
        sess(s(MAIL, 1), s(RCPT, 1), s(LONG_2047, 0), close="wait"),
        sess(s(MAIL, 1)),
    )
)
add(
    one(
        "dump_hard_reject_data_then_rset",
        (*SINGLE, "-f", "data"),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(RSET, 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_abort_after_data",
        (*SINGLE, "-A", "0"),
        s(HELO + MAIL + RCPT, 3),
        s(DATA, 2),
        close="wait",
    )
)
add(
    one(
        "dump_nested_mail",
        SINGLE,
        s(b"MAIL FROM:<first@x>\r\n", 1),
        s(b"MAIL FROM:<second@x>\r\n", 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(MSG, 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_helo_survives_rset_rejected_helo_ignored",
        (*SINGLE, "-r", "HELO"),
        s(b"EHLO one.example\r\n", 1),
        s(MAIL, 1),
        s(RSET, 1),
        s(b"HELO two.example\r\n", 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(b"first\r\n.\r\n", 1),
        s(b"EHLO three.example\r\n", 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(b"HELO four.example\r\n", 1),
        s(DATA, 1),
        s(b"second\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_lmtp",
        ("-L", *SINGLE),
        s(b"LHLO lmtp.client\r\n", 1),
        s(b"MAIL FROM:<a>\r\n", 1),
        s(b"RCPT TO:<b>\r\n", 1),
        s(b"RCPT TO:<c>\r\n", 1),
        s(DATA, 1),
        s(b"hi\r\n.\r\n", 2),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    one(
        "dump_unix_socket",
        SINGLE,
        s(b"HELO local-client\r\n", 1),
        s(b"MAIL FROM:<a>\r\n", 1),
        s(b"RCPT TO:<b>\r\n", 1),
        s(DATA, 1),
        s(b"via unix\r\n.\r\n", 1),
        s(QUIT, 1),
        close="wait",
        family="unix",
    )
)
add(
    one(
        "dump_ipv6_lmtp",
        ("-L", *SINGLE),
        s(b"LHLO v6client\r\n", 1),
        s(b"MAIL FROM:<a>\r\n", 1),
        s(b"RCPT TO:<b>\r\n", 1),
        s(b"RCPT TO:<c>\r\n", 1),
        s(DATA, 1),
        s(b"hi\r\n.\r\n", 2),
        s(QUIT, 1),
        close="wait",
        family="inet6",
    )
)
add(
    one(
        "dump_large_message",
        ("-D", "{dump}/big.mbox"),
        s(EHLO, 1),
        s(MAIL, 1),
        s(RCPT, 1),
        s(DATA, 1),
        s(big_message(), 1),
        s(QUIT, 1),
        close="wait",
    )
)
add(
    multi(
        "dump_D_three_sessions",
        ("-D", "{dump}/%Y/all.mbox", "-S", "--\\n"),
        sess(s(b"HELO first\r\n", 1), *TXN, s(QUIT, 1), close="wait"),
        sess(s(b"EHLO second\r\n", 1), *TXN, s(QUIT, 1), close="wait"),
        sess(*TXN),
    )
)
add(
    one(
        "dump_d_prefix_only_template_pipelined",
        ("-d", "{dump}/p/"),
        s(EHLO + (MAIL + RCPT + DATA + b"pipelined\r\n.\r\n") * 2 + QUIT, 10),
        close="wait",
    )
)
add(
    one(
        "dump_d_strftime_percent",
        ("-d", "{dump}/%Y/%%/x-"),
        *TXN,
        s(QUIT, 1),
        close="wait",
    )
)

# ---- other transports --------------------------------------------------------------------------
add(one("unix_socket_session", D, *T1, close="wait", family="unix"))
add(one("ipv6_session", D, *T1, close="wait", family="inet6"))
add(
    one(
        "ipv6_pipelined",
        D,
        s(EHLO + MAIL + RCPT + DATA, 4),
        s(MSG + QUIT, 2),
        close="wait",
        family="inet6",
    )
)

_names = [d.name for d in DIALOGUES]
assert len(_names) == len(set(_names)), "dialogue names must be unique"


# --------------------------------------------------------------------------------------
# the test


@pytest.mark.postfix
@pytest.mark.parametrize("dialogue", DIALOGUES, ids=str)
def test_dialogue(dialogue: Dialogue, server_pool: ServerPool) -> None:
    if dialogue.family == "inet6" and not ipv6_loopback_available():
        pytest.skip("IPv6 loopback ::1 is not available")
    problems = dialogue_problems(server_pool, dialogue)
    if problems:
        pytest.fail(problems, pytrace=False)
