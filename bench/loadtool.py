#!/usr/bin/env python3
"""Small helpers for bench/load.sh (standard library only).

  start LOG -- CMD...        Starts CMD detached (stdout+stderr to LOG), polls
                             http://127.0.0.1:$METRICS_PORT/readyz every ~0.2 ms until it answers
                             200 (at most $READY_TIMEOUT s), prints "PID MS": the server's pid and
                             the milliseconds from just before the fork to that first 200.
  check-response FILE        Checks that an AdmissionReview response allows the pod and carries a
                             base64 JSONPatch; prints the patch's ops.
  percentiles LOGFILE...     Reads h2load --log-file rows (start µs, status, µs to end of
                             response), prints "count p50_ms p99_ms max_ms non2xx".
  paced PORT BODY CAFILE RATE SECONDS CONNS
                             Open-loop client at an even RATE req/s for SECONDS over CONNS
                             persistent TLS HTTP/1.1 connections, round robin, one thread;
                             prints "count p50_ms p99_ms max_ms
                             non2xx late", latency from the send to the end of the response,
                             late = sends more than 1 ms behind schedule (previous answer slow).
  cpu PID                    Prints the process's utime+stime in microseconds (/proc/PID/stat).
  mem PID                    Prints "VmRSS_kB VmHWM_kB" (/proc/PID/status).
  busy                       Prints the machine's busy CPU time and elapsed CPU time, both in
                             microseconds summed over all CPUs (/proc/stat), for differences.
"""

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time


def start(log, cmd):
    port = int(os.environ["METRICS_PORT"])
    deadline = float(os.environ.get("READY_TIMEOUT", "60"))
    request = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed > deadline:
            proc.kill()
            sys.exit(f"not ready after {deadline:.0f} s")
        if proc.poll() is not None:
            sys.exit(f"the server exited with status {proc.returncode} before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(request)
                head = s.recv(64)
            if head.startswith(b"HTTP/1.1 200"):
                ms = (time.perf_counter() - t0) * 1000
                print(proc.pid, f"{ms:.1f}")
                return
        except OSError:
            pass
        time.sleep(0.0002)


def check_response(path):
    with open(path, "rb") as f:
        body = f.read()
    try:
        review = json.loads(body)
        response = review["response"]
    except (ValueError, KeyError, TypeError):
        sys.exit(f"not an AdmissionReview response: {body[:300]!r}")
    if response.get("allowed") is not True:
        sys.exit(f"response does not allow the pod: {body[:300]!r}")
    if response.get("patchType") != "JSONPatch" or not response.get("patch"):
        sys.exit(f"response has no JSONPatch: {body[:300]!r}")
    ops = json.loads(base64.b64decode(response["patch"]))
    for op in ops:
        print(f"    {op['op']} {op['path']} {json.dumps(op.get('value'), separators=(',', ':'))}")
    for w in response.get("warnings", []):
        print(f"    warning: {w}")


def percentiles(paths):
    times, bad = [], 0
    for path in paths:
        with open(path) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) < 3:
                    continue
                if not cols[1].startswith("2"):
                    bad += 1
                times.append(int(cols[2]))
    if not times:
        sys.exit("no request in the h2load log")
    times.sort()

    def pct(p):  # nearest rank
        return times[max(0, min(len(times) - 1, -(-len(times) * p // 100) - 1))] / 1000

    print(len(times), f"{pct(50):.3f}", f"{pct(99):.3f}", f"{times[-1] / 1000:.3f}", bad)


def paced(port, body_path, cafile, rate, seconds, conns):
    """One thread, non-blocking sockets: no GIL hand-offs between connections."""
    import selectors

    with open(body_path, "rb") as f:
        body = f.read()
    request = (
        b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    sel = selectors.DefaultSelector()
    socks = []
    for k in range(conns):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.setblocking(False)
        socks.append({"sock": sock, "buf": b"", "start": None, "queue": []})
        sel.register(sock, selectors.EVENT_READ, k)
    total = rate * seconds
    rows = []
    t0 = time.perf_counter() + 0.1
    deadline = t0 + seconds + 30
    sent = 0

    def send(c, at):
        c["start"] = time.perf_counter()
        c["late"] = c["start"] - at > 0.001
        c["sock"].setblocking(True)  # 10 KB fits the socket buffer: returns at once
        c["sock"].sendall(request)
        c["sock"].setblocking(False)

    def receive(c):
        while True:
            try:
                data = c["sock"].recv(65536)
            except ssl.SSLWantReadError:
                return
            if not data:
                sys.exit("the server closed a connection")
            c["buf"] += data
            while c["start"] is not None and b"\r\n\r\n" in c["buf"]:
                head, _, rest = c["buf"].partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    break
                rows.append((time.perf_counter() - c["start"], head[9:12], c["late"]))
                c["buf"], c["start"] = rest[length:], None
                if c["queue"]:  # a send fell due while this connection was busy
                    send(c, c["queue"].pop(0))

    while len(rows) < total:
        now = time.perf_counter()
        if now > deadline:
            sys.exit(f"only {len(rows)} of {total} requests completed")
        while sent < total and t0 + sent / rate <= now:
            c = socks[sent % conns]
            at = t0 + sent / rate
            if c["start"] is None:
                send(c, at)
            else:
                c["queue"].append(at)
            sent += 1
        wait = max(0.0, t0 + sent / rate - time.perf_counter()) if sent < total else 0.05
        for key, _ in sel.select(timeout=wait):
            receive(socks[key.data])
    for c in socks:
        c["sock"].close()
    times = sorted(r[0] for r in rows)

    def pct(p):
        return times[max(0, -(-len(times) * p // 100) - 1)] * 1000

    bad = sum(1 for r in rows if not r[1].startswith(b"2"))
    late = sum(1 for r in rows if r[2])
    print(len(times), f"{pct(50):.3f}", f"{pct(99):.3f}", f"{times[-1] * 1000:.3f}", bad, late)


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    print(ticks * 1_000_000 // os.sysconf("SC_CLK_TCK"))


def mem(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = rest.split()[0] if rest.split() else "0"
    print(values["VmRSS"], values["VmHWM"])


def busy():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    tick = 1_000_000 // os.sysconf("SC_CLK_TCK")
    print((total - idle) * tick, total * tick)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "start" and len(args) >= 3 and args[1] == "--":
        start(args[0], args[2:])
    elif command == "check-response" and len(args) == 1:
        check_response(args[0])
    elif command == "percentiles" and args:
        percentiles(args)
    elif command == "paced" and len(args) == 6:
        paced(int(args[0]), args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
    elif command == "cpu" and len(args) == 1:
        cpu(args[0])
    elif command == "busy" and not args:
        busy()
    elif command == "mem" and len(args) == 1:
        mem(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
