"""Seeded random command lines and dialogues for the differential tests.

``command_lines(seed, n)`` mixes every option letter of the man page with values from
pools of valid, edge and bad ones (zero, negative, beyond a C int, junk suffixes, 8-bit
and control octets, empty strings, Postfix's own address forms and their errors).
``dialogues(seed, n)`` draws a configuration (of the options whose replies do not depend
on time) and client sessions: greetings, envelopes with parameters, DATA with dots and
8-bit bodies, RSET/NOOP/VRFY/XCLIENT/XFORWARD, lower case, junk, pipelined batches.

How many replies each step waits for comes from our own sans-IO protocol: when it and
Postfix disagree the replies differ anyway, and the dialogue fails (never passes unseen).

Left out of the dialogues, because README's differences already name them: AUTH (a real
exchange in ours), timed options (``-w``/``-W``/``-t``/``-H``/``-A``), ``-n``/``-M``, a
typed ``.`` in LMTP mode, partial command lines, and lines pipelined after DATA (Postfix
holds the 354 back until they are read).
"""

from __future__ import annotations

import dataclasses
import os
import random

from pytest_smtp_sink.core.argv import parse_argv
from pytest_smtp_sink.core.events import Close, MessageReceived
from pytest_smtp_sink.core.protocol import SinkProtocol

from .sinkdiff import DUMP_PLACEHOLDER, Dialogue, Session, Step, count_replies

#: where the side's free port goes in a generated address
PORT = "{port}"

# ------------------------------------------------------------------ command lines

NUMBERS = [
    "1", "5", "100", "0", "-1", "-7", "007", " 3", "+4", "5x", "x", "", "0x10",
    "2147483647", "2147483648", "4294967296", "4294967297", "99999999999999999999",
    "-2147483649",
]  # fmt: skip
# ours takes decimals (README: Differences); each with the whole number Postfix would need
FRACTIONS = {"0.5": "1", "1.5": "2", ".5": "1", "2.": "2", "data:0.5": "data:1"}
REPLIES = [
    "450", "550", "452 4.2.2 mailbox full", "554 5.7.1 no", "4501", "45", "5", "", "x450",
    "450x", "4\xff", "5\u00e9", "452 a\tb", "553-multi",
]  # fmt: skip
COMMANDS = [
    "connect", "helo", "ehlo", "lhlo", "xclient", "xforward", "auth", "mail", "rcpt",
    "data", ".", "rset", "noop", "vrfy", "quit", "MAIL", "Rcpt", "bogus", "etrn",
    "starttls", "bdat", "rcpt\xff", "data\x01", "",
]  # fmt: skip
SEPARATORS = [",", " ", ", ", "\t", ",,"]
DELAY_SPECS = [
    "data:1", "rcpt:1:50", "data::1", "::data::1::", "data", ":data", "data:", "data::",
    "data:0", "data:-1", "data:x", "data:1x", "data:1:", "data:1:100", "data:1:-1",
    "data:1:4294967297", "data:4294967296", "bogus:1", "data,rcpt:1", "data:1:2:3",
    "", ":", "DaTa:1", "data\t:1", "bdat:1",
]  # fmt: skip
HOSTNAMES = ["sink.example", "", "h\xff", "a b", "x" * 300]
TEMPLATES = [f"{DUMP_PLACEHOLDER}/x.", f"{DUMP_PLACEHOLDER}/%Y/", f"{DUMP_PLACEHOLDER}/m-"]
START_STRINGS = ["From x\\n", "", "\\101\\t", "\\", "\\0tail"]
USERS = ["nobody", "nosuchuser", "", "0"]
ROOTS = ["/nonexistent", "", "/"]
ADDRESSES = [
    f"127.0.0.1:{PORT}", f"127.0.0.1:{PORT}", f"127.0.0.1:{PORT}", f"inet:127.0.0.1:{PORT}",
    f"[127.0.0.1]:{PORT}", f"[::1]:{PORT}", f"[ipv6:::1]:{PORT}", f"[IPv6:::1]:{PORT}",
    f"::1:{PORT}", f"localhost:{PORT}",
    "127.0.0.1:", "127.0.0.1:25x", "127.0.0.1:2a5", f"[127.0.0.1]x:{PORT}", "[127.0.0.1",
    f"300.1.1.1:{PORT}", f"[]:{PORT}", "127.0.0.1:-1", f"[ipv6:127.0.0.1]:{PORT}",
    f"1.2.3:{PORT}", f"a..b:{PORT}", f"localhost.:{PORT}", f"\xff:{PORT}",
    f"INET:127.0.0.1:{PORT}", "inet:", "[::1]", "127.0.0.1", "127.0.0.1#25",
    "127.0.0.1:nosuchservice", f"0.1.2.3:{PORT}", "unix:", "unix:/nonexistent/dir/sock",
]  # fmt: skip
BACKLOGS = ["10", "10", "10", "1", "0", "-1", "x", "5x", " 5", "2147483648", "4294967297"]
SWITCHES = "468acCeEFLpPv"
BAD_LETTERS = ["-Z", "-x", "-\xff", "--foo", "-"]


