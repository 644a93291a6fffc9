"""Requests through nginx from inside a test host, counting every failure; prints JSON.

Runs CLIENTS threads sending GET PATH with Host HOST to 127.0.0.1:80 until SECONDS pass, or
until STOP_FILE exists; each at most RATE requests/s (0: as fast as it can; a paced load leaves
the CPU to the run under test, where unpaced clients on two cores slowed every task 3-fold).
With COMMAND, runs it a third of the way in. A failure is any answer but 200, or any exception (reset, refused, timeout). Usable as `python3 loadgen.py ...` (in a
side effect, run in the background) or as `python3 -c "$(cat loadgen.py)" ...` (testinfra).
"""

import argparse
import http.client
import json
import os
import subprocess
import threading
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--path", default="/api/info")
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--command", default="")
    parser.add_argument("--stop-file", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    lock = threading.Lock()
    results = {"ok": 0, "failed": 0, "errors": [], "worst_ms": 0.0, "releases": {}}
    latencies = []
    stop = time.monotonic() + args.seconds

    def running():
        return time.monotonic() < stop and not (args.stop_file and os.path.exists(args.stop_file))

    def client():
        due = time.monotonic()
        while running():
            if args.rate:
                due += 1 / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
            started = time.monotonic()
            error, release = None, None
            try:
                conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=30)
                conn.request("GET", args.path, headers={"Host": args.host})
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status != 200:
                    error = response.status
                elif body.startswith(b"{"):
                    release = json.loads(body).get("release")
            except Exception as exc:  # every kind of failure counts
                error = repr(exc)
            elapsed = (time.monotonic() - started) * 1000
            with lock:
                latencies.append(elapsed)
                results["worst_ms"] = max(results["worst_ms"], round(elapsed, 1))
                if error is None:
                    results["ok"] += 1
                    if release:
                        results["releases"][release] = results["releases"].get(release, 0) + 1
                else:
                    results["failed"] += 1
                    if len(results["errors"]) < 5:
                        results["errors"].append(error)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    if args.command:
        time.sleep(args.seconds / 3)
        subprocess.run(args.command, shell=True, check=True)
    for thread in threads:
        thread.join()
    latencies.sort()
    for name, share in (("p50_ms", 0.50), ("p99_ms", 0.99)):
        results[name] = round(latencies[min(len(latencies) - 1, int(len(latencies) * share))], 1) if latencies else None
    results["requests"] = results["ok"] + results["failed"]
    text = json.dumps(results)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
