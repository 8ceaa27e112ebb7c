"""The Python floor: the least a Python SMTP sink can do per command, for comparison.

    python benchmarks/python_floor.py 127.0.0.1:PORT

One level-triggered epoll loop in the main thread answers each read with a canned reply
(the 354 for DATA, the "queued" reply once a read ends in CRLF.CRLF) and keeps no state but
"in the data phase". It is no SMTP server (it trusts that each read is one command, as a
lock-step client sends), only a measure: on 2026-12-03, against smtp-source -s 20 -l 1000 -d,
it used the same CPU per message as Postfix's smtp-sink (user 16-18, system 56-59 ticks per
40,000 messages; Postfix 19-24 and 61-76; ours 52-64 and 71-80), so the CPU we spend above
Postfix is our code per command, not Python's socket calls. Linux only (epoll).
"""

from __future__ import annotations

import select
import socket
import sys

REPLIES = {
    b"EH": b"250-floor\r\n250 8BITMIME\r\n",
    b"HE": b"250 floor\r\n",
    b"LH": b"250-floor\r\n250 8BITMIME\r\n",
    b"MA": b"250 2.1.0 Ok\r\n",
    b"RC": b"250 2.1.5 Ok\r\n",
    b"DA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QU": b"221 Bye\r\n",
}


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((host, int(port)))
    listener.listen(1000)
    listener.setblocking(False)
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    in_data: set[int] = set()
    while True:
        for fd, _ in epoll.poll():
            if fd == listener.fileno():
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    conns[conn.fileno()] = conn
                    epoll.register(conn.fileno(), select.EPOLLIN)
                    conn.send(b"220 floor ESMTP\r\n")
                continue
            conn = conns[fd]
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                epoll.unregister(fd)
                in_data.discard(fd)
                del conns[fd]
                conn.close()
            elif fd in in_data:
                if data.endswith(b"\r\n.\r\n"):
                    in_data.discard(fd)
                    conn.send(b"250 2.0.0 Ok: queued\r\n")
            else:
                reply = REPLIES.get(data[:2].upper(), b"250 2.0.0 Ok\r\n")
                if reply.startswith(b"354"):
                    in_data.add(fd)
                conn.send(reply)


if __name__ == "__main__":
    main()