@dataclasses.dataclass(frozen=True)
class CommandLine:
    """A generated command line; ``{port}`` and ``{dump}`` are filled in per side."""

    index: int
    args: tuple[str, ...]
    #: documented differences it may show (README: Differences from Postfix)
    features: frozenset[str]
    #: ``args`` without the documented features (fractions made whole numbers, an empty
    #: dump template made a real one): what the rules compare with
    variant: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"cmdline{self.index}"


def _command_list(rng: random.Random) -> str:
    names = rng.sample(COMMANDS, rng.randint(0, 3))
    return rng.choice(SEPARATORS).join(names)


def _number(rng: random.Random, features: set[str]) -> str:
    if rng.random() < 0.06:
        features.add("fraction")
        return rng.choice(["0.5", "1.5", ".5", "2."])
    return rng.choice(NUMBERS)


def _option(rng: random.Random, features: set[str]) -> list[str]:
    letter = rng.choice("468acCeEFLpPv" + "AbBdDfhHmMnqQrRsStTuwW" * 2)
    if letter in SWITCHES:
        return [f"-{letter}"]
    if letter in "tHmMnTwA":
        value = _number(rng, features)
    elif letter in "bB":
        value = rng.choice(REPLIES)
    elif letter in "fqQrs":
        value = _command_list(rng)
    elif letter == "W":
        value = rng.choice(DELAY_SPECS)
        if rng.random() < 0.05:
            features.add("fraction")
            value = "data:0.5"
    elif letter in "dD":
        value = rng.choice(TEMPLATES)
        if rng.random() < 0.1:
            features.add("empty template")
            value = ""
    elif letter == "h":
        value = rng.choice(HOSTNAMES)
    elif letter == "S":
        value = rng.choice(START_STRINGS)
    elif letter == "u":
        value = rng.choice(USERS)
    else:  # R
        value = rng.choice(ROOTS)
    if rng.random() < 0.3:
        return [f"-{letter}{value}"] if value else [f"-{letter}", value]
    return [f"-{letter}", value]


def command_lines(seed: int, count: int) -> list[CommandLine]:
    rng = random.Random(seed)
    out: list[CommandLine] = []
    for index in range(count):
        features: set[str] = set()
        args: list[str] = []
        for _ in range(rng.randint(0, 4)):
            args += _option(rng, features)
        if rng.random() < 0.08:
            bad = rng.choice(BAD_LETTERS)
            if bad.startswith("--"):
                features.add("long option")
            args.insert(rng.randint(0, len(args)), bad)
        if rng.random() < 0.05:  # an option without its argument, at the end
            args.append(rng.choice(["-t", "-f", "-W", "-b"]))
        address = rng.choice(ADDRESSES) if rng.random() < 0.35 else ADDRESSES[0]
        operands = [address, rng.choice(BACKLOGS) if rng.random() < 0.25 else "10"]
        shape = rng.random()
        if shape < 0.04:
            operands = operands[:1]
        elif shape < 0.07:
            operands.append("extra")
        # a surrogate stands for an 8-bit octet that is not UTF-8 (as os.fsdecode gives it)
        typed = tuple(os.fsdecode(a.encode("latin-1")) if _is_8bit(a) else a for a in args)
        variant: tuple[str, ...] = ()
        if features & {"fraction", "empty template"}:
            plain = [_whole(a) for a in typed]
            for i in range(1, len(plain)):
                if plain[i - 1] in ("-d", "-D") and plain[i] == "":
                    plain[i] = TEMPLATES[0]
            variant = (*plain, *operands)
        out.append(CommandLine(index, (*typed, *operands), frozenset(features), variant))
    return out


