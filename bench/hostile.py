#!/usr/bin/env python3
"""Hostile clients for bench/hostile.sh (python 3.11, standard library only).

Every connection goes to 127.0.0.1; every loop is bounded in count and in time.

  run --port P --pid PID --ca CA --review FILE [options]
        Runs the attacks in a row against one running `irsa-webhook serve` (pid PID, TLS on
        127.0.0.1:P) while a legitimate client and an RSS sampler run in a child process
        (`monitor`, so that the attacker's GIL does not delay them), then prints the table.
        Options: --attack-seconds S (35), --pause S (3), --baseline-seconds S (5),
        --only LETTERS (e.g. "b,d"), --discovery-port P --discovery-pid PID (attack h).
        Exit status 0 whatever the figures, 3 when the server died, 1 on errors of its own.
  monitor --port P --ca CA --review FILE [--discovery-port P]
        The legitimate client (one persistent TLS HTTP/1.1 connection, one request every 20 ms,
        2 s timeout) and the VmRSS sampler (every 50 ms), driven by JSON lines on stdin:
        {"cmd": "start", "name": ..., "pid": ..., "target": "webhook"|"discovery"} starts a
        window, {"cmd": "end"} ends it and answers one JSON line of figures, {"cmd": "quit"}.
  apiserver --port P --cert CRT --key KEY --issuer URL
        HTTPS stand-in for the API server of `irsa-webhook discovery`: answers
        /.well-known/openid-configuration and /openid/v1/jwks, 404 otherwise.

Attacks (letters as in bench/README.md):
  a  amplification: reviews with ~1 000 000 empty containers, then init containers (< 3 MiB)
  b  100 HTTP/1.1 uploads of 3 MiB - 1 bytes of a 3 MiB body, then silence
  c  one HTTP/2 connection, 100 streams each sending 3 MiB - 1 of 3 MiB, never ended
  d  2000 idle TLS connections (ALPN http/1.1, h2, none: 2:1:1)
  e  20 HTTP/1.1 bodies of 100 000 bytes sent one byte per second
  f  500 idle HTTP/2 connections (preface and SETTINGS done, PINGs answered)
  g  30 000 containers with 50 000-name skip-containers / include-containers annotations
  h  attack d against the discovery server's public port
"""

import argparse
import base64
import collections
import json
import os
import random
import selectors
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"  # the only address this tool ever connects to
MiB = 1024 * 1024
MAX_BODY = 3 * MiB  # the webhook's body limit (src/webhook/server.rs MAX_BODY_BYTES)
LEGIT_PERIOD = 0.020
LEGIT_TIMEOUT = 2.0
RSS_PERIOD = 0.050
CONNECT_TIMEOUT = 5.0
SEND_CAP = 30.0  # longest send / set-up phase of a connection attack before its window starts

TARGETS = {
    "rss_mib": 128,
    "legit_failures": 0,
    "legit_p99_ms": 50,
    "close_s": 30,
    "crafted_cpu_ms": 10,
}


def log(*parts):
    print(*parts, flush=True)


