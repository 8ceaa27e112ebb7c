"""SinkConfig, the Postfix command line (parse_argv) and marker/ini values (from_options).

Error texts are those of Postfix smtp-sink 3.7 (reference §1.1), without the
``smtp-sink: fatal:`` prefix that the CLI adds.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_smtp_sink.core.argv import Invocation, parse_argv
from pytest_smtp_sink.core.config import SinkConfig, from_options
from pytest_smtp_sink.core.endpoint import Endpoint, ListenError
from pytest_smtp_sink.core.errors import ConfigError, UsageError, printable
from pytest_smtp_sink.core.options import OPTSTRING, USAGE
from pytest_smtp_sink.core.values import (
    COMMAND_NAMES,
    DEFAULT_HARD_REPLY,
    DEFAULT_SOFT_REPLY,
    atof,
    atoi,
    parse_commands,
    parse_delay_spec,
    unescape,
)

ADDR = ["127.0.0.1:25", "10"]


def cfg(*opts: str) -> SinkConfig:
    return parse_argv([*opts, *ADDR]).config


def fatal(*opts: str, args: list[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_argv([*opts, *(ADDR if args is None else args)])
    return info.value


# ----------------------------------------------------------------------- defaults


def test_defaults() -> None:
    c = cfg()
    assert c == SinkConfig()
    assert c.family == "inet"
    assert c.max_connections == 256
    assert c.tcp_window is None
    assert (c.eightbitmime, c.auth, c.xclient, c.xforward) == (True, True, True, True)
    assert (c.esmtp, c.enhanced_status_codes, c.dsn, c.pipelining) == (True, True, True, True)
    assert (c.pix, c.lmtp, c.counters) == (False, False, False)
    assert c.hostname == "smtp-sink"
    assert c.soft_bounce_reply == "450 4.3.0 Error: command failed" == DEFAULT_SOFT_REPLY
    assert c.hard_bounce_reply == "500 5.3.0 Error: command failed" == DEFAULT_HARD_REPLY
    assert c.reject == c.soft_reject == c.disconnect == c.disconnect_421 == frozenset()
    assert c.log_commands == frozenset()
    assert c.delays == {}
    assert c.data_delay is None
    assert c.abort_delay is None and c.data_read_delay is None
    assert c.timeout == 100.0
    assert c.dump_template is None and c.dump_file_template is None and not c.dumping
    assert c.start_string == ""
    assert c.max_messages is None and c.max_sessions is None
    assert c.user is None and c.chroot is None
    assert c.verbose == 0
    assert c.advertise_pipelining


def test_invocation_fields() -> None:
    inv = parse_argv(["-v", "127.0.0.1:2525", "7"])
    assert inv == Invocation(SinkConfig(verbose=1), "127.0.0.1:2525", 7)


def _getopt_letters(optstring: str) -> set[tuple[str, bool]]:
    """(letter, takes an argument) for each letter of a getopt string."""
    return {(c, optstring[i + 1 : i + 2] == ":") for i, c in enumerate(optstring) if c != ":"}


def test_optstring_is_postfix() -> None:
    # The getopt string of Postfix 3.7's smtp-sink.c (the order of letters does not matter).
    postfix = "468aA:b:B:cCd:D:eEf:Fh:H:Ln:m:M:NpPq:Q:r:R:s:S:t:T:u:vw:W:"
    assert _getopt_letters(OPTSTRING) == _getopt_letters(postfix)
    assert len(OPTSTRING) == len(postfix)


def test_usage_is_postfix() -> None:
    assert USAGE.format(prog="smtp-sink") == (
        "usage: smtp-sink [-468acCeEFLpPv] [-A abort_delay] [-b soft_bounce_reply]"
        " [-B hard_bounce_reply] [-d dump-template] [-D dump-template] [-f commands]"
        " [-h hostname] [-m max_concurrency] [-M message_quit_count] [-n quit_count]"
        " [-q commands] [-r commands] [-R root-dir] [-s commands] [-S start-string]"
        " [-u user_privs] [-w delay] [host]:port backlog"
    )


# ------------------------------------------------------------------ every option

FLAG_CASES: list[tuple[list[str], dict[str, Any]]] = [
    (["-4"], {"family": "inet4"}),
    (["-6"], {"family": "inet6"}),
    (["-8"], {"eightbitmime": False}),
    (["-a"], {"auth": False}),
    (["-A", "3"], {"abort_delay": 3.0}),
    (["-A", "0"], {"abort_delay": 0.0}),
    (["-b", "451 4.7.1 try later"], {"soft_bounce_reply": "451 4.7.1 try later"}),
    (["-B", "554 5.7.1 no"], {"hard_bounce_reply": "554 5.7.1 no"}),
    (["-c"], {"counters": True}),
    (["-C"], {"xclient": False}),
    (["-d", "/x/%Y/msg."], {"dump_template": "/x/%Y/msg."}),
    (["-D", "/x/%Y.mbox"], {"dump_file_template": "/x/%Y.mbox"}),
    (["-e"], {"esmtp": False}),
    (["-E"], {"enhanced_status_codes": False}),
    (["-f", "rcpt"], {"reject": frozenset({"RCPT"}), "pipelining": False}),
    (["-F"], {"xforward": False}),
    (["-h", "mx.example"], {"hostname": "mx.example"}),
    (["-H", "2"], {"data_read_delay": 2.0}),
    (["-L"], {"lmtp": True}),
    (["-m", "5"], {"max_connections": 5}),
    (["-M", "3"], {"max_messages": 3}),
    (["-n", "4"], {"max_sessions": 4}),
    (["-N"], {"dsn": False}),
    (["-p"], {"pipelining": False}),
    (["-P"], {"pix": True}),
    (["-q", "data"], {"disconnect": frozenset({"DATA"})}),
    (["-Q", "mail"], {"disconnect_421": frozenset({"MAIL"})}),
    (["-r", "."], {"soft_reject": frozenset({"."}), "pipelining": False}),
    (["-R", "/var/empty"], {"chroot": "/var/empty"}),
    (["-s", "connect"], {"log_commands": frozenset({"CONNECT"})}),
    (["-S", "START"], {"start_string": "START"}),
    (["-t", "7"], {"timeout": 7.0}),
    (["-T", "65536"], {"tcp_window": 65536}),
    (["-u", "nobody"], {"user": "nobody"}),
    (["-v"], {"verbose": 1}),
    (["-w", "2"], {"delays": {"DATA": (2.0, 0)}}),
    (["-W", "rcpt:3:25"], {"delays": {"RCPT": (3.0, 25)}}),
]


@pytest.mark.parametrize(
    ("opts", "expected"), FLAG_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_each_option(opts: list[str], expected: dict[str, Any]) -> None:
    assert cfg(*opts) == SinkConfig(**expected)


def test_every_option_letter_is_covered() -> None:
    letters = {c for c in OPTSTRING if c != ":"}
    covered = {opts[0][1] for opts, _ in FLAG_CASES}
    assert letters == covered


def test_derived_properties() -> None:
    assert cfg("-w", "2").data_delay == 2.0
    assert cfg("-W", "data:3:10").data_delay == 3.0
    assert cfg("-d", "x").dumping and cfg("-D", "x").dumping
    assert not cfg("-f", "rcpt").advertise_pipelining
    assert not cfg("-r", "rcpt").advertise_pipelining
    assert not cfg("-p").advertise_pipelining
    # -q and -Q do not imply -p (reference §7)
    assert cfg("-q", "rcpt", "-Q", "mail").advertise_pipelining


def test_f_and_r_with_empty_list_still_imply_p() -> None:
    assert not cfg("-f", "").advertise_pipelining
    assert not cfg("-r", " , ").advertise_pipelining
    assert cfg("-f", "").reject == frozenset()


def test_repeated_v_counts() -> None:
    assert cfg("-v", "-v", "-vv").verbose == 4


def test_grouped_flags() -> None:
    c = cfg("-cv8aCeEFLNpP")
    assert c.counters and c.verbose == 1 and not c.eightbitmime and not c.auth
    assert not c.xclient and not c.esmtp and not c.enhanced_status_codes and not c.xforward
    assert c.lmtp and not c.dsn and not c.pipelining and c.pix


def test_grouped_flags_ending_with_option_argument() -> None:
    c = cfg("-cvt", "5")
    assert c.counters and c.verbose == 1 and c.timeout == 5.0
    c = cfg("-cvt5")
    assert c.counters and c.verbose == 1 and c.timeout == 5.0


def test_attached_values() -> None:
    c = cfg("-t5", "-hmx.example", "-fRCPT", "-Wnoop:1", "-m3", "-S\\n")
    assert c.timeout == 5.0
    assert c.hostname == "mx.example"
    assert c.reject == {"RCPT"}
    assert c.delays == {"NOOP": (1.0, 0)}
    assert c.max_connections == 3
    assert c.start_string == "\n"


def test_option_value_may_start_with_dash() -> None:
    assert cfg("-h", "-v").hostname == "-v"
    assert cfg("-h", "-v").verbose == 0


def test_options_stop_at_first_non_option() -> None:
    # "-v" after the address is an argument, so there are three: a usage error.
    err = fatal(args=["127.0.0.1:25", "-v", "10"])
    assert isinstance(err, UsageError)
    assert str(err) == "wrong number of arguments"
    err = fatal(args=["127.0.0.1:25", "10", "-v"])
    assert str(err) == "wrong number of arguments"


def test_double_dash_ends_options() -> None:
    inv = parse_argv(["-v", "--", "-1:25", "10"])
    assert inv.address == "-1:25" and inv.config.verbose == 1


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:25", "[::1]:25", "::1:25", "unix:/tmp/sink.sock", "inet:host:2525", ":25", "25"],
)
def test_addresses_pass_through(address: str) -> None:
    inv = parse_argv(["-c", address, "5"])
    assert inv.address == address
    assert inv.backlog == 5


def test_backlog_atoi() -> None:
    assert parse_argv(["a:1", "12x"]).backlog == 12  # Postfix uses atoi()


@pytest.mark.parametrize("backlog", ["0", "-1", "x", ""])
def test_bad_backlog(backlog: str) -> None:
    err = fatal(args=["127.0.0.1:25", backlog])
    assert isinstance(err, UsageError) and err.usage
    assert str(err) == f"bad backlog: {backlog}"


@pytest.mark.parametrize("args", [[], ["127.0.0.1:25"], ["a:1", "2", "3"]])
def test_wrong_argument_count(args: list[str]) -> None:
    err = fatal("-v", args=args)
    assert isinstance(err, UsageError) and err.usage
    assert str(err) == "wrong number of arguments"


def test_unknown_option() -> None:
    err = fatal("-x")
    assert isinstance(err, UsageError) and err.usage
    assert str(err) == "invalid option -- 'x'"
    assert err.option == "-x"
    assert str(fatal("-cZ")) == "invalid option -- 'Z'"


@pytest.mark.parametrize(
    "letter",
    [
        c
        for c in OPTSTRING
        if c != ":" and OPTSTRING[OPTSTRING.index(c) + 1 : OPTSTRING.index(c) + 2] == ":"
    ],
)
def test_missing_option_argument(letter: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_argv([f"-{letter}"])
    assert str(info.value) == f"option requires an argument -- '{letter}'"
    assert info.value.usage


# ------------------------------------------------------------------- bad numbers


@pytest.mark.parametrize(
    ("opts", "text"),
    [
        (["-t", "0"], "bad timeout: 0"),
        (["-t", "-3"], "bad timeout: -3"),
        (["-t", "abc"], "bad timeout: abc"),
        (["-m", "0"], "bad concurrency limit: 0"),
        (["-m", "x"], "bad concurrency limit: x"),
        (["-M", "0"], "bad message quit count: 0"),
        (["-n", "0"], "bad quit count: 0"),
        (["-n", "-2"], "bad quit count: -2"),
        (["-T", "0"], "bad TCP window size: 0"),
        (["-H", "0"], "bad data read delay: 0"),
        (["-H", "soon"], "bad data read delay: soon"),
    ],
)
def test_bad_number_is_fatal(opts: list[str], text: str) -> None:
    err = fatal(*opts)
    assert str(err) == text
    assert not isinstance(err, UsageError) and not err.usage
    assert err.option == opts[0]


def test_numbers_are_parsed_like_atoi() -> None:
    # Postfix parses these with atoi(): trailing junk is ignored.
    c = cfg("-t", "5x", "-m", "7 ", "-M", "2y", "-n", "3z", "-T", "1024k", "-H", "1s")
    assert (c.timeout, c.max_connections, c.max_messages, c.max_sessions) == (5.0, 7, 2, 3)
    assert (c.tcp_window, c.data_read_delay) == (1024, 1.0)


def test_decimal_seconds_accepted() -> None:
    c = cfg("-t", "0.5", "-w", "0.25", "-A", "1.5", "-H", "0.1")
    assert c.timeout == 0.5 and c.data_delay == 0.25
    assert c.abort_delay == 1.5 and c.data_read_delay == 0.1


@pytest.mark.parametrize("value", ["x", "-1", "", "1x"])
def test_bad_abort_delay_is_usage_error(value: str) -> None:
    err = fatal("-A", value)
    assert isinstance(err, UsageError) and err.usage
    assert str(err) == f"bad abort delay: {value}"


@pytest.mark.parametrize("value", ["0", "x", "-1"])
def test_bad_w_is_usage_error(value: str) -> None:
    err = fatal("-w", value)
    assert isinstance(err, UsageError) and err.usage
    assert str(err) == f"bad delay: {value}"


# ------------------------------------------------------------------ reply texts


@pytest.mark.parametrize("text", ["450x", "450", "421 4.7.0 bye", "499-multi"])
def test_good_soft_reply(text: str) -> None:
    assert cfg("-b", text).soft_bounce_reply == text


@pytest.mark.parametrize("text", ["4500", "550x", "45", "x450", "", " 450 x", "550 5.0.0 no"])
def test_bad_soft_reply(text: str) -> None:
    err = fatal("-b", text)
    assert str(err) == f"bad soft error reply: {text}"
    assert err.usage and err.option == "-b"


@pytest.mark.parametrize("text", ["550x", "500", "554 5.7.1 go away"])
def test_good_hard_reply(text: str) -> None:
    assert cfg("-B", text).hard_bounce_reply == text


@pytest.mark.parametrize("text", ["5500", "450x", "5", "", "450 4.0.0 x"])
def test_bad_hard_reply(text: str) -> None:
    err = fatal("-B", text)
    assert str(err) == f"bad hard error reply: {text}"
    assert err.usage and err.option == "-B"


# ---------------------------------------------------------------- dump options


def test_d_and_D_together() -> None:
    err = fatal("-d", "a", "-D", "b")
    assert str(err) == "use only one of -d or -D, but not both"
    assert not err.usage
    assert str(fatal("-D", "b", "-d", "a")) == "use only one of -d or -D, but not both"


def test_d_and_D_direct_construction() -> None:
    with pytest.raises(ConfigError, match=r"^use only one of -d or -D, but not both$"):
        SinkConfig(dump_template="a", dump_file_template="b")


def test_empty_dump_template_refused() -> None:
    # Postfix loops forever on an empty expansion; we refuse it.
    assert str(fatal("-d", "")) == "empty dump template"
    assert str(fatal("-D", "")) == "empty dump template"


# ----------------------------------------------------------------- command lists


def test_command_list_separators_and_case() -> None:
    c = cfg("-f", "rcpt,Data\tquit  ,,Mail\r\nEhLo")
    assert c.reject == {"RCPT", "DATA", "QUIT", "MAIL", "EHLO"}


def test_command_lists_accumulate() -> None:
    c = cfg("-f", "rcpt", "-f", "data", "-r", "mail", "-r", "helo,.", "-s", "noop", "-s", "vrfy")
    assert c.reject == {"RCPT", "DATA"}
    assert c.soft_reject == {"MAIL", "HELO", "."}
    assert c.log_commands == {"NOOP", "VRFY"}
    c = cfg("-q", "rset", "-q", "quit", "-Q", "auth", "-Q", "xclient xforward")
    assert c.disconnect == {"RSET", "QUIT"}
    assert c.disconnect_421 == {"AUTH", "XCLIENT", "XFORWARD"}


def test_every_command_name_accepted() -> None:
    names = "connect helo ehlo lhlo xclient xforward auth mail rcpt data . rset noop vrfy quit"
    assert cfg("-s", names).log_commands == set(COMMAND_NAMES) - {"STARTTLS", "BDAT"}
    assert len(COMMAND_NAMES) == 17  # Postfix's 15, STARTTLS and BDAT (with their options)


@pytest.mark.parametrize("flag", ["-f", "-q", "-Q", "-r", "-s"])
@pytest.mark.parametrize("name", ["etrn", "STARTTLS", "bdat", "foo", "..", "Expn"])
def test_unknown_command_name(flag: str, name: str) -> None:
    err = fatal(flag, f"rcpt,{name}")
    assert str(err) == f"unknown command: {name}"
    assert err.option == flag and not err.usage


def test_parse_commands_iterables() -> None:
    assert parse_commands(["mail", "RCPT data"]) == {"MAIL", "RCPT", "DATA"}
    with pytest.raises(ConfigError, match="bad command name: 3"):
        parse_commands([3])  # type: ignore[list-item]


# ------------------------------------------------------------------------- -W


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("data:1", ("DATA", (1.0, 0))),
        ("DATA:2:50", ("DATA", (2.0, 50))),
        ("::rcpt:3", ("RCPT", (3.0, 0))),  # leading colons skipped
        ("data:1:50:junk", ("DATA", (1.0, 50))),  # odds by atoi
        ("connect:4", ("CONNECT", (4.0, 0))),
        (".:1:99", (".", (1.0, 99))),
        ("noop:1:0", ("NOOP", (1.0, 0))),
        ("noop:2x", ("NOOP", (2.0, 0))),  # delay by atoi
        ("noop:0.5", ("NOOP", (0.5, 0))),
        ("noop:1:", ("NOOP", (1.0, 0))),
    ],
)
def test_delay_spec(spec: str, expected: tuple[str, tuple[float, int]]) -> None:
    assert parse_delay_spec(spec) == expected
    assert cfg("-W", spec).delays == dict([expected])


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("data", "invalid command delay argument: data"),
        ("data:", "invalid command delay argument: data:"),
        ("", "invalid command delay argument: "),
        (":::", "invalid command delay argument: :::"),
        ("etrn:1", "unknown command: etrn"),
        ("Foo:1:2", "unknown command: Foo"),
        ("data:0", "non-positive 'data' delay"),
        ("Rcpt:-1", "non-positive 'Rcpt' delay"),
        ("data:x", "non-positive 'data' delay"),
        ("data:1:100", "delay odds for 'data' out of range"),
        ("data:1:-1", "delay odds for 'data' out of range"),
    ],
)
def test_bad_delay_spec(spec: str, text: str) -> None:
    err = fatal("-W", spec)
    assert str(err) == text
    assert err.option == "-W" and not err.usage


def test_W_last_one_wins_and_w_is_W_data() -> None:
    c = cfg("-W", "noop:1", "-W", "rcpt:2", "-W", "NOOP:3:20")
    assert c.delays == {"NOOP": (3.0, 20), "RCPT": (2.0, 0)}
    assert cfg("-w", "2", "-W", "data:5:10").delays == {"DATA": (5.0, 10)}
    assert cfg("-W", "data:5:10", "-w", "2").delays == {"DATA": (2.0, 0)}
    assert cfg("-w", "3") == cfg("-W", "data:3")


# ---------------------------------------------------------------------- -S


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("START\\n\\101\\tX\\q\\\\", "START\nA\tXq\\"),  # reference §14.3, verified
        ("From MAILER-DAEMON\\n", "From MAILER-DAEMON\n"),
        ("\\a\\b\\f\\n\\r\\t\\v", "\a\b\f\n\r\t\v"),
        ("\\1\\12\\123\\1234", "\x01\n\x53\x534"),  # at most 3 octal digits
        ("\\8\\9", "89"),  # not octal: the character itself
        ("a\\", "a"),  # lone trailing backslash dropped
        ("ab\\0cd", "ab"),  # embedded NUL ends the C string
        ("ab\\000cd", "ab"),
        ("\\400", ""),  # 0o400 & 0xff == 0: NUL
        ("\\377", "\xff"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_start_string_escapes(arg: str, expected: str) -> None:
    assert unescape(arg) == expected
    assert cfg("-S", arg).start_string == expected


def test_non_ascii_argv_text_is_octets() -> None:
    # argv text keeps the octets the C program would see (one latin-1 char per octet)
    c = cfg("-h", "mx\u20ac", "-S", "\u00e9\\351")
    assert c.hostname == "mx\xe2\x82\xac"
    assert c.start_string == "\xc3\xa9\xe9"


# ------------------------------------------------------------- marker / ini values


def test_from_options_empty_is_default() -> None:
    assert from_options({}) == SinkConfig()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("RCPT", {"RCPT"}),
        ("rcpt", {"RCPT"}),
        (["MAIL", "."], {"MAIL", "."}),
        (("mail",), {"MAIL"}),
        ({"data"}, {"DATA"}),
        ("RCPT,DATA", {"RCPT", "DATA"}),
        ("RCPT DATA", {"RCPT", "DATA"}),
        ([], set()),
    ],
)
def test_marker_command_lists(value: Any, expected: set[str]) -> None:
    for name in ("reject", "soft_reject", "disconnect", "disconnect_421", "log_commands"):
        c = from_options({name: value})
        assert getattr(c, name) == expected


def test_marker_reject_removes_pipelining() -> None:
    assert not from_options({"reject": "RCPT"}).advertise_pipelining
    assert not from_options({"soft_reject": ["."]}).advertise_pipelining
    assert from_options({"disconnect": "RCPT"}).advertise_pipelining


def test_marker_delays() -> None:
    c = from_options({"delays": {"RCPT": 1.5, ".": (1, 50), "data": [2, 0]}})
    assert c.delays == {"RCPT": (1.5, 0), ".": (1.0, 50), "DATA": (2.0, 0)}
    assert from_options({"delays": "rcpt:1,data:2:50"}).delays == {
        "RCPT": (1.0, 0),
        "DATA": (2.0, 50),
    }


def test_marker_data_delay() -> None:
    c = from_options({"data_delay": 0.2})
    assert c.delays == {"DATA": (0.2, 0)}
    assert c.data_delay == 0.2
    assert from_options({"data_delay": "1.5"}).data_delay == 1.5
    assert c.replace(data_delay=None).delays == {}


def test_marker_data_delay_and_delays_in_any_order() -> None:
    a = from_options({"data_delay": 0.2, "delays": {"RCPT": 1}})
    b = from_options({"delays": {"RCPT": 1}, "data_delay": 0.2})
    assert a.delays == b.delays == {"RCPT": (1.0, 0), "DATA": (0.2, 0)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("yes", True),
        ("1", True),
        ("On", True),
        (True, True),
        (1, True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("OFF", False),
        (False, False),
        (0, False),
    ],
)
def test_marker_booleans(value: Any, expected: bool) -> None:
    assert from_options({"lmtp": value}).lmtp is expected
    assert from_options({"pipelining": value}).pipelining is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, 1.0, ""])
def test_marker_bad_boolean(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        from_options({"esmtp": value})
    assert info.value.option == "esmtp"
    assert str(info.value) == f"esmtp must be true or false, not {value!r}"


def test_marker_scalar_values() -> None:
    c = from_options(
        {
            "hostname": "mx.test",
            "timeout": "2.5",
            "max_connections": "4",
            "tcp_window": 8192,
            "max_messages": 2,
            "max_sessions": "3",
            "abort_delay": 0,
            "data_read_delay": 0.5,
            "soft_bounce_reply": "452 4.2.2 full",
            "hard_bounce_reply": "550 5.1.1 unknown",
            "dump_template": "/tmp/x.",
            "start_string": "From x\n",
            "family": "ipv6",
            "verbose": "true",
            "user": "nobody",
            "chroot": "/",
            "counters": "yes",
        }
    )
    assert c.hostname == "mx.test" and c.timeout == 2.5 and c.max_connections == 4
    assert c.tcp_window == 8192 and c.max_messages == 2 and c.max_sessions == 3
    assert c.abort_delay == 0.0 and c.data_read_delay == 0.5
    assert c.soft_bounce_reply == "452 4.2.2 full"
    assert c.hard_bounce_reply == "550 5.1.1 unknown"
    assert c.dump_template == "/tmp/x." and c.start_string == "From x\n"
    assert c.family == "inet6" and c.verbose == 1 and c.user == "nobody" and c.counters
    assert from_options({"verbose": "3"}).verbose == 3
    assert from_options({"family": "4"}).family == "inet4"


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("timeout", 0, "bad timeout: 0"),
        ("timeout", "soon", "bad timeout: soon"),
        ("timeout", True, "bad timeout: True"),
        ("timeout", float("nan"), "bad timeout: nan"),
        ("max_connections", 0, "bad concurrency limit: 0"),
        ("max_connections", "4x", "bad concurrency limit: 4x"),
        ("tcp_window", -1, "bad TCP window size: -1"),
        ("max_messages", "0", "bad message quit count: 0"),
        ("max_sessions", 1.5, "bad quit count: 1.5"),
        ("data_read_delay", 0, "bad data read delay: 0"),
        ("abort_delay", -1, "bad abort delay: -1"),
        ("abort_delay", "x", "bad abort delay: x"),
        ("data_delay", 0, "bad data delay: 0"),
        ("soft_bounce_reply", "550 no", "bad soft error reply: 550 no"),
        ("hard_bounce_reply", "4500", "bad hard error reply: 4500"),
        ("reject", "RCPT,ETRN", "unknown command: ETRN"),
        ("reject", 5, "reject must be a command list, not 5"),
        ("hostname", "", "bad hostname: ''"),
        ("hostname", "a\r\nb", "bad hostname: 'a\\r\\nb'"),
        ("hostname", 5, "hostname must be a string, not 5"),
        ("family", "ipx", "family must be inet, inet4 or inet6, not 'ipx'"),
        ("dump_template", "", "dump_template must not be empty"),
        ("delays", {"ETRN": 1}, "unknown command: ETRN"),
        ("delays", {"RCPT": 0}, "bad 'RCPT' delay: 0"),
        ("delays", {"RCPT": (1, 100)}, "delay odds for 'RCPT' out of range"),
        (
            "delays",
            {"RCPT": (1, 2, 3)},
            "delay for 'RCPT' must be seconds or (seconds, odds), not (1, 2, 3)",
        ),
        ("delays", ["RCPT"], "delays must be a mapping like {'RCPT': 1.5}, not ['RCPT']"),
        ("delays", "rcpt", "invalid command delay argument: rcpt"),
        ("verbose", -1, "verbose must be true/false or a count, not -1"),
    ],
)
def test_marker_bad_values_name_the_option(name: str, value: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_options({name: value})
    assert str(info.value) == text
    assert info.value.option == name


def test_marker_text_must_be_octets() -> None:
    with pytest.raises(ConfigError) as info:
        from_options({"hostname": "mx\u20ac"})
    assert info.value.option == "hostname"
    assert from_options({"hostname": "caf\xe9"}).hostname == "caf\xe9"


def test_marker_d_and_D_together() -> None:
    base = from_options({"dump_template": "/tmp/a."})
    with pytest.raises(ConfigError, match="use only one of -d or -D") as info:
        base.replace(dump_file_template="/tmp/b")
    assert info.value.option == "dump_file_template"
    assert base.replace(dump_template=None, dump_file_template="/tmp/b").dumping


@pytest.mark.parametrize(
    ("name", "hint"),
    [("rejct", "reject"), ("hostnme", "hostname"), ("lmpt", "lmtp"), ("delay", "delays")],
)
def test_unknown_option_name_has_hint(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_options({name: 1})
    text = str(info.value)
    assert text.startswith(f"unknown smtp_sink option: {name} (did you mean ")
    assert hint in text
    assert info.value.option == name


def test_unknown_option_name_without_hint() -> None:
    with pytest.raises(ConfigError) as info:
        from_options({"zzzzzz": 1})
    assert str(info.value) == "unknown smtp_sink option: zzzzzz"


def test_replace_keeps_base_and_is_a_copy() -> None:
    base = from_options({"hostname": "mx", "reject": "RCPT", "delays": {"NOOP": 1}})
    new = base.replace(lmtp="true", data_delay=2)
    assert new.hostname == "mx" and new.reject == {"RCPT"} and new.lmtp
    assert new.delays == {"NOOP": (1.0, 0), "DATA": (2.0, 0)}
    assert base.delays == {"NOOP": (1.0, 0)} and not base.lmtp
    # a command list given again replaces the base one (markers are not cumulative)
    assert base.replace(reject=".").reject == {"."}
    # delays replaces the whole table
    assert base.replace(delays={"RCPT": 1}).delays == {"RCPT": (1.0, 0)}


def test_config_is_frozen() -> None:
    c = SinkConfig()
    with pytest.raises(AttributeError):
        c.hostname = "x"  # type: ignore[misc]


# ------------------------------------------------------------------ the option table


def test_every_field_has_an_option_row_and_every_row_a_field() -> None:
    import dataclasses

    from pytest_smtp_sink.core.options import OPTIONS, PLUGIN_NAMES

    fields = {f.name for f in dataclasses.fields(SinkConfig)}
    rows = {o.name for o in OPTIONS} - PLUGIN_NAMES
    # -w: the DATA entry of ``delays``; mail= and rcpt=: short forms of ``rules``
    assert rows - fields == {"data_delay", "mail", "rcpt"}
    assert fields <= rows


def test_derived_sets() -> None:
    from pytest_smtp_sink.core.options import CLI_ONLY_NAMES, LISTENER_NAMES, NEEDS_TASK_NAMES

    assert {"counters", "max_messages", "max_sessions", "user", "chroot"} == CLI_ONLY_NAMES
    assert {"family", "max_connections", "tcp_window", "implicit_tls", "listen"} == LISTENER_NAMES
    assert {"abort_delay", "data_read_delay", "data_delay", "delays"} == NEEDS_TASK_NAMES
    assert not SinkConfig().needs_task
    assert SinkConfig(abort_delay=0.0).needs_task
    assert SinkConfig(data_read_delay=1.0).needs_task
    assert SinkConfig(delays={"RCPT": (1.0, 0)}).needs_task


def test_options_are_checked_as_getopt_reaches_them() -> None:
    # Postfix reports the bad -b before the unknown -Z that follows it.
    err = fatal("-b", "4", "-Z")
    assert str(err) == "bad soft error reply: 4"


def test_the_typed_options_are_the_option_table() -> None:
    """SinkOptions (the typed marker/factory keywords) has every option a test can set."""
    from pytest_smtp_sink import SinkOptions
    from pytest_smtp_sink.core.options import PYTEST_NAMES

    assert set(SinkOptions.__annotations__) == {*PYTEST_NAMES, "listen"}


# ------------------------------------------------ issue 13: Postfix's corners of the CLI


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5), (" 5", 5), ("+5", 5), ("5x", 5), ("x", 0), ("", 0), ("-3", -3),
        ("2147483647", 2147483647), ("2147483648", -2147483648), ("4294967297", 1),
        ("99999999999999999999", -1), ("-99999999999999999999", 0), ("9" * 5000, -1),
    ],
)  # fmt: skip
def test_atoi_wraps_like_a_c_int(text: str, value: int) -> None:
    assert atoi(text) == value


def test_atof_reads_the_whole_part_as_atoi() -> None:
    assert atof("0.5") == 0.5 and atof(".5") == 0.5 and atof("2.") == 2.0
    assert atof("4294967297.5") == 1.5 and atof("-0.5") == -0.5 and atof("x") == 0.0


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["-t", "99999999999999999999"], "bad timeout: 99999999999999999999"),
        (["-T", "2147483648"], "bad TCP window size: 2147483648"),
        (["-H", "99999999999999999999"], "bad data read delay: 99999999999999999999"),
        (["-m", "2147483648"], "bad concurrency limit: 2147483648"),
        (["-W", "data:4294967296"], "non-positive 'data' delay"),
        (["-f", "starttls", "-t", "0"], "unknown command: starttls"),
        (["-r", "starttls,bogus"], "unknown command: starttls"),
        (["-r", "bogus,starttls"], "unknown command: bogus"),
        (["-W", "bdat"], "invalid command delay argument: bdat"),
        (["-W", "starttls:"], "invalid command delay argument: starttls:"),
        (["-W", "bdat:1"], "unknown command: bdat"),
    ],
)
def test_postfix_order_and_ranges(opts: list[str], message: str) -> None:
    assert str(fatal(*opts)) == message


def test_delay_fields_are_the_non_empty_ones() -> None:
    for spec in ("data::1", "::data::1::", "data:1:0:7"):
        assert parse_argv(["-W", spec, "x:1", "1"]).config.delays == {"DATA": (1.0, 0)}
    assert parse_argv(["-W", "data:1:4294967297", "x:1", "1"]).config.delays == {"DATA": (1.0, 1)}


def test_extension_command_with_its_extension_anywhere() -> None:
    assert "STARTTLS" in parse_argv(["-f", "starttls", "--starttls", "x:1", "1"]).config.reject


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("127.0.0.1:25", ("127.0.0.1", "25")), (":25", ("", "25")), ("25", ("", "25")),
        ("[::1]:25", ("::1", "25")), ("[ipv6:::1]:25", ("::1", "25")),
        ("[IPv6:::1]:smtp", ("::1", "smtp")), ("::1:25", ("::1", "25")),
        ("inet:a_b.example:25", ("a_b.example", "25")), ("0.0.0.0:1", ("0.0.0.0", "1")),
        ("127.0.0.1:-1", ("127.0.0.1", "-1")),
        # Postfix's IPv6 check is looser than inet_pton: these pass it, then fail to resolve
        ("[1:2:3]:25", ("1:2:3", "25")), ("[::ffff:01.2.3.4]:25", ("::ffff:01.2.3.4", "25")),
        ("127.0.0.1:\u00b25", ("127.0.0.1", "\u00b25")),  # not an ASCII digit: a service
    ],
)  # fmt: skip
def test_listen_address_forms(address: str, endpoint: tuple[str, str]) -> None:
    ep = Endpoint.parse(address)
    assert (ep.kind, ep.host, ep.port) == ("inet", *endpoint)


INVALID = "valid hostname or network address required"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:", "127.0.0.1:: missing service information"),
        ("inet:", ": missing service information"),
        ("127.0.0.1", "127.0.0.1: garbage after numerical service"),
        ("127.0.0.1:25x", "127.0.0.1:25x: garbage after numerical service"),
        ("[127.0.0.1]x:25", '[127.0.0.1]x:25: garbage after "]"'),
        ("[127.0.0.1", '[127.0.0.1: missing "]"'),
        ("[ipv6:127.0.0.1]:25", "[ipv6:127.0.0.1]:25: malformed IPv6 address"),
        ("300.1.1.1:25", "300.1.1.1:25: valid hostname or network address required"),
        ("0.1.2.3:25", "0.1.2.3:25: valid hostname or network address required"),
        ("[]:25", "[]:25: valid hostname or network address required"),
        ("a..b:25", "a..b:25: valid hostname or network address required"),
        ("-a:25", "-a:25: valid hostname or network address required"),
        ("x" * 64 + ":25", "x" * 64 + ":25: valid hostname or network address required"),
        ("unix:", "chmod socket : No such file or directory"),
        ("[::1:2:3:4:5:6:7]:25", f"[::1:2:3:4:5:6:7]:25: {INVALID}"),
        ("[::0.1.2.3]:25", "[::0.1.2.3]:25: valid hostname or network address required"),
        ("[1::2::3]:25", "[1::2::3]:25: valid hostname or network address required"),
        ("[12345::1]:25", "[12345::1]:25: valid hostname or network address required"),
        ("[fe80::1%lo]:25", "[fe80::1%lo]:25: valid hostname or network address required"),
        ("[ipv6:1::2::3]:25", "[ipv6:1::2::3]:25: malformed IPv6 address"),
    ],
)
def test_bad_listen_addresses(address: str, message: str) -> None:
    with pytest.raises(ListenError) as info:
        Endpoint.parse(address)
    assert str(info.value) == message


def test_printable_counts_octets() -> None:
    assert printable("rcpt\udcff") == "rcpt?"
    assert printable("rcpt\u00e9") == "rcpt??"
    assert printable("a\tb\x01") == "a?b?"
    assert printable("plain text") == "plain text"
