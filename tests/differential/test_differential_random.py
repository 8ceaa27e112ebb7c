"""Random differential tests: generated command lines and dialogues (``generate.py``),
each run against Postfix's ``smtp-sink`` and ours.

Every case is classified as *identical*, *documented* (a difference README's "Differences
from Postfix" names; each rule below says which entry) or *failing*. A command line is
compared on its outcome (started, or the exit status) and its first stderr line; a
dialogue as the table dialogues are (replies byte for byte, dumps, counters).

The seed and the count are fixed, so CI runs the same cases every time; a fuzzing run
takes others: ``SMTP_SINK_DIFF_SEED=7 SMTP_SINK_DIFF_COUNT=2000 pytest -k random``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from .generate import CommandLine, command_lines, dialogues
from .sinkdiff import (
    HUNG,
    SIDES,
    Dialogue,
    Programs,
    ServerPool,
    StartupResult,
    collected,
    dialogue_problems,
    normalise_stderr,
    run_command_line,
)

pytestmark = pytest.mark.postfix

SEED = int(os.environ.get("SMTP_SINK_DIFF_SEED", "20261202"))
COUNT = int(os.environ.get("SMTP_SINK_DIFF_COUNT", "100"))
COMMAND_LINES = command_lines(SEED, COUNT)
DIALOGUES = dialogues(SEED, COUNT // 2)

Outcome = tuple[int | None, str, str]  # (exit status or None: started, first, last line)


def outcome(result: StartupResult) -> Outcome:
    """What is compared: whether it started (or its exit status), the first stderr line
    and, when it exited, the last (with ``-v`` the first is ``name_mask: all``)."""
    lines = normalise_stderr(result.stderr)
    first = lines[0] if lines else ""
    last = lines[-1] if lines and result.status is not None else ""
    return result.status, first, last


Rule = Callable[[CommandLine, StartupResult, StartupResult, "StartupResult | None"], bool]


def _fraction(
    case: CommandLine, pf: StartupResult, ours: StartupResult, whole: StartupResult | None
) -> bool:
    """Delays and the timeout take decimals (README: "accept fractional seconds"): ours
    does what Postfix does with whole seconds in their place (``whole``: Postfix on the
    case's variant)."""
    return (
        "fraction" in case.features
        and "empty template" not in case.features
        and whole is not None
        and outcome(whole) == outcome(ours)
    )


def _empty_template(
    case: CommandLine, pf: StartupResult, ours: StartupResult, whole: StartupResult | None
) -> bool:
    """``-d ''``/``-D ''``: Postfix starts (and dies at the first MAIL), ours refuses to
    start (README: "-d '' and -D '' are refused at start"): Postfix's start does not change
    with a real template in its place (``whole``), and ours names the empty one."""
    return (
        "empty template" in case.features
        and whole is not None
        and outcome(whole)[:2] == outcome(pf)[:2]
        and ours.status == 1
        and outcome(ours)[2] == "<PROG>: fatal: empty dump template"
    )


def _long_option(
    case: CommandLine, pf: StartupResult, ours: StartupResult, whole: StartupResult | None
) -> bool:
    """Ours has long options (the extensions), so ``--foo`` is getopt_long's
    ``unrecognized option``, Postfix's getopt says ``invalid option -- '-'``."""
    return (
        "long option" in case.features
        and pf.status == ours.status == 1
        and outcome(pf)[1] == "<PROG>: invalid option -- '-'"
        and outcome(ours)[1] == "<PROG>: unrecognized option '--foo'"
    )


RULES: dict[str, Rule] = {
    "fractional seconds": _fraction,
    "empty dump template": _empty_template,
    "long options": _long_option,
}


def classify(
    case: CommandLine,
    pf: StartupResult,
    ours: StartupResult,
    whole: StartupResult | None = None,
) -> str:
    """"identical", "documented: <rule>" or "failing". ``whole``: Postfix on the case's
    variant (its documented features taken out)."""
    if ours.status == HUNG or "Traceback" in ours.stderr.decode("utf-8", "replace"):
        return "failing"
    if outcome(pf) == outcome(ours):
        return "identical"
    for name, rule in RULES.items():
        if rule(case, pf, ours, whole):
            return f"documented: {name}"
    return "failing"


Results = dict[tuple[int, str], StartupResult]


@pytest.fixture(scope="module")
def command_line_results(request: pytest.FixtureRequest, programs: Programs) -> Results:
    """All selected command lines at once: Postfix sleeps a second before a fatal exit."""
    selected = collected(request.session.items, "case", CommandLine)
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures: dict[tuple[int, str], Future[StartupResult]] = {
            (case.index, side): pool.submit(run_command_line, programs, side, case.args)
            for case in selected
            for side in SIDES
        }
        for case in selected:
            if case.variant:
                futures[case.index, "whole"] = pool.submit(
                    run_command_line, programs, "postfix", case.variant
                )
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("case", COMMAND_LINES, ids=str)
def test_random_command_line(
    case: CommandLine, programs: Programs, command_line_results: Results
) -> None:
    pf = command_line_results.get((case.index, "postfix")) or run_command_line(
        programs, "postfix", case.args
    )
    ours = command_line_results.get((case.index, "ours")) or run_command_line(
        programs, "ours", case.args
    )
    whole = command_line_results.get((case.index, "whole"))
    if whole is None and case.variant:
        whole = run_command_line(programs, "postfix", case.variant)
    verdict = classify(case, pf, ours, whole)
    if verdict == "failing":
        pytest.fail(
            f"{case}: {case.args!r}\n  postfix: {outcome(pf)}\n  ours:    {outcome(ours)}\n"
            f"  ours' stderr: {ours.stderr[-2000:]!r}",
            pytrace=False,
        )


def test_generator_is_seeded() -> None:
    """The same seed gives the same cases (CI compares the same ones every run)."""
    assert command_lines(SEED, 20) == command_lines(SEED, 20)
    assert [d.sessions for d in dialogues(SEED, 5)] == [d.sessions for d in dialogues(SEED, 5)]
    assert command_lines(SEED, 20) != command_lines(SEED + 1, 20)


def test_classification_can_fail() -> None:
    """A difference no rule names is failing, a named one documented."""
    case = CommandLine(0, ("-t", "0.5"), frozenset({"fraction"}), ("-t", "1"))
    empty = CommandLine(2, ("-d", ""), frozenset({"empty template"}), ("-d", "x"))
    refused = StartupResult(1, b"smtp-sink: fatal: empty dump template\n")
    assert classify(empty, StartupResult(None, b""), refused, StartupResult(None, b"")) == (
        "documented: empty dump template"
    )
    late = StartupResult(1, b"smtp-sink: fatal: chroot(/x): No such file or directory\n")
    assert classify(empty, late, refused, late) == "documented: empty dump template"
    early = StartupResult(1, b"smtp-sink: fatal: bad timeout: 0\n")
    assert classify(empty, early, refused, StartupResult(None, b"")) == "failing"
    pf = StartupResult(1, b"smtp-sink: fatal: bad timeout: 0.5\n")
    started = StartupResult(None, b"")
    assert classify(case, pf, started, started) == "documented: fractional seconds"
    other = StartupResult(1, b"smtp-sink: fatal: bad concurrency limit: x\n")
    assert classify(case, pf, other, started) == "failing"  # not what whole seconds give
    plain = CommandLine(1, ("-t", "2147483648"), frozenset())
    assert classify(plain, pf, started) == "failing"
    assert classify(plain, pf, pf) == "identical"
    assert classify(plain, StartupResult(HUNG, b""), StartupResult(HUNG, b"")) == "failing"
    crash = StartupResult(1, b"smtp-sink: fatal: bad timeout: 0.5\nTraceback (most recent")
    assert classify(case, pf, crash, started) == "failing"


@pytest.mark.parametrize("dialogue", DIALOGUES, ids=str)
def test_random_dialogue(dialogue: Dialogue, server_pool: ServerPool) -> None:
    problems = dialogue_problems(server_pool, dialogue, show_sent=True)
    if problems:
        pytest.fail(problems, pytrace=False)
