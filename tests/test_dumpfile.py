"""DumpWriter: -d (one file per message) and -D (append to a shared file), reference §14."""

from __future__ import annotations

import datetime
import os
import random
import stat
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import support
from hypothesis import given, settings
from hypothesis import strategies as st
from support import local_tz

from pytest_smtp_sink.core.config import SinkConfig
from pytest_smtp_sink.core.envelope import Envelope
from pytest_smtp_sink.core.framing import sanitize
from pytest_smtp_sink.dump.transaction import (
    Transaction,
    dump_text,
    envelope_dump,
    format_date,
    received_value,
    with_queue_id,
)
from pytest_smtp_sink.dump.writer import DumpWriter, expand_template

T_MAIL = datetime.datetime(2026, 11, 24, 22, 6, 54, tzinfo=datetime.timezone.utc).timestamp()
DAY = 86400.0


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    with local_tz("UTC"):
        yield


@pytest.fixture(params=[0o000, 0o022], ids=["umask0", "umask022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


def make_tx(queue_id: str = "78caf171", when: float = T_MAIL, **kw: Any) -> Transaction:
    fields: dict[str, Any] = {
        "client_addr": "127.0.0.1",
        "client_proto": "ESMTP",
        "helo": "client.example",
        "mail_args": "<sender@example.com>",
        "rcpt_args": ("<one@example.com>",),
        "queue_id": queue_id,
        "received": received_value(
            "client.example", "127.0.0.1", "smtp-sink", "ESMTP", queue_id, format_date(when)
        ),
        "data": b"Subject: x\n\nbody\n\n",
    }
    fields.update(kw)
    return Transaction(**fields)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class FixedBits(random.Random):
    """getrandbits() always returns the same value: every new id collides."""

    def getrandbits(self, k: int) -> int:
        return 0x1234


# ------------------------------------------------------------------------------ -d


def test_single_file_name_and_content(tmp_path: Path) -> None:
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/single/%Y%m%d/msg."))
    tx = make_tx()
    assert writer.write(tx, T_MAIL) is tx
    path = tmp_path / "single" / "20261124" / "msg.78caf171"
    assert path.read_bytes() == tx.render()
    assert path.read_bytes().startswith(b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n")
    assert sorted(p.name for p in (tmp_path / "single" / "20261124").iterdir()) == ["msg.78caf171"]


def test_single_template_is_a_plain_prefix(tmp_path: Path) -> None:
    (tmp_path / "dump").mkdir()
    DumpWriter(SinkConfig(dump_template=f"{tmp_path}/dump/")).write(make_tx("29edf5c3"), T_MAIL)
    assert (tmp_path / "dump" / "29edf5c3").is_file()


def test_single_template_expanded_at_mail_time_in_local_time(tmp_path: Path) -> None:
    late = datetime.datetime(2026, 11, 25, 2, 0, tzinfo=datetime.timezone.utc).timestamp()
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/%Y-%m-%d_%H."))
    writer.write(make_tx("00000001"), late)
    with local_tz("America/New_York"):
        writer.write(make_tx("00000002"), late)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-11-24_21.00000002",
        "2026-11-25_02.00000001",
    ]


def test_single_modes(tmp_path: Path, umask: int) -> None:
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/a/b/c/msg."))
    writer.write(make_tx(), T_MAIL)
    assert mode(tmp_path / "a/b/c/msg.78caf171") == 0o644
    for d in ("a", "a/b", "a/b/c"):
        assert mode(tmp_path / d) == 0o755, d


def test_single_collision_draws_a_fresh_id(tmp_path: Path) -> None:
    taken = tmp_path / "msg.78caf171"
    taken.write_bytes(b"someone else's")
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/msg."), random.Random(5))
    tx = make_tx()
    written = writer.write(tx, T_MAIL)
    fresh = f"{random.Random(5).getrandbits(31):08x}"
    assert written.queue_id == fresh != tx.queue_id
    assert f" id {fresh};" in written.received and " id 78caf171;" not in written.received
    assert (tmp_path / f"msg.{fresh}").read_bytes() == written.render()
    assert taken.read_bytes() == b"someone else's"  # exclusive create: never overwritten
    # everything else is unchanged
    assert written.data == tx.data and written.rcpt_args == tx.rcpt_args


def test_single_collision_forever_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "msg.78caf171").write_bytes(b"")
    (tmp_path / "msg.00001234").write_bytes(b"")
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/msg."), FixedBits())
    with pytest.raises(OSError, match="something is looping"):
        writer.write(make_tx(), T_MAIL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msg.00001234", "msg.78caf171"]


def test_single_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for template in ("file/msg.", "file/sub/msg."):
        writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/{template}"))
        with pytest.raises(OSError):
            writer.write(make_tx(), T_MAIL)
    assert (tmp_path / "file").read_bytes() == b"x"


def test_single_unwritable_directory(tmp_path: Path) -> None:
    if support.IS_ROOT or not hasattr(os, "geteuid"):
        pytest.skip("root may write anywhere (and without POSIX modes, so may anyone)")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(PermissionError):
        DumpWriter(SinkConfig(dump_template=f"{locked}/msg.")).write(make_tx(), T_MAIL)


def test_single_with_start_string(tmp_path: Path) -> None:
    tx = make_tx(start_string="START\nA\tXq\\")
    DumpWriter(SinkConfig(dump_template=f"{tmp_path}/m.")).write(tx, T_MAIL)
    content = (tmp_path / "m.78caf171").read_bytes()
    assert content.startswith(b"START\nA\tXq\\X-Client-Addr: 127.0.0.1\n")
    assert content == tx.render()


# ------------------------------------------------------------------------------ -D


def test_shared_file_appends_whole_messages(tmp_path: Path) -> None:
    writer = DumpWriter(SinkConfig(dump_file_template=f"{tmp_path}/shared/%Y%m%d.mbox"))
    tx1 = make_tx("3ce99244", start_string="From MAILER-DAEMON\n")
    tx2 = make_tx("0335b98d", start_string="From MAILER-DAEMON\n", data=b"second\n\n")
    assert writer.write(tx1, T_MAIL) is tx1
    assert writer.write(tx2, T_MAIL + 1) is tx2
    shared = tmp_path / "shared" / "20261124.mbox"
    assert shared.read_bytes() == tx1.render() + tx2.render()
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["20261124.mbox"]


def test_shared_file_keeps_existing_content(tmp_path: Path) -> None:
    shared = tmp_path / "all.mbox"
    shared.write_bytes(b"old\n")
    tx = make_tx()
    DumpWriter(SinkConfig(dump_file_template=str(shared))).write(tx, T_MAIL)
    assert shared.read_bytes() == b"old\n" + tx.render()


def test_shared_template_expanded_at_mail_time(tmp_path: Path) -> None:
    writer = DumpWriter(SinkConfig(dump_file_template=f"{tmp_path}/%Y%m%d.mbox"))
    a, b = make_tx("00000001"), make_tx("00000002")
    writer.write(a, T_MAIL)
    writer.write(b, T_MAIL + DAY)
    assert (tmp_path / "20261124.mbox").read_bytes() == a.render()
    assert (tmp_path / "20261125.mbox").read_bytes() == b.render()


def test_shared_modes(tmp_path: Path, umask: int) -> None:
    writer = DumpWriter(SinkConfig(dump_file_template=f"{tmp_path}/x/y/all.mbox"))
    writer.write(make_tx(), T_MAIL)
    assert mode(tmp_path / "x/y/all.mbox") == 0o644
    assert mode(tmp_path / "x") == 0o755 and mode(tmp_path / "x/y") == 0o755


def test_shared_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    for template in ("file/all.mbox", "file/sub/all.mbox"):
        writer = DumpWriter(SinkConfig(dump_file_template=f"{tmp_path}/{template}"))
        with pytest.raises(OSError):
            writer.write(make_tx(), T_MAIL)


def test_shared_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "all.mbox").mkdir()
    writer = DumpWriter(SinkConfig(dump_file_template=f"{tmp_path}/all.mbox"))
    with pytest.raises(IsADirectoryError):
        writer.write(make_tx(), T_MAIL)


# ------------------------------------------------------------------------- misc


def test_no_dump_configured_writes_nothing(tmp_path: Path) -> None:
    tx = make_tx()
    assert DumpWriter(SinkConfig()).write(tx, T_MAIL) is tx
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/x/%Y%m%d/msg.", "/x/20261124/msg."),
        ("plain.", "plain."),
        ("%H%M%S-%%", "220654-%"),
        ("%a %b %e", "Tue Nov 24"),
    ],
)
def test_expand_template(template: str, expected: str) -> None:
    assert expand_template(template, T_MAIL) == expected