def _whole(arg: str) -> str:
    """An option argument (or attached ``-t0.5``) with its fraction made a whole number."""
    for fraction, whole in FRACTIONS.items():
        for prefix in ("", *(f"-{c}" for c in "tHmMnTwAW")):
            if arg == prefix + fraction:
                return prefix + whole
    return arg


def _is_8bit(text: str) -> bool:
    return any(0x80 <= ord(c) <= 0xFF for c in text) and all(ord(c) <= 0xFF for c in text)


# ------------------------------------------------------------------ dialogues

CONFIG_FLAGS = [
    ["-L"], ["-e"], ["-E"], ["-8"], ["-a"], ["-C"], ["-F"], ["-p"], ["-P"], ["-c"],
    ["-h", "sink.example"], ["-b", "452 4.2.2 mailbox full"], ["-B", "554 5.7.1 no"],
    ["-d", f"{DUMP_PLACEHOLDER}/x."], ["-D", f"{DUMP_PLACEHOLDER}/all"],
    ["-d", f"{DUMP_PLACEHOLDER}/%Y/"], ["-S", "From x\\n"], ["-s", "mail,rcpt"],
]  # fmt: skip
POLICY_COMMANDS = ["helo", "ehlo", "mail", "rcpt", "data", ".", "rset", "noop", "vrfy",
                   "xclient", "xforward"]  # fmt: skip
ADDRS = [b"<a@example.com>", b"<>", b"<b@example.org> SIZE=10 BODY=8BITMIME", b"a@b",
         b"<\xe9@x.example>", b" <c@d>", b"<x@[127.0.0.1]>", b""]  # fmt: skip
BODY_LINES = [b"Subject: hi", b"", b".", b"..", b".x", b"\xe9t\xe9", b"a\0b", b"x" * 990,
              b"From: <a@example.com>", b"\tfolded"]  # fmt: skip


def _line(rng: random.Random, lmtp: bool) -> bytes:
    kind = rng.random()
    if kind < 0.12:
        return rng.choice([b"HELO", b"EHLO", b"LHLO", b"helo", b"ehlo"]) + rng.choice(
            [b" client.example", b"", b" [127.0.0.1]", b" x y"]
        )
    if kind < 0.3:
        return rng.choice([b"MAIL FROM:", b"mail from:", b"MAIL", b"MAIL TO:"]) + rng.choice(ADDRS)
    if kind < 0.5:
        return rng.choice([b"RCPT TO:", b"rcpt to:", b"RCPT"]) + rng.choice(ADDRS)
    if kind < 0.62:
        return b"DATA" if rng.random() < 0.8 else b"data x"
    options = [b"RSET", b"NOOP", b"noop x", b"VRFY a@b", b"VRFY", b"XCLIENT NAME=x",
               b"XFORWARD ADDR=1.2.3.4", b"ETRN x", b"", b"   ", b"\xff\xfe", b"N\0OP",
               b"QUIT", b"X" * 2100]  # fmt: skip
    if not lmtp:
        options.append(b".")
    return rng.choice(options)


