"""The mirror's copies travel in batches: a tick's copies packed into datagrams and read back one by one, the
count of copies dropped before each datagram carried by its first copy."""

from __future__ import annotations

import socket

from backends.local.endpoint import live
from backends.local.endpoint.mirror_process import decode, encode, pack, unpack


def test_copies_pack_into_one_datagram_and_come_back_in_order() -> None:
    copies = [encode(f"r{i}", 200, 0.5 + i, i % 2, b'["Presence"]', b'{"data":[{"chol":%d}]}' % i) for i in range(5)]
    back = [decode(c) for c in unpack(pack(copies))]
    assert [b[0] for b in back] == [f"r{i}" for i in range(5)]
    assert back[3] == ("r3", 200, 3.5, 1, b'["Presence"]', b'{"data":[{"chol":3}]}')
    assert unpack(b"") == []


def test_a_refused_datagram_is_counted_and_told_with_the_next_one() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 50_000)  # room for about two of the copies below
    mirror = object.__new__(live._Mirror)  # the worker's end only, without spawning a mirror process
    mirror._pending, mirror.overflow, mirror._reported, mirror._unsent = live.deque(), 0, 0, 0
    mirror._flushing = live.threading.Lock()
    mirror.sock = ours
    body = b"x" * 40_000
    for i in range(4):
        mirror.send(f"r{i}", 200, 1.0, b"[1]", body)
    mirror.flush()  # 4 copies of 40 kB: one per datagram, until the socket's buffer is full
    received = []
    theirs.setblocking(False)
    while True:
        try:
            received.append(theirs.recv(1 << 20))
        except BlockingIOError:
            break
    sent = sum(len(unpack(d)) for d in received)
    assert 0 < sent < 4 and mirror._untold() == 4 - sent
    mirror.send("r9", 200, 1.0, b"[1]", b"{}")
    mirror.flush()
    last = unpack(theirs.recv(1 << 20))
    assert decode(last[0])[0] == "r9" and decode(last[0])[3] == 4 - sent and mirror._untold() == 0
    ours.close()
    theirs.close()