@pytest.mark.parametrize("mode", ["-d", "-D"])
def test_disk_full_leaves_no_partial_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """ENOSPC part-way through a write: OSError for the caller (the client gets 451), and
    nothing partial is left: no -d file, and the -D file cut back to its whole messages."""
    import errno

    from pytest_smtp_sink.dump import writer as dumpfile

    cfg = (
        SinkConfig(dump_template=f"{tmp_path}/d/msg.")
        if mode == "-d"
        else SinkConfig(dump_file_template=f"{tmp_path}/shared.mbox")
    )
    writer = dumpfile.DumpWriter(cfg, random.Random(1))
    first = writer.write(make_tx("0000000a", data=b"first\n\n"), T_MAIL)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    contents = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    real_write = os.write

    def short_then_enospc(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    with pytest.raises(OSError):
        writer.write(make_tx("0000000b", data=b"second message\n\n"), T_MAIL)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == contents
    assert first.queue_id == "0000000a"


def test_stream_writes_what_write_writes(tmp_path: Path) -> None:
    """A -d dump streamed piece by piece is the file ``write`` makes of the whole."""
    data = b"Subject: x\n\n" + b"line\n" * 1000 + b"\n"
    whole = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/a/"), random.Random(1))
    streamed = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/b/"), random.Random(1))
    whole.write(make_tx(data=data), T_MAIL)
    stream = streamed.open_stream(make_tx(data=b""), T_MAIL)
    assert (tmp_path / "b" / "78caf171").exists()  # there from the start, header first
    stream.write([data[:7], data[7:100]])
    stream.write([data[100:-50]])
    tx = stream.finish(data[-50:])
    assert tx.queue_id == "78caf171"
    assert (tmp_path / "b" / "78caf171").read_bytes() == (
        tmp_path / "a" / "78caf171"
    ).read_bytes()
    assert stream.data() == data


def test_stream_takes_a_free_name(tmp_path: Path) -> None:
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/"), random.Random(1))
    writer.write(make_tx(), T_MAIL)
    stream = writer.open_stream(make_tx(data=b""), T_MAIL)
    tx = stream.finish(b"second\n\n")
    assert tx.queue_id != "78caf171"
    assert f" id {tx.queue_id};" in (tmp_path / tx.queue_id).read_text()


def test_discarded_stream_leaves_nothing(tmp_path: Path) -> None:
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/"), random.Random(1))
    stream = writer.open_stream(make_tx(data=b""), T_MAIL)
    stream.write([b"part of a message\n"])
    stream.discard()
    stream.discard()  # once or twice: the same
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_streaming_leaves_no_dump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC part-way: later pieces are not tried, ``finish`` raises it, no file is left."""
    import errno

    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/"), random.Random(1))
    stream = writer.open_stream(make_tx(data=b""), T_MAIL)
    stream.write([b"first piece\n"])
    calls = []

    def enospc(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", enospc)
    stream.write([b"second piece\n"])
    stream.write([b"third piece\n"])
    with pytest.raises(OSError, match="No space"):
        stream.finish(b"rest\n\n")
    monkeypatch.undo()
    assert len(calls) == 1
    assert list(tmp_path.iterdir()) == []


def test_dates_follow_the_time_zone_within_one_second() -> None:
    """Dates are cached per second: a zone switched meanwhile (tzset) still shows."""
    utc = format_date(T_MAIL)
    with local_tz("America/New_York"):
        new_york = format_date(T_MAIL)
    assert utc == "Tue, 24 Nov 2026 22:06:54 +0000 (UTC)"
    assert new_york == "Tue, 24 Nov 2026 17:06:54 -0500 (EST)"
    assert format_date(T_MAIL) == utc
    assert format_date(T_MAIL + 1).startswith("Tue, 24 Nov 2026 22:06:55 ")


# ------------------------------------------- written straight from the envelope

client_texts = st.text(
    alphabet=st.sampled_from("aZ9 <>@.:\t\x7f\x01é😀\udcff"), max_size=12
)  # printable ASCII, controls, UTF-8, a surrogate (an octet that was not UTF-8)


def make_envelope(**kw: Any) -> Envelope:
    fields: dict[str, Any] = {
        "client_addr": "127.0.0.1",
        "client_proto": "ESMTP",
        "helo": "client.example",
        "mail_args": "<sender@example.com>",
        "rcpt_args": ("<one@example.com>",),
        "queue_id": "78caf171",
        "timestamp": T_MAIL,
        "received_helo": "client.example",
        "received_proto": "ESMTP",
        "hostname": "smtp-sink",
        "start_string": "",
        "data": b"Subject: x\n\nbody\n\n",
    }
    fields.update(kw)
    return Envelope(**fields)


@settings(max_examples=200, deadline=None)
@given(
    helo=st.none() | client_texts,
    received_helo=st.none() | client_texts,
    mail=client_texts,
    rcpts=st.lists(client_texts, max_size=3),
    utf8=st.booleans(),
    tls=st.none() | st.just("TLSv1.3 TLS_AES_256_GCM_SHA384"),
    auth=st.none() | client_texts,
    start=st.sampled_from(["", "From x\n"]),
)
def test_envelope_dump_is_the_transactions_render(
    helo: str | None,
    received_helo: str | None,
    mail: str,
    rcpts: list[str],
    utf8: bool,
    tls: str | None,
    auth: str | None,
    start: str,
) -> None:
    """A dump written without a Transaction (nobody observes) is byte for byte the one
    written from it."""
    e = make_envelope(
        helo=helo, received_helo=received_helo, mail_args=mail, rcpt_args=tuple(rcpts),
        smtputf8=utf8, tls=tls, auth_user=auth, start_string=start,
    )  # fmt: skip
    assert envelope_dump(e, e.queue_id) == Transaction.from_envelope(e).render()
    assert envelope_dump(e, "0badcafe") == with_queue_id(
        Transaction.from_envelope(e), "0badcafe"
    ).render()


@settings(max_examples=200, deadline=None)
@given(
    helo=st.none() | st.text(string.printable[:95], max_size=12),
    received_helo=st.none() | st.text(string.printable[:95], max_size=12),
    mail=st.text(string.printable[:95], max_size=12),
    rcpts=st.lists(st.text(string.printable[:95], max_size=12) | client_texts, max_size=3),
    proto=st.sampled_from(["SMTP", "ESMTP", "LMTP"]),
)
def test_a_usual_envelope_dump_is_the_transactions_render(
    helo: str | None, received_helo: str | None, mail: str, rcpts: list[str], proto: str
) -> None:
    """The same for the usual message (printable ASCII, no -S, TLS, AUTH or SMTPUTF8),
    which envelope_dump writes in one piece, and for one recipient text that is not."""
    e = make_envelope(
        helo=helo, received_helo=received_helo, mail_args=mail, rcpt_args=tuple(rcpts),
        client_proto=proto, received_proto=proto,
    )  # fmt: skip
    assert envelope_dump(e, e.queue_id) == Transaction.from_envelope(e).render()


@given(client_texts)
def test_dump_text_of_a_printable_text_is_the_text(value: str) -> None:
    """dump_text's shortcut gives what its two ways give: octets that are not printable
    ASCII become '?'; in SMTPUTF8 control characters do."""
    assert dump_text(value, False) == sanitize(value.encode("utf-8", "surrogateescape"))
    controls = {c: "?" for c in (*range(0x20), 0x7F)}
    assert dump_text(value, True) == value.translate(controls)


@pytest.mark.parametrize("collision", [False, True])
@pytest.mark.parametrize("mode_", ["-d", "-D"])
def test_write_envelope_writes_what_write_does(
    tmp_path: Path, collision: bool, mode_: str
) -> None:
    e = make_envelope()
    files = {}
    for how in ("tx", "envelope"):
        folder = tmp_path / how
        folder.mkdir()
        if collision:
            (folder / "msg.78caf171").write_bytes(b"someone else's")
        if mode_ == "-d":
            cfg = SinkConfig(dump_template=f"{folder}/msg.")
        else:
            cfg = SinkConfig(dump_file_template=f"{folder}/%Y%m%d.mbox")
        writer = DumpWriter(cfg, random.Random(5))
        if how == "tx":
            writer.write(Transaction.from_envelope(e), e.timestamp)
        else:
            writer.write_envelope(e)
        files[how] = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert files["envelope"] == files["tx"]
    assert len(files["tx"]) == 1 + collision


def test_write_envelope_leaves_nothing_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_smtp_sink.dump import writer as writer_module

    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module, "_write_all", full)
    writer = DumpWriter(SinkConfig(dump_template=f"{tmp_path}/msg."))
    with pytest.raises(OSError, match="No space"):
        writer.write_envelope(make_envelope())
    assert list(tmp_path.iterdir()) == []


def test_a_name_taken_changes_the_id_of_the_received_line_not_of_the_helo(
    tmp_path: Path,
) -> None:
    """A client's HELO text may hold the words of the Received line's id: a fresh id
    replaces the Received line's own, whichever way the dump is written."""
    e = make_envelope(received_helo="x id 78caf171;")
    files = {}
    for how in ("tx", "envelope"):
        folder = tmp_path / how
        folder.mkdir()
        (folder / "msg.78caf171").write_bytes(b"someone else's")
        writer = DumpWriter(SinkConfig(dump_template=f"{folder}/msg."), random.Random(5))
        if how == "tx":
            writer.write(Transaction.from_envelope(e), e.timestamp)
        else:
            writer.write_envelope(e)
        [path] = [p for p in folder.iterdir() if p.name != "msg.78caf171"]
        files[how] = path.read_bytes()
    fresh = f"{random.Random(5).getrandbits(31):08x}"
    assert files["tx"] == files["envelope"]
    assert b"from x id 78caf171; ([127.0.0.1])" in files["tx"]
    assert f"with ESMTP id {fresh};".encode() in files["tx"]


def test_envelopes_and_their_events_hash() -> None:
    from pytest_smtp_sink.core.events import MessageReceived

    e = make_envelope()
    assert hash(MessageReceived(e)) == hash(MessageReceived(make_envelope()))