def _session(rng: random.Random, lmtp: bool) -> list[tuple[str, bytes]]:
    """The session's units, each (kind, bytes): one command line, a DATA body with its
    ".", or a batch of pipelined commands (no DATA inside: RFC 2920 makes it the last)."""
    units: list[tuple[str, bytes]] = []
    for _ in range(rng.randint(1, 9)):
        line = _line(rng, lmtp)
        if line.upper().startswith(b"DATA"):
            units.append(("data", line + b"\r\n"))
            # LMTP: no "." inside (what follows it would be typed, the "." last included)
            lines = [b for b in BODY_LINES if not (lmtp and b == b".")]
            body = [rng.choice(lines) for _ in range(rng.randint(0, 5))]
            units.append(("body", b"".join(b + b"\r\n" for b in body) + b".\r\n"))
        elif rng.random() < 0.15:  # pipelined with the next one or two
            batch = [_line(rng, lmtp) for _ in range(rng.randint(2, 3))]
            batch = [b for b in batch if not b.upper().startswith(b"DATA")]
            units.append(("batch", b"".join(b + b"\r\n" for b in [line, *batch])))
        else:
            units.append(("line", line + b"\r\n"))
    if rng.random() < 0.5:
        units.append(("line", b"QUIT\r\n"))
    return units


def _predict(options: list[str], units: list[bytes]) -> tuple[int, list[bytes]]:
    """The replies to the greeting (how many) and to each unit, by our sans-IO protocol."""
    config = parse_argv(
        [o.replace(DUMP_PLACEHOLDER, "/nonexistent") for o in options] + ["127.0.0.1:25", "10"]
    ).config
    proto = SinkProtocol(config, "127.0.0.1", collect=True, rng=random.Random(0), clock=lambda: 1e9)
    closed = False

    def pump() -> bytes:
        nonlocal closed
        output = b""
        while True:
            output += proto.take_output()
            events = proto.take_events()
            if not events:
                return output
            for event in events:
                if isinstance(event, MessageReceived):
                    proto.message_stored(True)
                elif isinstance(event, Close):
                    closed = True

    proto.start()
    greeting, _ = count_replies(pump())
    outputs: list[bytes] = []
    for unit in units:
        if closed:
            outputs.append(b"")
            continue
        proto.receive(unit)
        outputs.append(pump())
    return greeting, outputs


def _steps(options: list[str], units: list[tuple[str, bytes]], lmtp: bool) -> Session:
    while True:
        greeting, outputs = _predict(options, [u for _, u in units])
        # LMTP: a "." typed outside DATA is a documented difference: drop the body of a
        # DATA that was refused, then predict again.
        refused = [
            i for i, (kind, _) in enumerate(units)
            if lmtp and kind == "data" and not outputs[i].startswith(b"354")
            and i + 1 < len(units) and units[i + 1][0] == "body"
        ]  # fmt: skip
        if not refused:
            break
        del units[refused[0] + 1]
    steps = tuple(
        Step(u, count_replies(out)[0]) for (_, u), out in zip(units, outputs, strict=True)
    )
    return Session(steps, greeting=greeting)


def dialogues(seed: int, count: int) -> list[Dialogue]:
    rng = random.Random(seed)
    out: list[Dialogue] = []
    for index in range(count):
        options: list[str] = []
        for flags in rng.sample(CONFIG_FLAGS, rng.randint(0, 4)):
            if flags[0] in ("-d", "-D") and any(o in ("-d", "-D") for o in options):
                continue
            options += flags
        for letter in rng.sample("fqQr", rng.randint(0, 2)):
            names = rng.sample(POLICY_COMMANDS, rng.randint(1, 2))
            options += [f"-{letter}", ",".join(names)]
        if "-c" in options and any(o in ("-d", "-D") for o in options):
            options.remove("-c")  # the harness's dump barrier is a session -c would count
        lmtp = "-L" in options
        sessions: list[Session] = []
        for _ in range(rng.randint(1, 2)):
            sessions.append(_steps(options, _session(rng, lmtp), lmtp))
        out.append(Dialogue(f"dialogue{index}", tuple(options), tuple(sessions), fresh=True))
    return out
