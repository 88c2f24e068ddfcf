#!/usr/bin/env python3
"""Idle keep-alive connections against one server process.

Opens N connections from several 127.0.x.y source addresses, sends one
request on each (HTTP/1.1, or HTTP/2 with prior knowledge), reads the whole
answer, and leaves the connection open and quiet. Then reports, as JSON, the
server's resident memory before, while they wait, and after they close, and
the CPU time it spent while they waited.

    idle.py --port P --pid PID --count N --proto h1|h2 --path /x [--cookie C]

PID is the process that holds the connections (nginx: its worker).
"""

import argparse
import json
import os
import resource
import selectors
import socket
import struct
import time

ADDRESSES_FROM = (127, 0, 1, 1)
PER_ADDRESS = 400


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def source(i):
    n = i // PER_ADDRESS
    a, b, c, d = ADDRESSES_FROM
    return f"{a}.{b}.{c + (d + n) // 250}.{(d + n) % 250 + 1}"


def hpack_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(index, value):
    """A literal header field without indexing, its name from the static
    table."""
    v = value.encode()
    return hpack_int(index, 4, 0x00) + hpack_int(len(v), 7, 0x00) + v


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h1_request(host, path, cookie):
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    return (head + "\r\n").encode()


def h2_request(host, path, cookie):
    block = b"\x82\x86"  # :method GET, :scheme http
    block += hpack_literal(4, path) + hpack_literal(1, host)
    block += hpack_literal(19, "application/json")  # accept
    if cookie:
        block += hpack_literal(32, cookie)
    return (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + frame(0x4, 0, 0, b"")  # SETTINGS
        # The connection's window raised, as browsers and curl do at once.
        + frame(0x8, 0, 0, struct.pack(">I", 15 * 1024 * 1024))  # WINDOW_UPDATE
        + frame(0x1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )


class Conn:
    def __init__(self, sock, proto):
        self.sock = sock
        self.proto = proto
        self.buf = b""
        self.done = False
        self.acked = False

    def feed(self, data):
        self.buf += data
        if self.proto == "h1":
            head, sep, body = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            self.done = len(body) >= length
            return
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            self.buf = self.buf[9 + length :]
            if kind == 0x4 and not flags & 0x1 and not self.acked:
                self.sock.sendall(frame(0x4, 0x1, 0, b""))
                self.acked = True
            if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
                self.done = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--proto", choices=["h1", "h2"], default="h1")
    p.add_argument("--path", default="/")
    p.add_argument("--cookie", default="")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--quiet-seconds", type=float, default=5.0)
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    request = (h1_request if args.proto == "h1" else h2_request)(
        f"{args.host}:{args.port}", args.path, args.cookie
    )
    time.sleep(args.settle)
    before = rss_kib(args.pid)
    sel = selectors.DefaultSelector()
    conns = []
    pending = 0
    failed = 0
    started = time.time()
    for i in range(args.count):
        s = socket.socket()
        s.bind((source(i), 0))
        try:
            s.connect((args.host, args.port))
        except OSError:
            failed += 1
            s.close()
            continue
        s.sendall(request)
        s.setblocking(False)
        c = Conn(s, args.proto)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        pending += 1
        # Keep the answers flowing so the server's backlog stays short.
        while pending > 256 or (i == args.count - 1 and pending > 0):
            events = sel.select(timeout=5)
            if not events:
                break
            for key, _ in events:
                c = key.data
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    failed += 1
                    sel.unregister(c.sock)
                    pending -= 1
                    continue
                c.feed(data)
                if c.done:
                    sel.unregister(c.sock)
                    pending -= 1
        if time.time() - started > 120:
            break
    answered = sum(1 for c in conns if c.done)
    time.sleep(args.settle)
    holding = rss_kib(args.pid)
    ticks = cpu_ticks(args.pid)
    time.sleep(args.quiet_seconds)
    ticks = cpu_ticks(args.pid) - ticks
    # Still open? A closed connection reads as end of file at once.
    still_open = 0
    for c in conns:
        try:
            c.sock.setblocking(False)
            data = c.sock.recv(1, socket.MSG_PEEK)
            if data:
                still_open += 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    for c in conns:
        c.sock.close()
    time.sleep(args.settle)
    after = rss_kib(args.pid)
    hz = os.sysconf("SC_CLK_TCK")
    print(
        json.dumps(
            {
                "count": args.count,
                "answered": answered,
                "still_open": still_open,
                "failed": failed,
                "rss_before_kib": before,
                "rss_holding_kib": holding,
                "rss_after_kib": after,
                "per_connection_bytes": round((holding - before) * 1024 / max(answered, 1)),
                "idle_cpu_percent": round(100.0 * ticks / hz / args.quiet_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
