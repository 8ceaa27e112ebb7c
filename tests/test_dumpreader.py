"""parse_dump(): files written by Postfix's own smtp-sink, -D files, folders, junk, round trips."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import support
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_smtp_sink import DumpFormatError, Transaction, parse_dump
from pytest_smtp_sink.dump.transaction import format_date, received_value

# ------------------------------------------- real dumps (reference §14.6, Postfix 3.7)

SINGLE_1 = b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\nX-Mail-Args: <sender@example.com>\nX-Rcpt-Args: <one@example.com>\nX-Rcpt-Args: <two@example.com>\nReceived: from client.example ([127.0.0.1])\n\tby sink.example (smtp-sink) with ESMTP id 78caf171;\n\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)\nSubject: dump test\nFrom: sender@example.com\n\nfirst line\n.line starting with a dot\n\nlast line\n\n"  # noqa: E501
SINGLE_2 = b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\nX-Mail-Args: <>\nX-Rcpt-Args: <three@example.com>\nReceived: from client.example ([127.0.0.1])\n\tby sink.example (smtp-sink) with ESMTP id 78f3ab9c;\n\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)\nSubject: second\n\nsecond body\n\n"  # noqa: E501
MBOX = b"From MAILER-DAEMON\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\nX-Mail-Args: <sender@example.com>\nX-Rcpt-Args: <one@example.com>\nX-Rcpt-Args: <two@example.com>\nReceived: from client.example ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 3ce99244;\n\tTue, 24 Nov 2026 22:06:55 +0000 (UTC)\nSubject: dump test\nFrom: sender@example.com\n\nfirst line\n.line starting with a dot\n\nlast line\n\nFrom MAILER-DAEMON\nX-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: client.example\nX-Mail-Args: <>\nX-Rcpt-Args: <three@example.com>\nReceived: from client.example ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP id 0335b98d;\n\tTue, 24 Nov 2026 22:06:55 +0000 (UTC)\nSubject: second\n\nsecond body\n\n"  # noqa: E501
# -S 'START\n\101\tX\q\\' (TZ=America/New_York): no HELO; bare HELO/MAIL/RCPT; odd data
ODD_START = "START\nA\tXq\\"
NO_HELO = b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\nX-Mail-Args: <nohelo@x>\nX-Rcpt-Args: <a>\nReceived: from [127.0.0.1] ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with SMTP id 29edf5c3;\n\tTue, 24 Nov 2026 16:59:22 -0500 (EST)\nno helo\n\n"  # noqa: E501
EMPTY_ARGS = b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\nX-Helo-Args: \nX-Mail-Args: \nX-Rcpt-Args: \nReceived: from  ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with SMTP id 6d2de2c0;\n\tTue, 24 Nov 2026 16:59:23 -0500 (EST)\nempty helo\n\n"  # noqa: E501
ODD_DATA = b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\nX-Helo-Args: ?weird?helo \nX-Mail-Args: <a>  SIZE=10 BODY=8BITMIME\nX-Rcpt-Args: <b>  NOTIFY=NEVER\nX-Rcpt-Args: <c>\nX-Rcpt-Args: \nReceived: from ?weird?helo  ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with SMTP id 60bf520f;\n\tTue, 24 Nov 2026 16:59:24 -0500 (EST)\nbarecr and bare\nlf\nno stuff\n\xff\x00\x80binary\n\n.\nend\n\n\n"  # noqa: E501
IPV6_LMTP = b"X-Client-Addr: ipv6:::1\nX-Client-Proto: LMTP\nX-Helo-Args: v6client\nX-Mail-Args: <a>\nX-Rcpt-Args: <b>\nX-Rcpt-Args: <c>\nReceived: from v6client ([ipv6:::1])\n\tby smtp-sink (smtp-sink) with LMTP id 04d34b5d;\n\tTue, 24 Nov 2026 21:59:52 +0000 (UTC)\nhi\n\n"  # noqa: E501
UNIX = b"X-Client-Addr: local\nX-Client-Proto: SMTP\nX-Helo-Args: local-client\nX-Mail-Args: <a>\nX-Rcpt-Args: <b>\nReceived: from local-client ([local])\n\tby smtp-sink (smtp-sink) with SMTP id 71e23aef;\n\tTue, 24 Nov 2026 21:59:53 +0000 (UTC)\nvia unix\n\n"  # noqa: E501


def test_postfix_single_message_file() -> None:
    [tx] = parse_dump(SINGLE_1)
    assert tx.client_addr == "127.0.0.1"
    assert tx.client_proto == "ESMTP"
    assert tx.helo == "client.example"
    assert tx.mail_args == "<sender@example.com>" and tx.mail_from == "sender@example.com"
    assert tx.rcpt_to == ["one@example.com", "two@example.com"]
    assert tx.queue_id == "78caf171"
    assert tx.received == (
        "from client.example ([127.0.0.1])\n\tby sink.example (smtp-sink) with ESMTP id "
        "78caf171;\n\tTue, 24 Nov 2026 22:06:54 +0000 (UTC)"
    )
    assert tx.start_string == ""
    assert tx.message["Subject"] == "dump test"
    assert tx.message["From"] == "sender@example.com"
    assert tx.message.get_content() == "first line\n.line starting with a dot\n\nlast line\n"
    assert tx.message_bytes.endswith(b"last line\n")
    assert tx.render() == SINGLE_1

    [tx2] = parse_dump(SINGLE_2)
    assert tx2.mail_from == "" and tx2.mail_args == "<>"
    assert tx2.rcpt_to == ["three@example.com"]
    assert tx2.render() == SINGLE_2


def test_postfix_odd_dumps() -> None:
    [no_helo] = parse_dump(NO_HELO)
    assert no_helo.start_string == ODD_START  # found before the first header
    assert no_helo.helo is None
    assert no_helo.received.startswith("from [127.0.0.1] ([127.0.0.1])\n")
    assert no_helo.data == b"no helo\n\n"

    [empty] = parse_dump(EMPTY_ARGS, start_string=ODD_START)
    assert (empty.helo, empty.mail_args, empty.rcpt_args) == ("", "", ("",))
    assert empty.mail_from == "" and empty.rcpt_to == [""]

    [odd] = parse_dump(ODD_DATA)
    assert odd.helo == "?weird?helo "
    assert odd.mail_from == "a"
    assert odd.mail_params == {"SIZE": "10", "BODY": "8BITMIME"}
    assert odd.rcpt_args == ("<b>  NOTIFY=NEVER", "<c>", "")
    assert odd.data == b"barecr and bare\nlf\nno stuff\n\xff\x00\x80binary\n\n.\nend\n\n\n"

    [v6] = parse_dump(IPV6_LMTP)
    assert (v6.client_addr, v6.client_proto, v6.rcpt_to) == ("ipv6:::1", "LMTP", ["b", "c"])
    [local] = parse_dump(UNIX)
    assert local.client_addr == "local" and local.message_bytes == b"via unix\n"

    for raw in (NO_HELO, EMPTY_ARGS, ODD_DATA, IPV6_LMTP, UNIX):
        assert b"".join(tx.render() for tx in parse_dump(raw)) == raw


def test_postfix_multi_message_file_with_start_string(tmp_path: Path) -> None:
    for start in ("From MAILER-DAEMON\n", None):
        first, second = parse_dump(MBOX, start_string=start)
        assert first.start_string == second.start_string == "From MAILER-DAEMON\n"
        assert (first.queue_id, second.queue_id) == ("3ce99244", "0335b98d")
        assert first.rcpt_to == ["one@example.com", "two@example.com"]
        assert first.message.get_content().endswith("last line\n")
        assert second.message["Subject"] == "second"
        assert first.render() + second.render() == MBOX
    # the same messages as the -d files, apart from -h and the id and date
    assert first.data == parse_dump(SINGLE_1)[0].data

    # -D with the odd start string: three messages; a file path works as well
    path = tmp_path / "shared.mbox"
    path.write_bytes(NO_HELO + EMPTY_ARGS + ODD_DATA)
    txs = parse_dump(path, start_string=ODD_START)
    assert [tx.queue_id for tx in txs] == ["29edf5c3", "6d2de2c0", "60bf520f"]
    assert parse_dump(str(path)) == txs
    assert txs[2].data.endswith(b"end\n\n\n")


def test_body_lines_that_look_like_headers_do_not_split() -> None:
    body = b"X-Client-Addr: 10.0.0.1\nFrom MAILER-DAEMON\nX-Mail-Args: <x>\n\n"
    raw = MBOX.replace(b"second body\n\n", b"second body\n" + body)
    first, second = parse_dump(raw)
    assert second.data == b"Subject: second\n\nsecond body\n" + body
    assert first.render() + second.render() == raw


def test_folders(tmp_path: Path) -> None:
    day = tmp_path / "single" / "20261124"
    day.mkdir(parents=True)
    (day / "msg.78f3ab9c").write_bytes(SINGLE_2)
    (day / "msg.78caf171").write_bytes(SINGLE_1)
    (tmp_path / "single" / "in-flight").write_bytes(b"")  # created at MAIL, still empty
    (tmp_path / "shared.mbox").write_bytes(MBOX)
    txs = parse_dump(tmp_path)  # recursive, in path order
    assert [tx.queue_id for tx in txs] == ["3ce99244", "0335b98d", "78caf171", "78f3ab9c"]
    assert [tx.queue_id for tx in parse_dump(day)] == ["78caf171", "78f3ab9c"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert parse_dump(empty) == []


@pytest.mark.parametrize(
    "junk",
    [
        b"hello world\n",
        b"X-Client-Addr: 127.0.0.1\nnot the next header\n",
        SINGLE_1.replace(b"X-Mail-Args", b"X-Mail-Argz"),
        SINGLE_1.replace(b" id 78caf171;", b" id not-hex;"),
        b"From junk\n" + SINGLE_1.replace(b"X-Client-Proto", b"X-Client-Prot"),
    ],
)
def test_junk_is_a_dump_format_error(junk: bytes, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError):
        parse_dump(junk)
    path = tmp_path / "sub" / "junk.dump"
    path.parent.mkdir()
    path.write_bytes(junk)
    with pytest.raises(DumpFormatError, match=r"junk\.dump"):
        parse_dump(path)
    (tmp_path / "good").write_bytes(SINGLE_1)
    with pytest.raises(DumpFormatError, match=r"junk\.dump"):
        parse_dump(tmp_path)


def test_wrong_start_string_is_an_error() -> None:
    with pytest.raises(DumpFormatError, match="start string"):
        parse_dump(MBOX, start_string="From somebody else\n")
    assert issubclass(DumpFormatError, ValueError)


# ------------------------------------------------------------------- round trips

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
# Lines as the dump stores them: CRs gone, no LF inside.
BODY_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


@st.composite
def transactions(draw: st.DrawFn, start_string: str | None = None) -> Transaction:
    client_addr = draw(st.sampled_from(["127.0.0.1", "10.20.30.40", "ipv6:::1", "local"]))
    proto = draw(st.sampled_from(["SMTP", "ESMTP", "LMTP"]))
    helo = draw(st.none() | PRINTABLE)
    queue_id = draw(st.text("0123456789abcdef", min_size=8, max_size=8))
    hostname = draw(st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,20}\Z"))
    date = format_date(draw(st.integers(0, 2**31 - 1)))
    lines = draw(st.lists(BODY_LINE, max_size=8))
    if start_string is None:
        start_string = draw(
            st.text(st.characters(min_codepoint=0x09, max_codepoint=0x7E), max_size=20).filter(
                lambda s: "X-Client-Addr: " not in s
            )
        )
    return Transaction(
        client_addr=client_addr,
        client_proto=proto,
        helo=helo,
        mail_args=draw(PRINTABLE),
        rcpt_args=tuple(draw(st.lists(PRINTABLE, min_size=1, max_size=4))),
        queue_id=queue_id,
        received=received_value(helo, client_addr, hostname, proto, queue_id, date),
        data=b"".join(line + b"\n" for line in lines) + b"\n",
        start_string=start_string,
    )


@settings(max_examples=200, deadline=None)
@given(transactions())
def test_render_parse_round_trip(tx: Transaction) -> None:
    assert parse_dump(tx.render()) == [tx]
    assert parse_dump(tx.render(), start_string=tx.start_string) == [tx]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["", "From MAILER-DAEMON\n", "START\nA\tXq\\", "#"]).flatmap(
        lambda start: st.lists(transactions(start_string=start), min_size=1, max_size=5)
    )
)
def test_multi_message_round_trip(txs: list[Transaction]) -> None:
    data = b"".join(tx.render() for tx in txs)
    assert parse_dump(data, start_string=txs[0].start_string) == txs
    assert parse_dump(data) == txs


def test_round_trip_of_a_live_capture(tmp_path: Path) -> None:
    """Transactions captured by the server render to what the server's -d dump holds."""
    import trio

    from pytest_smtp_sink import open_sink

    async def main() -> None:
        dump = str(tmp_path / "d") + "/"
        async with open_sink(dump_template=dump, start_string="S\n", lmtp=True) as sink:

            def send() -> None:
                assert sink.port is not None
                with smtplib.LMTP(sink.host, sink.port, timeout=10) as lmtp:
                    lmtp.sendmail(
                        "a@example.com", ["b@example.com"], b"Subject: x\r\n\r\n..dot\r\n"
                    )

            await trio.to_thread.run_sync(send)
            [captured] = sink.transactions
        assert parse_dump(tmp_path / "d") == [captured]
        assert (tmp_path / "d" / captured.queue_id).read_bytes() == captured.render()

    trio.run(main)


