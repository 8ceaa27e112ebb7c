"""Failure rules through the plugin, as users run pytest: seeds that reproduce, transcripts
that name the injected faults, counters per test, changes mid-test."""

from __future__ import annotations

import re
import textwrap

import pytest

LEAN = ("-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:trio", "-p", "no:randomly")


def project(pytester: pytest.Pytester, ini: str = "", **files: str) -> None:
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n" + ini)
    pytester.makepyfile(**{k: textwrap.dedent(v) for k, v in files.items()})


FLAKY = """
import json, os, smtplib
import pytest

@pytest.mark.smtp_sink(rules=["RCPT odds=0.3: 451 4.3.0 Try again"])
def test_flaky(smtp_sink):
    outcomes = []
    for _ in range(40):
        with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
            smtp.mail("a@example.com")
            outcomes.append(smtp.rcpt("b@example.com")[0])
    with open(os.environ["OUTCOMES"], "a") as out:
        out.write(json.dumps(outcomes) + "\\n")
"""


def run_flaky(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[
    str, list[int]
]:
    outcomes = pytester.path / "outcomes.jsonl"
    outcomes.unlink(missing_ok=True)
    monkeypatch.setenv("OUTCOMES", str(outcomes))
    result = pytester.runpytest_subprocess(*LEAN, *args, timeout=120)
    result.assert_outcomes(passed=1)
    header = re.search(r"smtp-sink: seed (\d+)", result.stdout.str())
    assert header is not None, result.stdout.str()
    [line] = outcomes.read_text().splitlines()
    return header.group(1), [int(x) for x in line.strip("[]").split(", ")]


def test_a_printed_seed_reproduces_the_faults(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(pytester, test_flaky=FLAKY)
    seed, first = run_flaky(pytester, monkeypatch)
    assert 451 in first and 250 in first
    again_seed, again = run_flaky(pytester, monkeypatch, f"--smtp-sink-seed={seed}")
    assert (again_seed, again) == (seed, first)
    _, other = run_flaky(pytester, monkeypatch, f"--smtp-sink-seed={int(seed) + 1}")
    assert other != first


def test_the_report_names_the_injected_faults(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_fail="""
        import smtplib
        import pytest

        @pytest.mark.smtp_sink(rcpt={"bad@example.com": "550 5.1.1 User unknown"})
        def test_fails(smtp_sink):
            with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
                smtp.mail("a@example.com")
                smtp.rcpt("bad@example.com")
            assert False
        """,
    )
    result = pytester.runpytest_subprocess(*LEAN, timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Captured SMTP conversation*",
            "S: b'550 5.1.1 User unknown\\r\\n'",
            "   [[]rule: RCPT bad@example.com: 550 5.1.1 User unknown[]]",
        ]
    )


def test_counters_start_again_in_every_test_and_changes_are_undone(
    pytester: pytest.Pytester,
) -> None:
    project(
        pytester,
        ini="smtp_sink_rules = RCPT times=1: 450 4.7.1 Greylisted\n",
        test_counts="""
        import smtplib

        def rcpt(sink):
            with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
                smtp.mail("a@example.com")
                return smtp.rcpt("b@example.com")[0]

        def test_first(smtp_sink):
            assert [rcpt(smtp_sink), rcpt(smtp_sink)] == [450, 250]
            smtp_sink.rule("RCPT", "x@*", reply="550 5.1.1 No")
            smtp_sink.configure(hostname="changed.test")
            smtp_sink.stop()

        def test_second(smtp_sink):  # the ini rule counts from 0 again; the rest is undone
            assert [rcpt(smtp_sink), rcpt(smtp_sink)] == [450, 250]
            assert len(smtp_sink.config.rules) == 1
            assert smtp_sink.config.hostname == "smtp-sink"

        def test_factory_rules(smtp_sink_factory):
            sink = smtp_sink_factory(rules=["RCPT: 550 5.7.1 Nobody here"])
            assert rcpt(sink) == 550
        """,
    )
    result = pytester.runpytest_subprocess(*LEAN, timeout=120)
    result.assert_outcomes(passed=3)


def test_bad_rules_fail_with_one_line(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_bad="""
        import pytest

        @pytest.mark.smtp_sink(rules=["RCPT bad@*: 650 what"])
        def test_bad(smtp_sink):
            pass

        def test_bad_mid_test(smtp_sink):
            smtp_sink.rule("ETRN: hard")
        """,
    )
    result = pytester.runpytest_subprocess(*LEAN, timeout=120)
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bad value for rules: bad rule 'RCPT bad@*: 650 what': a reply needs a 2xx-5xx*",
            "*ConfigError: bad rule 'ETRN: hard': unknown command: ETRN*",
        ]
    )
