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

from .sinkdiff import (
    IS_ROOT,
    SIDES,
    Programs,
    SideName,
    StartupCase,
    StartupResult,
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
]
if IS_ROOT:
    CASES.append(C("root_without_user", (), with_user=False))


Results = dict[tuple[str, SideName], StartupResult]


@pytest.fixture(scope="module")
def startup_results(request: pytest.FixtureRequest, programs: Programs) -> Results:
    selected: list[StartupCase] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        if isinstance(case, StartupCase):
            selected.append(case)
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