# -------------------------------------------------------- the real Postfix smtp-sink


def postfix_sink() -> Path | None:
    dirs = [os.environ.get("SMTP_SINK_POSTFIX_BIN", "")]
    dirs += [str(Path(__file__).resolve().parent.parent / ".postfix" / "bin"), "/work/postfix/bin"]
    for d in dirs:
        exe = Path(d) / "smtp-sink"
        if d and exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def listening(port: int) -> bool:
    """Whether /proc/net/tcp shows 127.0.0.1:port in state LISTEN (no probe connection)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return any(
            f[1] == want and f[3] == "0A" for f in (line.split() for line in fh) if len(f) > 3
        )


@pytest.fixture
def postfix_dump_dir() -> Iterator[tuple[Path, int]]:
    exe = postfix_sink()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Postfix smtp-sink not found (SMTP_SINK_POSTFIX_BIN)", pytrace=False)
        pytest.skip("Postfix smtp-sink not found")
    if not support.ON_LINUX:
        pytest.skip("Postfix's smtp-sink runs on Linux")
    if not support.IS_ROOT:
        pytest.skip("Postfix smtp-sink -u needs root")
    # Outside tmp_path: its parents are 0700 and the sink runs as nobody.
    dump = Path(tempfile.mkdtemp(prefix="smtp-sink-dump-"))
    dump.chmod(0o777)
    port = support.free_port()
    proc = subprocess.Popen(
        [str(exe), "-u", "nobody", "-d", f"{dump}/", f"127.0.0.1:{port}", "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"Postfix smtp-sink did not listen: {err!r}")
            time.sleep(0.005)  # polling /proc/net/tcp, not synchronisation by delay
        yield dump, port
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(dump, ignore_errors=True)


def test_parse_dumps_of_the_real_postfix_smtp_sink(postfix_dump_dir: tuple[Path, int]) -> None:
    dump, port = postfix_dump_dir
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail(
            "sender@example.com",
            ["one@example.com", "two@example.com"],
            b"Subject: first\r\nFrom: sender@example.com\r\n\r\nline\r\n.dot line\r\n\r\nend\r\n",
        )
        smtp.sendmail("", ["three@example.com"], b"Subject: second\r\n\r\nsecond body\r\n")
    # Postfix completes a -d file before it replies to ".": nothing to wait for.
    txs = parse_dump(dump)
    assert len(txs) == 2
    by_subject = {tx.message["Subject"]: tx for tx in txs}
    first, second = by_subject["first"], by_subject["second"]
    assert first.client_addr == "127.0.0.1" and first.client_proto == "ESMTP"
    assert first.helo == "client.example"
    assert first.mail_from == "sender@example.com"
    assert first.rcpt_to == ["one@example.com", "two@example.com"]
    assert first.data == b"Subject: first\nFrom: sender@example.com\n\nline\n.dot line\n\nend\n\n"
    assert "by smtp-sink (smtp-sink) with ESMTP id " + first.queue_id in first.received
    assert second.mail_args == "<>" and second.rcpt_to == ["three@example.com"]
    assert second.message.get_content() == "second body\n"
    for tx in txs:
        assert (dump / tx.queue_id).read_bytes() == tx.render()


def test_single_message_mode_keeps_a_header_look_alike_in_the_body(tmp_path: Path) -> None:
    head = (
        b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: SMTP\nX-Mail-Args: <a@x>\n"
        b"X-Rcpt-Args: <b@x>\nReceived: from [127.0.0.1] ([127.0.0.1])\n"
        b"\tby smtp-sink (smtp-sink) with SMTP id %s;\n\tTue, 24 Nov 2026 22:06:55 +0000 (UTC)\n"
    )
    data = head % b"0000abcd" + b"Subject: s\n\n" + head % b"0badc0de" + b"tail\n\n"
    assert len(parse_dump(data)) == 2  # bytes: the -D reading, ambiguous by format
    [tx] = parse_dump(data, single=True)
    assert tx.data.endswith(b"tail\n\n") and b"0badc0de" in tx.data
    named_by_id = tmp_path / "msg.0000abcd"  # how -d names files: one message each
    named_by_id.write_bytes(data)
    assert len(parse_dump(named_by_id)) == 1
    shared = tmp_path / "20261124.mbox"  # a -D file
    shared.write_bytes(data)
    assert len(parse_dump(shared)) == 2
    assert len(parse_dump(shared, single=True)) == 1
