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
  cpu PID                    Prints the process's utime+stime in microseconds (/proc/PID/stat).
  mem PID                    Prints "VmRSS_kB VmHWM_kB" (/proc/PID/status).
"""

import base64
import json
import os
import socket
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
    elif command == "cpu" and len(args) == 1:
        cpu(args[0])
    elif command == "mem" and len(args) == 1:
        mem(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
