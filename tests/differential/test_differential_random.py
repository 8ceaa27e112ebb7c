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
from concurrent.futures import ThreadPoolExecutor

import pytest

from .generate import CommandLine, command_lines, dialogues
from .sinkdiff import (
    Dialogue,
    Programs,
    ServerPool,
    SideName,
    StartupResult,
    dialogue_problems,
    normalise_stderr,
    run_command_line,
)

pytestmark = pytest.mark.postfix

SEED = int(os.environ.get("SMTP_SINK_DIFF_SEED", "20261202"))
COUNT = int(os.environ.get("SMTP_SINK_DIFF_COUNT", "100"))
COMMAND_LINES = command_lines(SEED, COUNT)
DIALOGUES = dialogues(SEED, COUNT // 2)

Outcome = tuple[int | None, str]  # (exit status or None: it started, first stderr line)


def outcome(result: StartupResult) -> Outcome:
    lines = normalise_stderr(result.stderr)
    return result.status, lines[0] if lines else ""


def _fraction(case: CommandLine, pf: StartupResult, ours: StartupResult) -> bool:
    """Delays and the timeout take decimals (README: "accept fractional seconds")."""
    return "fraction" in case.features and pf.status == 1


def _empty_template(case: CommandLine, pf: StartupResult, ours: StartupResult) -> bool:
    """``-d ''``/``-D ''``: Postfix starts and dies at the first MAIL, ours refuses to start
    (README: "An empty dump template")."""
    return (
        "empty template" in case.features
        and ours.status == 1
        and outcome(ours)[1] == "<PROG>: fatal: empty dump template"
    )


def _long_option(case: CommandLine, pf: StartupResult, ours: StartupResult) -> bool:
    """Ours has long options (the extensions), so ``--foo`` is getopt_long's
    ``unrecognized option``, Postfix's getopt says ``invalid option -- '-'``."""
    return (
        "long option" in case.features
        and pf.status == ours.status == 1
        and outcome(ours)[1].startswith("<PROG>: unrecognized option '--")
    )


RULES: dict[str, Callable[[CommandLine, StartupResult, StartupResult], bool]] = {
    "fractional seconds": _fraction,
    "empty dump template": _empty_template,
    "long options": _long_option,
}


def classify(case: CommandLine, pf: StartupResult, ours: StartupResult) -> str:
    """ "identical", "documented: <rule>" or "failing"."""
    if "Traceback" in ours.stderr.decode("utf-8", "replace"):
        return "failing"
    if outcome(pf) == outcome(ours):
        return "identical"
    for name, rule in RULES.items():
        if rule(case, pf, ours):
            return f"documented: {name}"
    return "failing"


Results = dict[tuple[int, SideName], StartupResult]


@pytest.fixture(scope="module")
def command_line_results(request: pytest.FixtureRequest, programs: Programs) -> Results:
    """All selected command lines at once: Postfix sleeps a second before a fatal exit."""
    selected: list[CommandLine] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        if isinstance(case, CommandLine):
            selected.append(case)
    sides: tuple[SideName, SideName] = ("postfix", "ours")
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = {
            (case.index, side): pool.submit(run_command_line, programs, side, case.args)
            for case in selected
            for side in sides
        }
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
    verdict = classify(case, pf, ours)
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
    case = CommandLine(0, ("-t", "0.5"), frozenset({"fraction"}))
    pf = StartupResult(1, b"smtp-sink: fatal: bad timeout: 0.5\n")
    assert classify(case, pf, StartupResult(None, b"")) == "documented: fractional seconds"
    plain = CommandLine(1, ("-t", "2147483648"), frozenset())
    assert classify(plain, pf, StartupResult(None, b"")) == "failing"
    assert classify(plain, pf, pf) == "identical"
    crash = StartupResult(1, b"smtp-sink: fatal: bad timeout: 0.5\nTraceback (most recent")
    assert classify(case, pf, crash) == "failing"


@pytest.mark.parametrize("dialogue", DIALOGUES, ids=str)
def test_random_dialogue(dialogue: Dialogue, server_pool: ServerPool) -> None:
    problems = dialogue_problems(server_pool, dialogue, show_sent=True)
    if problems:
        pytest.fail(problems, pytrace=False)
