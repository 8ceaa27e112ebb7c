"""Differential tests of bad command lines: Postfix's ``smtp-sink`` and ours must both exit
with status 1 and print the same diagnostics on stderr (after replacing the program name,
which Postfix takes from argv[0]).

Postfix sleeps one second before every fatal exit, so all selected cases are run at once,
in parallel, the first time a result is needed.

See ``test_differential.py`` for the environment variables.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from support import ipv6_loopback_available

from .sinkdiff import (
    IS_ROOT,
    SIDES,
    Programs,
    SideName,
    StartupCase,
    StartupResult,
    collected,
    run_command_line,
    run_startup,
    startup_problems,
)

pytestmark = pytest.mark.postfix

C = StartupCase
CASES = [
    C("timeout_zero", ("-t", "0")),
    C("timeout_negative", ("-t", "-5")),
    C("timeout_not_a_number", ("-t", "abc")),
    C("concurrency_zero", ("-m", "0")),
    C("message_count_zero", ("-M", "0")),
    C("quit_count_zero", ("-n", "0")),
    C("tcp_window_zero", ("-T", "0")),
    C("data_read_delay_zero", ("-H", "0")),
    C("soft_reply_5xx", ("-b", "550x")),
    C("soft_reply_four_digits", ("-b", "4500")),
    C("hard_reply_4xx", ("-B", "450")),
    C("hard_reply_one_digit", ("-B", "5x")),
    C("hard_reject_unknown_command", ("-f", "BOGUS")),
    C("soft_reject_etrn", ("-r", "etrn")),
    C("drop_unknown_in_list", ("-q", "connect,bogus")),
    C("close_starttls", ("-Q", "starttls")),
    C("syslog_bdat", ("-s", "bdat")),
    C("delay_without_seconds", ("-W", "data")),
    C("delay_unknown_command", ("-W", "bogus:1")),
    C("delay_empty_command", ("-W", ":1")),
    C("delay_zero", ("-W", "data:0")),
    C("delay_negative", ("-W", "rcpt:-1")),
    C("delay_odds_100", ("-W", "data:1:100")),
    C("delay_odds_negative", ("-W", "data:1:-1")),
    C("data_delay_zero", ("-w", "0")),
    C("abort_delay_not_digits", ("-A", "x")),
    C("abort_delay_negative", ("-A", "-1")),
    C("dump_single_and_shared", ("-d", "x", "-D", "y")),
    C("first_error_wins", ("-t", "0", "-m", "0")),
    C("missing_backlog", ("{addr}",)),
    C("backlog_zero", ("{addr}", "0")),
    C("backlog_not_a_number", ("{addr}", "abc")),
    C("extra_argument", ("{addr}", "10", "extra")),
    C("option_after_address", ("{addr}", "10", "-c")),
    C("no_arguments", ("-c",), append_address=False),
    C("unknown_option", ("-Z",), last_line_only=True),
    C("missing_option_argument", ("-t",), append_address=False, last_line_only=True),
    # listen addresses: Postfix's host_port() rules and texts (port 25 is never bound:
    # every one fails before)
    C("address_missing_service", ("127.0.0.1:", "10"), append_address=False),
    C("address_inet_missing_service", ("inet:", "10"), append_address=False),
    C("address_no_colon", ("127.0.0.1", "10"), append_address=False),
    C("address_garbage_after_number", ("127.0.0.1:25x", "10"), append_address=False),
    C("address_garbage_after_bracket", ("[127.0.0.1]x:25", "10"), append_address=False),
    C("address_missing_bracket", ("[127.0.0.1", "10"), append_address=False),
    C("address_bracket_no_port", ("[::1]", "10"), append_address=False),
    C("address_bad_ipv4", ("300.1.1.1:25", "10"), append_address=False),
    C("address_three_octets", ("1.2.3:25", "10"), append_address=False),
    C("address_empty_brackets", ("[]:25", "10"), append_address=False),
    C("address_trailing_dot", ("localhost.:25", "10"), append_address=False),
    C("address_empty_label", ("a..b:25", "10"), append_address=False),
    C("address_upper_case_inet", ("INET:127.0.0.1:25", "10"), append_address=False),
    C("address_malformed_ipv6", ("[ipv6:127.0.0.1]:25", "10"), append_address=False),
    C("address_negative_port", ("127.0.0.1:-1", "10"), append_address=False),
    C("address_unknown_service", ("127.0.0.1:nosuchservice", "10"), append_address=False),
    C("address_unknown_host", ("nosuchhost.invalid:25", "10"), append_address=False),
    C("address_family_mismatch", ("-6", "127.0.0.1:25", "10"), append_address=False),
    C("address_8bit", ("\udcff:25", "10"), append_address=False),
    C("unix_empty_path", ("unix:", "10"), append_address=False),
    C("unix_missing_folder", ("unix:/nonexistent/dir/sock", "10"), append_address=False),
    # numbers beyond a C int wrap as atoi() makes them
    C("timeout_beyond_int", ("-t", "99999999999999999999")),
    C("tcp_window_beyond_int", ("-T", "2147483648")),
    C("read_delay_beyond_int", ("-H", "99999999999999999999")),
    C("quit_count_beyond_int", ("-n", "99999999999999999999")),
    C("message_count_beyond_int", ("-M", "99999999999999999999")),
    C("concurrency_beyond_int", ("-m", "2147483648")),
    C("abort_delay_beyond_int", ("-A", "2147483648")),
    C("data_delay_beyond_int", ("-w", "2147483648")),
    C("delay_beyond_int", ("-W", "data:4294967296")),
    C("backlog_beyond_int", ("{addr}", "2147483648")),
    # diagnostics: every octet that is not printable ASCII is "?"
    C("sanitised_command_8bit", ("-f", "rcpt\udcff")),
    C("sanitised_command_control", ("-f", "rcpt\x01")),
    C("sanitised_command_utf8", ("-r", "rcpt\u00e9")),
    C("sanitised_delay_command", ("-W", "data\t:1")),
    C("sanitised_reply", ("-B", "5\u00e9")),
    C("invalid_option_8bit", ("-\udcff",)),
    # errors in the order getopt reaches them
    C("reply_before_unknown_option", ("-b", "4", "-Z")),
    C("extension_command_before_timeout", ("-f", "starttls", "-t", "0")),
    C("extension_command_in_list_order", ("-r", "starttls,rcpt\udcff")),
    C("empty_chroot", ("-R", "")),
]
if IS_ROOT:
    CASES.append(C("root_without_user", (), with_user=False))


Results = dict[tuple[str, SideName], StartupResult]


@pytest.fixture(scope="module")
def startup_results(request: pytest.FixtureRequest, programs: Programs) -> Results:
    selected = collected(request.session.items, "case", StartupCase)
    jobs = [(case, side) for case in selected for side in SIDES]
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = {
            (case.name, side): pool.submit(run_startup, programs, side, case) for case, side in jobs
        }
        return {key: fut.result() for key, fut in futures.items()}


@pytest.mark.postfix
@pytest.mark.parametrize("case", CASES, ids=str)
def test_startup_error(case: StartupCase, programs: Programs, startup_results: Results) -> None:
    pf = startup_results.get((case.name, "postfix")) or run_startup(programs, "postfix", case)
    ours = startup_results.get((case.name, "ours")) or run_startup(programs, "ours", case)
    problems = startup_problems(case, pf, ours)
    if problems:
        pytest.fail(f"{case.name}: " + "\n".join(problems), pytrace=False)


#: command lines Postfix accepts (and so must ours): they start and greet
ACCEPTED = [
    ("delay_empty_field", ("-W", "data::1")),
    ("delay_empty_fields_around", ("-W", "::data::1::")),
    ("delay_extra_fields", ("-W", "data:1:50:7")),
    ("delay_odds_wrap", ("-W", "data:1:4294967297")),
    ("abort_delay_wrap", ("-A", "4294967297")),
    ("timeout_wrap", ("-t", "4294967297")),
    ("ipv6_prefix", ("[ipv6:::1]:{port}",)),
    ("ipv6_prefix_upper_case", ("[IPV6:::1]:{port}",)),
    ("bare_ipv6", ("::1:{port}",)),
    ("inet_prefix", ("inet:127.0.0.1:{port}",)),
]


@pytest.mark.parametrize("args", [a for _, a in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_startup_accepted(args: tuple[str, ...], programs: Programs) -> None:
    if "::1" in args[-1] and not ipv6_loopback_available():
        pytest.skip("IPv6 loopback ::1 is not available")
    if "{port}" not in args[-1]:
        args = (*args, "127.0.0.1:{port}")
    pf = run_command_line(programs, "postfix", (*args, "10"))
    ours = run_command_line(programs, "ours", (*args, "10"))
    assert pf.status is None, f"the case is wrong: Postfix exited {pf.status}: {pf.stderr!r}"
    assert ours.status is None, f"ours exited {ours.status}: {ours.stderr!r}"