def percentile(values, p):
    """Nearest rank; None for no values."""
    if not values:
        return None
    values = sorted(values)
    return values[max(0, min(len(values) - 1, -(-len(values) * p // 100) - 1))]


# --- /proc --------------------------------------------------------------------------------------


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0  # a zombie has no VmRSS


def reset_peak(pid):
    """Resets the process's VmHWM to its current RSS (`echo 5 > /proc/PID/clear_refs`), so that
    VmHWM at the end of a window is that window's exact peak, spikes between samples included.
    False when not permitted (then only the 50 ms samples count)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def alive(pid):
    """False when the process is gone or a zombie (the server is bash's child, not ours)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def cpu_ns(pid):
    """CPU time of the process in ns: the sum of its threads' run time from
    /proc/PID/task/*/schedstat (ns resolution; utime+stime in /proc/PID/stat move in 10 ms
    ticks, too coarse for a 10 ms target). Also returns utime+stime in ns for comparison."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just exited
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None, None
    ticks = int(fields[11]) + int(fields[12])
    return total, ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


# --- HTTP/1.1 over a blocking TLS socket -----------------------------------------------------------


def client_context(cafile=None, alpn=("http/1.1",)):
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:  # attackers do not verify: cheaper, and they only need the connection
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def open_tls(ctx, port, timeout=CONNECT_TIMEOUT):
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


class HttpError(Exception):
    pass


def read_response(sock, deadline, keep=65536):
    """Reads one HTTP/1.1 response. Returns (status, headers dict, first `keep` body bytes,
    body length, connection-close flag). Raises TimeoutError / HttpError / OSError."""
    buf = bytearray()

    def more():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("response timed out")
        sock.settimeout(left)
        data = sock.recv(262144)
        if not data:
            raise HttpError("connection closed by the server")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        if len(buf) > 65536:
            raise HttpError("response head too long")
        more()
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HttpError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    close = headers.get("connection", "").lower() == "close"
    kept, length = bytearray(), 0

    def take(data):
        nonlocal length
        length += len(data)
        if len(kept) < keep:
            kept.extend(data[: keep - len(kept)])

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            while b"\r\n" not in buf:
                more()
            line, _, rest = bytes(buf).partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            buf[:] = rest
            while len(buf) < size + 2:
                more()
            take(bytes(buf[:size]))
            del buf[: size + 2]
            if size == 0:
                break  # trailers are not used by the servers under test
    elif "content-length" in headers:
        want = int(headers["content-length"])
        while len(buf) < want:
            take(bytes(buf))
            want -= len(buf)
            buf.clear()
            more()
        take(bytes(buf[:want]))
    else:  # read to EOF
        close = True
        while True:
            take(bytes(buf))
            buf.clear()
            try:
                more()
            except HttpError:
                break
    return status, headers, bytes(kept), length, close


def post_request(path, body, port, content_type="application/json"):
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# --- monitor: legitimate client and RSS sampler ------------------------------------------------------


class Monitor:
    def __init__(self, args):
        with open(args.review, "rb") as f:
            review = f.read()
        self.targets = {
            "webhook": (args.port, post_request("/mutate", review, args.port), b'"allowed":true'),
        }
        if args.discovery_port:
            get = (
                f"GET /.well-known/openid-configuration HTTP/1.1\r\n"
                f"Host: localhost:{args.discovery_port}\r\n\r\n"
            ).encode()
            self.targets["discovery"] = (args.discovery_port, get, b'"issuer"')
        self.ctx = client_context(args.ca)
        self.lock = threading.Lock()
        self.window = None
        self.target = "webhook"
        self.pid = None
        self.stop = threading.Event()

    def legit(self):
        sock, sock_target = None, None
        next_at = time.monotonic()
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + LEGIT_PERIOD, time.monotonic())
            with self.lock:
                target, started_in = self.target, self.window
            if sock is not None and sock_target != target:
                sock.close()
                sock = None
            port, request, expect = self.targets[target]
            t0 = time.monotonic()
            deadline = t0 + LEGIT_TIMEOUT
            reason, reconnected = None, False
            try:
                if sock is None:
                    sock = open_tls(self.ctx, port, timeout=LEGIT_TIMEOUT)
                    sock_target, reconnected = target, True
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                sock.sendall(request)
                status, _, body, _, close = read_response(sock, deadline)
                if status != 200:
                    reason = f"HTTP {status}"
                elif expect not in body:
                    reason = "answer without " + expect.decode()
                if close:
                    sock.close()
                    sock = None
            except (OSError, HttpError, ValueError) as err:
                reason = "timeout" if isinstance(err, TimeoutError) else type(err).__name__
                if sock is not None:
                    sock.close()
                sock = None
            elapsed = time.monotonic() - t0
            with self.lock:  # counted when it started and ended in the same window
                w = self.window
                if w is not None and w is started_in and w["target"] == target:
                    w["latencies"].append(elapsed)
                    if reason:
                        w["failures"] += 1
                        w["reasons"][reason] += 1
                    w["connects"] += reconnected

    def sampler(self):
        while not self.stop.is_set():
            with self.lock:
                w = self.window
            if w is not None:
                try:
                    kib = rss_kib(w["pid"])
                    w["peak_kib"] = max(w["peak_kib"], kib)
                except OSError:
                    w["died"] = True
            time.sleep(RSS_PERIOD)

    def serve(self):
        threads = [threading.Thread(target=t, daemon=True) for t in (self.legit, self.sampler)]
        for t in threads:
            t.start()
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "start":
                with self.lock:
                    self.target = msg["target"]
                    self.window = {
                        "name": msg["name"],
                        "pid": msg["pid"],
                        "target": msg["target"],
                        "latencies": [],
                        "failures": 0,
                        "connects": 0,
                        "reasons": collections.Counter(),
                        "start_kib": rss_kib(msg["pid"]) if alive(msg["pid"]) else 0,
                        "peak_kib": rss_kib(msg["pid"]) if alive(msg["pid"]) else 0,
                        "hwm": reset_peak(msg["pid"]),
                        "died": False,
                    }
            elif msg["cmd"] == "end":
                with self.lock:
                    w, self.window = self.window, None
                if w["hwm"]:
                    try:
                        w["peak_kib"] = max(w["peak_kib"], rss_kib(w["pid"], "VmHWM"))
                    except OSError:
                        w["died"] = True
                lat = w["latencies"]
                print(
                    json.dumps(
                        {
                            "count": len(lat),
                            "p50_ms": percentile(lat, 50) * 1000 if lat else None,
                            "p99_ms": percentile(lat, 99) * 1000 if lat else None,
                            "max_ms": max(lat) * 1000 if lat else None,
                            "failures": w["failures"],
                            "connects": w["connects"],
                            "reasons": dict(w["reasons"].most_common(4)),
                            "start_rss_mib": w["start_kib"] / 1024,
                            "peak_rss_mib": w["peak_kib"] / 1024,
                            "peak_exact": w["hwm"],
                            "died": w["died"],
                        }
                    ),
                    flush=True,
                )
            elif msg["cmd"] == "quit":
                break
        self.stop.set()


class MonitorClient:
    """The parent's side of `monitor`."""

    def __init__(self, args):
        cmd = [sys.executable, os.path.abspath(__file__), "monitor", "--port", str(args.port),
               "--ca", args.ca, "--review", args.review]
        if args.discovery_port:
            cmd += ["--discovery-port", str(args.discovery_port)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def start(self, name, pid, target="webhook"):
        self.send(cmd="start", name=name, pid=pid, target=target)

    def end(self):
        self.send(cmd="end")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the monitor process exited")
        return json.loads(line)

    def close(self):
        try:
            self.send(cmd="quit")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


# --- non-blocking connection pump (connection attacks) -----------------------------------------------


class Conn:
    """One attacking TLS connection. `ref` is when its attack's last byte went out: bytes queued
    with payload=True (or a callable, also called with the time) move it when they have left;
    protocol answers (SETTINGS/PING ACK, WINDOW_UPDATE) do not."""

    def __init__(self, sock, kind=""):
        self.sock = sock
        self.kind = kind
        self.out = collections.deque()
        self.out_bytes = 0
        self.ref = time.monotonic()
        self.closed_at = None
        self.why = None
        self.received = 0
        self.head = b""  # first bytes the server sent (a status line, for HTTP/1.1)
        self.h2 = None
        self.events = 0


class Pump:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.conns = []

    def add(self, conn):
        conn.sock.setblocking(False)
        conn.events = selectors.EVENT_READ
        self.sel.register(conn.sock, conn.events, conn)
        self.conns.append(conn)
        self.read(conn)  # data already decrypted during the handshake

    def queue(self, conn, data, payload=False):
        if conn.closed_at is not None:
            return
        conn.out.append((memoryview(data), payload))
        conn.out_bytes += len(data)
        self.flush(conn)

    def _events(self, conn):
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        if want != conn.events:
            conn.events = want
            self.sel.modify(conn.sock, want, conn)

    def flush(self, conn):
        while conn.out and conn.closed_at is None:
            data, payload = conn.out[0]
            # A write that would block must be retried with the same bytes (OpenSSL).
            chunk = data[:262144]
            try:
                n = conn.sock.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                break
            except OSError as err:
                self.close(conn, f"send: {type(err).__name__}")
                return
            conn.out_bytes -= n
            if payload and n:
                conn.ref = time.monotonic()  # the attack's bytes that actually left
            if n >= len(data):
                conn.out.popleft()
                if callable(payload):
                    payload(conn.ref)
            else:
                conn.out[0] = (data[n:], payload)
        if conn.closed_at is None:
            self._events(conn)

    def read(self, conn):
        while conn.closed_at is None:
            try:
                data = conn.sock.recv(262144)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError as err:  # reset, unclean TLS EOF, ...
                self.close(conn, type(err).__name__)
                return
            if not data:
                self.close(conn, "EOF")
                return
            conn.received += len(data)
            if len(conn.head) < 32:
                conn.head += data[: 32 - len(conn.head)]
            if conn.h2 is not None:
                conn.h2.feed(data)

    def close(self, conn, why):
        if conn.closed_at is not None:
            return
        conn.closed_at = time.monotonic()
        conn.why = why
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn.h2 is not None:
            conn.h2.on_close()

    def poll(self, timeout):
        for key, events in self.sel.select(timeout=timeout):
            conn = key.data
            if events & selectors.EVENT_READ:
                self.read(conn)
            if events & selectors.EVENT_WRITE and conn.closed_at is None:
                self.flush(conn)

    def open(self):
        return [c for c in self.conns if c.closed_at is None]

    def shutdown(self):
        for c in self.open():
            c.sock.close()
        self.sel.close()


def run_window(pump, attack_seconds, setup_done, tick=None, finished=None):
    """Pumps until ATTACK_SECONDS after the last payload byte of any connection once the set-up
    (`setup_done()`) is over, or, when every connection is closed (or `finished()`), one second
    after that; never longer than SEND_CAP + ATTACK_SECONDS. Returns the end time."""
    finished = finished or (lambda: not pump.open())
    start = time.monotonic()
    all_closed_at = None
    while True:
        now = time.monotonic()
        if now - start > SEND_CAP + attack_seconds:
            return now
        done = setup_done()
        if done:
            refs = [c.ref for c in pump.conns]
            last = max(refs) if refs else start
            if now - last >= attack_seconds:
                return now
            if finished():
                all_closed_at = all_closed_at or now
                if now - all_closed_at > 1.0:
                    return now
        pump.poll(0.05)
        if tick:
            tick(time.monotonic())


def close_figures(conns, end, ref=lambda c: c.ref):
    closed = [c.closed_at - ref(c) for c in conns if c.closed_at is not None]
    return {
        "total": len(conns),
        "closed": len(closed),
        "median_s": percentile(closed, 50),
        "max_s": max(closed) if closed else None,
        "open": sum(1 for c in conns if c.closed_at is None),
        "observed_s": min((end - ref(c) for c in conns if c.closed_at is None), default=None),
    }


# --- HTTP/2 framing (by hand) ------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
STATIC_STATUS = {0x88: 200, 0x89: 204, 0x8A: 206, 0x8B: 304, 0x8C: 400, 0x8D: 404, 0x8E: 500}


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2), no Huffman."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


class H2:
    """Client side of one HTTP/2 connection: flow control, SETTINGS/PING answers, frame log."""

    def __init__(self, pump, conn):
        self.pump, self.conn = pump, conn
        self.buf = bytearray()
        self.initial_window = 65535  # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = 16384
        self.max_streams = None
        self.conn_window = 65535
        self.settings_at = None  # when the server's first SETTINGS arrived (and was acked)
        self.streams = {}  # id -> dict(window, left, ref, ended_at, why)
        self.pings = 0
        self.goaway = None

    def start(self):
        self.pump.queue(self.conn, PREFACE + frame(SETTINGS, 0, 0), payload=True)

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, flags, stream = struct.unpack(">BBI", self.buf[3:9])
            payload = bytes(self.buf[9 : 9 + length])
            del self.buf[: 9 + length]
            self.on_frame(kind, flags, stream & 0x7FFFFFFF, payload)

    def on_frame(self, kind, flags, stream, payload):
        now = time.monotonic()
        if kind == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                if key == 4:  # INITIAL_WINDOW_SIZE: applies to every open stream
                    for s in self.streams.values():
                        s["window"] += value - self.initial_window
                    self.initial_window = value
                elif key == 5:
                    self.max_frame = value
                elif key == 3:
                    self.max_streams = value
            first = self.settings_at is None
            self.pump.queue(self.conn, frame(SETTINGS, ACK, 0), payload=first)
            self.settings_at = self.settings_at or now
        elif kind == PING and not flags & ACK:
            self.pings += 1
            self.pump.queue(self.conn, frame(PING, ACK, 0, payload))
        elif kind == WINDOW_UPDATE and len(payload) == 4:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if stream == 0:
                self.conn_window += inc
            elif stream in self.streams:
                self.streams[stream]["window"] += inc
        elif kind == RST_STREAM and stream in self.streams:
            code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else -1
            self.end_stream(stream, now, f"RST_STREAM {code}")
        elif kind == HEADERS and stream in self.streams:
            status = STATIC_STATUS.get(payload[0]) if payload else None
            self.streams[stream]["response"] = status or "other"
            if flags & END_STREAM:
                self.end_stream(stream, now, f"response {status or ''}".strip())
        elif kind == DATA:
            if len(payload):  # give the window back so the server's answers are not stuck
                inc = struct.pack(">I", len(payload))
                self.pump.queue(self.conn, frame(WINDOW_UPDATE, 0, 0, inc))
                if stream in self.streams and self.streams[stream]["ended_at"] is None:
                    self.pump.queue(self.conn, frame(WINDOW_UPDATE, 0, stream, inc))
            if flags & END_STREAM and stream in self.streams:
                self.end_stream(stream, now, "response")
        elif kind == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (now, last & 0x7FFFFFFF, code)
            for sid in self.streams:
                if sid > (last & 0x7FFFFFFF):
                    self.end_stream(sid, now, "GOAWAY")

    def end_stream(self, sid, now, why):
        s = self.streams[sid]
        if s["ended_at"] is None:
            s["ended_at"], s["why"] = now, why

    def on_close(self):
        for sid in self.streams:
            self.end_stream(sid, self.conn.closed_at, "connection closed")

    def open_stream(self, sid, headers, body_len):
        block = b"".join(hpack_literal(k, v) for k, v in headers)
        s = self.streams[sid] = {
            "window": self.initial_window, "left": body_len, "ref": time.monotonic(),
            "ended_at": None, "why": None, "sent": 0,
        }
        self.pump.queue(self.conn, frame(HEADERS, END_HEADERS, sid, block),
                        payload=lambda now: s.__setitem__("ref", now))

    def send_data(self, filler, budget):
        """Queues DATA frames round robin as far as flow control allows, at most `budget`
        bytes now (the caller keeps the output queue short). Never sets END_STREAM."""
        size = min(self.max_frame, 16384)
        queued = 0
        progress = True
        while progress and queued < budget and self.conn_window > 0:
            progress = False
            for sid, s in self.streams.items():
                if s["ended_at"] is not None or s["left"] <= 0 or s["window"] <= 0:
                    continue
                n = min(size, s["left"], s["window"], self.conn_window)
                if n <= 0:
                    break
                s["left"] -= n
                s["window"] -= n
                s["sent"] += n
                self.conn_window -= n
                self.pump.queue(self.conn, frame(DATA, 0, sid, filler[:n]),
                                payload=lambda now, s=s: s.__setitem__("ref", now))
                queued += n
                progress = True
                if queued >= budget or self.conn_window <= 0:
                    break
        return queued


# --- attacks -----------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.port = args.port
        self.pid = args.pid
        self.ctx_h1 = client_context(alpn=("http/1.1",))
        self.ctx_h2 = client_context(alpn=("h2",))
        self.ctx_none = client_context(alpn=None)
        self.baseline_cpu_rate = 0.0  # server ns of CPU per ns with only the legit client
        self.notes = []

    # helpers

    def open_many(self, pump, count, ctx_for, port, on_open=None, cap=SEND_CAP):
        """Opens up to `count` TLS connections one after another, pumping the open ones in
        between so that closes are seen when they happen. Returns (opened, failures)."""
        failures = collections.Counter()
        start = time.monotonic()
        for i in range(count):
            if time.monotonic() - start > cap:
                failures["not attempted (set-up cap)"] += count - i
                break
            ctx, kind = ctx_for(i)
            try:
                sock = open_tls(ctx, port)
            except (OSError, ssl.SSLError) as err:
                failures[type(err).__name__] += 1
                continue
            conn = Conn(sock, kind)
            pump.add(conn)
            if on_open:
                on_open(conn)
            if i % 16 == 0:
                pump.poll(0)
        return failures

    def server_cpu(self):
        return cpu_ns(self.pid)

    def request_cpu(self, before, after, seconds):
        """Server CPU ms of one request: the increase minus what the legitimate client and the
        idle server cost at the baseline rate over the same time."""
        used = after[0] - before[0]
        return max(0.0, used - self.baseline_cpu_rate * seconds * 1e9) / 1e6, (after[1] - before[1]) / 1e6

    def post_big(self, sock_holder, body, deadline):
        """POSTs `body` to /mutate on a persistent connection (reopened when needed)."""
        if sock_holder[0] is None:
            sock_holder[0] = open_tls(self.ctx_h1, self.port, timeout=10)
        sock = sock_holder[0]
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(post_request("/mutate", body, self.port))
        status, _, kept, length, close = read_response(sock, deadline, keep=4096)
        if close:
            sock.close()
            sock_holder[0] = None
        return status, kept, length

    def review(self, uid, pod):
        return {
            "kind": "AdmissionReview",
            "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "default",
                "operation": "CREATE",
                "userInfo": {"username": "hostile"},
                "object": pod,
                "oldObject": None,
                "dryRun": False,
            },
        }

    def big_requests(self, result, label, body, count, until):
        """POSTs `body` `count` times in a row until `until`; per request: status, response
        size, wall time and server CPU. Adds a note and returns the per-request CPU ms."""
        holder = [None]
        rows = []
        for _ in range(count):
            if time.monotonic() >= until:
                break
            before, t0 = self.server_cpu(), time.monotonic()
            try:
                status, kept, length = self.post_big(holder, body, max(until, t0 + 10))
                outcome = f"{status}"
            except (OSError, HttpError, ValueError) as err:
                status, kept, length, outcome = None, b"", 0, type(err).__name__
                if holder[0] is not None:
                    holder[0].close()
                holder[0] = None
            wall = time.monotonic() - t0
            after = self.server_cpu()
            net_ms, tick_ms = (self.request_cpu(before, after, wall) if None not in (*before, *after)
                               else (None, None))
            rows.append((outcome, length, wall, net_ms, tick_ms, kept))
        if holder[0] is not None:
            holder[0].close()
        statuses = collections.Counter(r[0] for r in rows)
        sizes = sorted({r[1] for r in rows})
        cpus = [r[3] for r in rows if r[3] is not None]
        walls = [r[2] for r in rows]
        size_text = ", ".join(f"{s:,}" for s in sizes[:3]) + (" ..." if len(sizes) > 3 else "")
        note = (
            f"{label}: {len(rows)}/{count} sent, {len(body):,}-byte body; status "
            + ", ".join(f"{k} x{v}" for k, v in statuses.items())
            + f"; response {size_text} bytes"
        )
        if rows:
            note += (
                f"; wall median {percentile(walls, 50) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms"
            )
        if cpus:
            note += (
                f"; server CPU/request median {percentile(cpus, 50):.1f} ms, max {max(cpus):.1f} ms"
                f" (utime+stime ticks: {sum(r[4] for r in rows if r[4] is not None):.0f} ms in all)"
            )
        result["notes"].append(note)
        if rows and rows[0][5]:
            result["notes"].append("   first answer: " + describe_answer(rows[0][5]))
        return cpus

    # a. amplification

    def attack_a(self):
        result = {"notes": []}
        cpus = []
        start = time.monotonic()
        half = self.args.attack_seconds / 2
        for field, until in (("containers", start + half), ("initContainers", start + 2 * half)):
            spec = {"serviceAccountName": "app"}
            if field == "initContainers":
                spec["containers"] = [{"name": "app", "image": "busybox"}]
            spec[field] = []
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "amplify", "namespace": "default"}, "spec": spec}
            shell = json.dumps(self.review("a0000000-0000-0000-0000-000000000001", pod),
                               separators=(",", ":")).encode()
            marker = b'"%s":[]' % field.encode()
            room = MAX_BODY - 1 - len(shell)
            n = (room + 1) // 3  # "{}," per item, no comma after the last
            body = shell.replace(marker, b'"%s":[' % field.encode() + b",".join([b"{}"] * n) + b"]", 1)
            assert len(body) < MAX_BODY
            cpus += self.big_requests(result, f"{field} x {n:,} {{}}", body, 10, until)
        result["cpu_ms"] = percentile(cpus, 50) if cpus else None
        result["cpu_max_ms"] = max(cpus) if cpus else None
        result["cpu_target"] = False  # no CPU target for a: shown for comparison with g
        return result

    # b. stalled HTTP/1.1 bodies

    def attack_b(self, conns=100):
        pump = Pump()
        body = b" " * (MAX_BODY - 1)
        head = (f"POST /mutate HTTP/1.1\r\nHost: localhost:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {MAX_BODY}\r\n\r\n").encode()

        def on_open(conn):
            pump.queue(conn, head, payload=True)
            pump.queue(conn, body, payload=True)

        failures = self.open_many(pump, conns, lambda i: (self.ctx_h1, "h1"), self.port, on_open)
        end = run_window(pump, self.args.attack_seconds,
                         lambda: all(not c.out or c.closed_at for c in pump.conns))
        return self.conn_result(pump, conns, failures, end, extra=self.h1_answers(pump))

    def h1_answers(self, pump):
        answers = collections.Counter(
            c.head.split(b"\r\n")[0].decode("latin-1", "replace")[:24] for c in pump.conns if c.received
        )
        unsent = sum(1 for c in pump.conns if c.out_bytes)
        notes = []
        if answers:
            notes.append("answers: " + ", ".join(f"{k!r} x{v}" for k, v in answers.items()))
        if unsent:
            notes.append(f"{unsent} connections could not send all their bytes")
        return notes

    def conn_result(self, pump, wanted, failures, end, extra=(), ref=lambda c: c.ref):
        figures = close_figures(pump.conns, end, ref)
        notes = list(extra)
        if len(pump.conns) < wanted:
            notes.append(f"opened {len(pump.conns)} of {wanted}: " +
                         ", ".join(f"{k} x{v}" for k, v in failures.items()))
        why = collections.Counter(c.why for c in pump.conns if c.closed_at is not None)
        if why:
            notes.append("closes seen as: " + ", ".join(f"{k} x{v}" for k, v in why.items()))
        if figures["open"]:
            notes.append(f"still-open connections were watched for at least {figures['observed_s']:.1f} s"
                         " after their last byte")
        pump.shutdown()
        return {"conns": figures, "notes": notes}

    # c. stalled HTTP/2 bodies

    def attack_c(self, streams=100):
        pump = Pump()
        result = {"notes": []}
        try:
            sock = open_tls(self.ctx_h2, self.port)
        except (OSError, ssl.SSLError) as err:
            result["notes"].append(f"cannot connect: {err}")
            result["conns"] = close_figures([], time.monotonic())
            return result
        if sock.selected_alpn_protocol() != "h2":
            result["notes"].append(f"ALPN gave {sock.selected_alpn_protocol()!r}, not h2")
        conn = Conn(sock, "h2")
        h2 = conn.h2 = H2(pump, conn)
        pump.add(conn)
        h2.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while h2.settings_at is None and conn.closed_at is None and time.monotonic() < deadline:
            pump.poll(0.05)
        limit = streams if h2.max_streams is None else min(streams, h2.max_streams)
        headers = [(":method", "POST"), (":scheme", "https"), (":path", "/mutate"),
                   (":authority", f"localhost:{self.port}"), ("content-type", "application/json"),
                   ("content-length", str(MAX_BODY))]
        for k in range(limit):
            h2.open_stream(1 + 2 * k, headers, MAX_BODY - 1)
        filler = memoryview(b" " * 16384)

        def tick(now):
            if conn.closed_at is None and conn.out_bytes < 1 * MiB:  # keep the queue short
                h2.send_data(filler, 1 * MiB)

        def setup_done():
            pending = any(s["left"] > 0 and s["window"] > 0 and s["ended_at"] is None
                          for s in h2.streams.values()) and h2.conn_window > 0
            return conn.closed_at is not None or not (pending or conn.out)

        end = run_window(pump, self.args.attack_seconds, setup_done, tick,
                         finished=lambda: all(s["ended_at"] for s in h2.streams.values()))
        # Per stream: from the stream's last DATA byte (its HEADERS if none) to its end (reset,
        # answer, GOAWAY or connection closed).
        last_byte = conn.ref
        streams = list(h2.streams.values())
        ended = [s["ended_at"] - s["ref"] for s in streams if s["ended_at"] is not None]
        sent = sum(s["sent"] for s in streams)
        result["conns"] = {
            "total": len(streams), "closed": len(ended),
            "median_s": percentile(ended, 50), "max_s": max(ended) if ended else None,
            "open": sum(1 for s in streams if s["ended_at"] is None),
            "observed_s": min((end - s["ref"] for s in streams if s["ended_at"] is None), default=None),
        }
        why = collections.Counter(s["why"] for s in h2.streams.values() if s["why"])
        result["notes"].append(
            f"{len(h2.streams)} streams opened (server SETTINGS_MAX_CONCURRENT_STREAMS "
            f"{h2.max_streams if h2.max_streams is not None else 'not sent'}, initial window "
            f"{h2.initial_window}), {sent / MiB:.1f} MiB of DATA sent of "
            f"{len(h2.streams) * (MAX_BODY - 1) / MiB:.1f} MiB, {h2.pings} PINGs answered"
        )
        if why:
            result["notes"].append("streams ended by: " + ", ".join(f"{k} x{v}" for k, v in why.items()))
        if h2.goaway:
            result["notes"].append(f"GOAWAY (error {h2.goaway[2]}) {h2.goaway[0] - last_byte:.1f} s after the last DATA")
        result["notes"].append(
            "connection " + (f"closed {conn.closed_at - last_byte:.1f} s after the last DATA ({conn.why})"
                             if conn.closed_at else f"still open {end - last_byte:.1f} s after the last DATA")
        )
        pump.shutdown()
        return result

    # d / h. idle TLS

    def attack_idle_tls(self, port, conns=2000):
        pump = Pump()

        def ctx_for(i):
            return [(self.ctx_h1, "http/1.1"), (self.ctx_h1, "http/1.1"),
                    (self.ctx_h2, "h2"), (self.ctx_none, "no ALPN")][i % 4]

        failures = self.open_many(pump, conns, ctx_for, port)
        end = run_window(pump, self.args.attack_seconds, lambda: True)
        kinds = collections.OrderedDict()
        for c in pump.conns:
            k = kinds.setdefault(c.kind, [0, 0])
            k[0] += c.closed_at is not None
            k[1] += 1
        extra = ["closed by ALPN: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in kinds.items())]
        return self.conn_result(pump, conns, failures, end, extra=extra)

    def attack_d(self):
        return self.attack_idle_tls(self.port)

    def attack_h(self):
        return self.attack_idle_tls(self.args.discovery_port)

    # e. slow body

    def attack_e(self, conns=20, length=100_000):
        pump = Pump()
        head = (f"POST /mutate HTTP/1.1\r\nHost: localhost:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()

        def on_open(conn):
            pump.queue(conn, head, payload=True)

        failures = self.open_many(pump, conns, lambda i: (self.ctx_h1, "h1"), self.port, on_open)
        next_byte = {"at": time.monotonic() + 1.0, "sent": 0}

        def tick(now):
            if now >= next_byte["at"]:
                next_byte["at"] += 1.0
                next_byte["sent"] += 1
                for c in pump.open():
                    if next_byte["sent"] < length:
                        pump.queue(c, b" ")  # not payload: the close time counts from the headers

        end = run_window(pump, self.args.attack_seconds, lambda: True, tick)
        extra = [f"{next_byte['sent']} body bytes sent per connection, one per second; "
                 "close time counted from the end of the headers"] + self.h1_answers(pump)
        return self.conn_result(pump, conns, failures, end, extra=extra)

    # f. idle HTTP/2

    def attack_f(self, conns=500):
        pump = Pump()

        def on_open(conn):
            conn.h2 = H2(pump, conn)
            conn.h2.start()

        failures = self.open_many(pump, conns, lambda i: (self.ctx_h2, "h2"), self.port, on_open)
        wait_until = time.monotonic() + CONNECT_TIMEOUT
        end = run_window(
            pump, self.args.attack_seconds,
            lambda: time.monotonic() > wait_until or all(
                c.h2.settings_at is not None or c.closed_at is not None for c in pump.conns),
        )
        no_settings = sum(1 for c in pump.conns if c.h2.settings_at is None)
        pings = sum(c.h2.pings for c in pump.conns)
        goaways = sum(1 for c in pump.conns if c.h2.goaway)
        extra = [f"{pings} PINGs answered, {goaways} GOAWAYs received"
                 + (f", {no_settings} connections never got the server's SETTINGS" if no_settings else "")]
        return self.conn_result(pump, conns, failures, end, extra=extra)

    # g. crafted skip / include lists

    def attack_g(self):
        result = {"notes": []}
        n = 30_000
        rng = random.Random(42)
        containers = [{"name": f"c{i}"} for i in range(n)]

        def names(unknown_prefix):
            existing = [f"c{rng.randrange(n)}" for _ in range(25_000)]
            unknown = [f"{unknown_prefix}{i}" for i in range(25_000)]
            mixed = existing + unknown
            rng.shuffle(mixed)
            return ",".join(mixed)

        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "crafted", "namespace": "default", "annotations": {
                "eks.amazonaws.com/skip-containers": names("u"),
                "eks.amazonaws.com/include-containers": names("v"),
            }},
            "spec": {"serviceAccountName": "app", "containers": containers},
        }
        body = json.dumps(self.review("a0000000-0000-0000-0000-000000000007", pod),
                          separators=(",", ":")).encode()
        cpus = self.big_requests(result, f"{n:,} containers, 2 x 50 000 names", body, 3,
                                 time.monotonic() + self.args.attack_seconds)
        result["cpu_ms"] = percentile(cpus, 50) if cpus else None
        result["cpu_max_ms"] = max(cpus) if cpus else None
        return result


ATTACKS = {
    "a": "amplification (1M {} x10, x10)",
    "b": "h1 stalled bodies x100",
    "c": "h2 stalled bodies (100 streams)",
    "d": "idle TLS x2000",
    "e": "slow body 1 B/s x20",
    "f": "idle h2 x500",
    "g": "crafted skip/include x3",
    "h": "discovery: idle TLS x2000",
}


def sanity_check(args):
    """One POST of the fixture must be allowed with a JSONPatch, or the bench means nothing."""
    with open(args.review, "rb") as f:
        body = f.read()
    sock = open_tls(client_context(args.ca), args.port)
    try:
        sock.sendall(post_request("/mutate", body, args.port))
        status, _, kept, _, _ = read_response(sock, time.monotonic() + 10)
    finally:
        sock.close()
    response = json.loads(kept).get("response", {}) if status == 200 else {}
    if response.get("allowed") is not True or not response.get("patch"):
        sys.exit(f"hostile.py: the fixture is not mutated (HTTP {status}): {kept[:300]!r}")
    ops = json.loads(base64.b64decode(response["patch"]))
    log(f"   fixture answered 200, allowed, {len(ops)} JSON-patch ops")


def describe_answer(body):
    """One line about an AdmissionReview answer: allowed, patch ops, warnings (shortened)."""
    try:
        response = json.loads(body)["response"]
    except (ValueError, KeyError, TypeError):
        return repr(body[:160])
    ops = len(json.loads(base64.b64decode(response["patch"]))) if response.get("patch") else 0
    warnings = "; ".join(response.get("warnings") or [])
    if len(warnings) > 200:
        warnings = warnings[:200] + "..."
    return f"allowed={response.get('allowed')}, {ops} patch ops, warnings: {warnings or 'none'}"


def fmt(value, spec="{:.1f}", none="-"):
    return none if value is None else spec.format(value)


def run(args):
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else list(ATTACKS)
    unknown = [x for x in only if x not in ATTACKS]
    if unknown:
        sys.exit(f"hostile.py: unknown attack letters {unknown}; known: {''.join(ATTACKS)}")
    sanity_check(args)
    bench = Bench(args)
    monitor = MonitorClient(args)
    rows = []
    died = False
    try:
        log(f"\n== baseline: legitimate client alone for {args.baseline_seconds:g} s")
        monitor.start("baseline", args.pid)
        c0, t0 = cpu_ns(args.pid)[0], time.monotonic()
        time.sleep(args.baseline_seconds)
        c1, t1 = cpu_ns(args.pid)[0], time.monotonic()
        stats = monitor.end()
        bench.baseline_cpu_rate = (c1 - c0) / ((t1 - t0) * 1e9)
        log(f"   server CPU {bench.baseline_cpu_rate * 1000:.1f} ms/s with the legitimate client")
        rows.append(("baseline (no attack)", stats, {"notes": []}))
        for letter in only:
            name = f"{letter}. {ATTACKS[letter]}"
            pid, target = args.pid, "webhook"
            if letter == "h":
                if not args.discovery_port or not args.discovery_pid:
                    rows.append((name, None, {"notes": ["skipped: the discovery server is not running "
                                                         "(see hostile.sh output)"]}))
                    continue
                pid, target = args.discovery_pid, "discovery"
            log(f"\n== {name}")
            time.sleep(args.pause)
            me0 = os.times()
            monitor.start(name, pid, target)
            started = time.monotonic()
            result = getattr(bench, f"attack_{letter}")()
            stats = monitor.end()
            me1 = os.times()
            result["notes"].append(
                f"window {time.monotonic() - started:.1f} s; the attacking client used "
                f"{me1.user + me1.system - me0.user - me0.system:.1f} s of CPU"
            )
            rows.append((name, stats, result))
            for note in result["notes"]:
                log(f"   {note}")
            log(f"   legit: {stats['count']} requests, p50 {fmt(stats['p50_ms'], '{:.2f}')} ms, "
                f"p99 {fmt(stats['p99_ms'], '{:.2f}')} ms, max {fmt(stats['max_ms'], '{:.0f}')} ms, "
                f"{stats['failures']} failures{' ' + str(stats['reasons']) if stats['reasons'] else ''}; peak RSS {stats['peak_rss_mib']:.1f} MiB")
            if not alive(pid):
                log(f"   THE SERVER (pid {pid}) DIED during this attack")
                died = True
                if pid == args.pid:
                    break
    finally:
        monitor.close()
    print_table(rows, args, died)
    return 3 if died else 0


def verdict(name, stats, result):
    if stats is None:
        return "skipped"
    miss = []
    if stats["peak_rss_mib"] > TARGETS["rss_mib"]:
        # Over the target before this attack began: memory an earlier attack left behind.
        miss.append("rss(left over)" if stats["start_rss_mib"] > TARGETS["rss_mib"] else "rss")
    if stats["failures"] > TARGETS["legit_failures"]:
        miss.append("fail")
    if stats["p99_ms"] is not None and stats["p99_ms"] > TARGETS["legit_p99_ms"]:
        miss.append("p99")
    conns = result.get("conns")
    if conns and conns["total"]:
        if conns["open"] or (conns["max_s"] is not None and conns["max_s"] > TARGETS["close_s"]):
            miss.append("close")
    if (result.get("cpu_target", True) and result.get("cpu_max_ms") is not None
            and result["cpu_max_ms"] > TARGETS["crafted_cpu_ms"]):
        miss.append("cpu")
    return "ok" if not miss else "MISS " + ",".join(miss)


def cpu_cell(result):
    if result.get("cpu_ms") is None:
        return "-"
    return f"{result['cpu_ms']:.1f}/{result['cpu_max_ms']:.1f}"


def print_table(rows, args, died):
    log(f"\n== results (ATTACK_SECONDS={args.attack_seconds:g}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())})")
    header = (f"{'attack':<34} {'RSS at':>7} {'peakRSS':>8} {'p50':>7} {'p99':>8} {'legit':>9} {'closed':>10} "
              f"{'median':>7} {'max':>6} {'still':>6} {'CPU/req':>10}  verdict")
    units = (f"{'':<34} {'start':>7} {'MiB':>8} {'ms':>7} {'ms':>8} {'fail/req':>9} {'/total':>10} "
             f"{'close s':>7} {'s':>6} {'open':>6} {'ms med/max':>10}")
    log(header)
    log(units)
    for name, stats, result in rows:
        if stats is None:
            log(f"{name:<34} {'(skipped)':>8}")
            continue
        conns = result.get("conns")
        closed = f"{conns['closed']}/{conns['total']}" if conns else "-"
        log(
            f"{name:<34} {stats['start_rss_mib']:>7.1f} {stats['peak_rss_mib']:>8.1f} {fmt(stats['p50_ms'], '{:.2f}'):>7} "
            f"{fmt(stats['p99_ms'], '{:.2f}'):>8} {str(stats['failures']) + '/' + str(stats['count']):>9} "
            f"{closed:>10} {fmt(conns and conns['median_s']):>7} {fmt(conns and conns['max_s']):>6} "
            f"{(str(conns['open']) if conns else '-'):>6} {cpu_cell(result):>10}  "
            f"{verdict(name, stats, result)}"
        )
    log(f"targets: peak RSS <= {TARGETS['rss_mib']} MiB, {TARGETS['legit_failures']} legit failures, "
        f"legit p99 <= {TARGETS['legit_p99_ms']} ms, every attacking connection (stream for c) closed "
        f"within {TARGETS['close_s']} s of its last byte and none still open, crafted list (g) <= "
        f"{TARGETS['crafted_cpu_ms']} ms server CPU per request")
    log("RSS at start: the server's VmRSS when the window began (memory an earlier attack left "
        "behind); peakRSS: its VmHWM over the window" + ("" if all(r[1] is None or r[1].get("peak_exact") for r in rows)
        else " (or the 50 ms samples where VmHWM could not be reset)"))
    log("CPU/req: median and largest server CPU per request (a: its 20 requests, no target; g: the 3 "
        "crafted ones, judged on the largest), the baseline rate of the legitimate client subtracted")
    log(f"server (pid {args.pid}) alive after all attacks: {'yes' if alive(args.pid) else 'NO'}"
        + ("" if not died else "  (died during the run)"))
    if args.discovery_pid:
        log(f"discovery server (pid {args.discovery_pid}) alive: {'yes' if alive(args.discovery_pid) else 'NO'}")


# --- stand-in API server for `irsa-webhook discovery` -------------------------------------------------


def apiserver(args):
    import http.server

    issuer = args.issuer
    modulus = bytearray(random.Random(7).randbytes(256))
    modulus[0] |= 0x80
    b64 = lambda b: base64.urlsafe_b64encode(bytes(b)).rstrip(b"=").decode()
    docs = {
        "/.well-known/openid-configuration": json.dumps({
            "issuer": issuer,
            "jwks_uri": f"https://{HOST}:{args.port}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }).encode(),
        "/openid/v1/jwks": json.dumps({"keys": [{
            "use": "sig", "kty": "RSA", "kid": "hostile-bench", "alg": "RS256",
            "n": b64(modulus), "e": "AQAB",
        }]}).encode(),
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = docs.get(self.path.split("?")[0])
            self.send_response(200 if body else 404)
            body = body or b'{"kind":"Status","code":404}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer((HOST, args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"apiserver listening on https://{HOST}:{args.port}", flush=True)
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--ca", required=True)
    r.add_argument("--review", required=True)
    r.add_argument("--attack-seconds", type=float, default=35)
    r.add_argument("--pause", type=float, default=3)
    r.add_argument("--baseline-seconds", type=float, default=5)
    r.add_argument("--only", default="")
    r.add_argument("--discovery-port", type=int)
    r.add_argument("--discovery-pid", type=int)
    m = sub.add_parser("monitor")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--ca", required=True)
    m.add_argument("--review", required=True)
    m.add_argument("--discovery-port", type=int)
    a = sub.add_parser("apiserver")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--cert", required=True)
    a.add_argument("--key", required=True)
    a.add_argument("--issuer", required=True)
    args = parser.parse_args()
    if args.command == "run":
        sys.exit(run(args))
    elif args.command == "monitor":
        Monitor(args).serve()
    else:
        apiserver(args)


if __name__ == "__main__":
    main()
