#!/usr/bin/env python3
"""make bench, port exhaustion: nginx and TCP apps on a host with a 1,000-port ephemeral range and
no TIME_WAIT reuse (webstack-bench-ports). Each app is loaded through nginx at high concurrency;
without HTTP keep-alive every request takes a local port that then waits 60 s in TIME_WAIT, the
range runs out and nginx answers 502 ("Cannot assign requested address" in its log). With HTTP
keep-alive, the shipped default on TCP, a few connections carry every request; FastCGI's default
(a connection per request, closed by the app) leaves TIME_WAIT on the app's side. The plan's
"expect" says per app: clean (the default), errors, or report. Writes
<out>/<date>-<host>-exhaustion.json and .md."""

import argparse
import datetime
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run as bench  # noqa: E402

EADDRNOTAVAIL = "Cannot assign requested address"


def sysctl(host, name):
    return bench.run_on(host, ["cat", f"/proc/sys/{name.replace('.', '/')}"]).stdout.split()


def log_count(host):
    out = bench.run_on(host, ["sh", "-c", f"cat /var/log/nginx/*error.log | grep -c '{EADDRNOTAVAIL}' || true"])
    return int(out.stdout.strip() or 0)


def time_wait(host):
    return len(bench.run_on(host, ["ss", "-Htan", "state", "time-wait"]).stdout.splitlines())


def wait_for_ports(host, limit=50, seconds=90):
    """TIME_WAIT of an earlier run would take ports from the next: wait until few are left."""
    deadline = time.monotonic() + seconds
    while time_wait(host) > limit and time.monotonic() < deadline:
        time.sleep(2)
    return time_wait(host)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=bench.HERE / "results")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    host = plan["host"]
    ports = sysctl(host, "net.ipv4.ip_local_port_range")
    reuse = sysctl(host, "net.ipv4.tcp_tw_reuse")[0]
    if int(ports[1]) - int(ports[0]) + 1 > 1000 or reuse != "0":
        sys.exit(f"{host}: needs at most 1,000 local ports and tcp_tw_reuse=0 (has {ports}, {reuse})")
    listed = [t for t in bench.targets(plan) if t["kind"] == "nginx"]
    expect = plan.get("expect", {})
    # Those expected clean first: the runs that exhaust the range leave it in TIME_WAIT for a minute.
    listed.sort(key=lambda t: expect.get(t["app"], "clean") == "errors")
    bench.prepare(host)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = []
    for t in listed:
        bench.check(host, t)
        waiting_before = wait_for_ports(host)
        logged = log_count(host)
        figures = bench.wrk(host, t, args.connections, args.duration, int(plan["cpus"]))
        entry = {"target": t["name"], "app": t["app"], "keepalive": t["keepalive"], "time_wait_before": waiting_before,
                 "time_wait_after": time_wait(host), "eaddrnotavail_logged": log_count(host) - logged, **figures}
        # The shipped defaults must fail nothing; HTTP without keep-alive must run the range out.
        entry["expect"] = expect.get(t["app"], "clean")
        entry["as_expected"] = {"clean": entry["errors"] == 0, "errors": entry["errors"] > 0,
                                "report": True}[entry["expect"]]
        runs.append(entry)
        print(f"{t['name']} keepalive={t['keepalive']}: {entry['requests']} requests, {entry['errors']} errors, "
              f"{entry['eaddrnotavail_logged']} x '{EADDRNOTAVAIL}', TIME_WAIT {entry['time_wait_after']}", flush=True)
    result = {"started": started.isoformat(timespec="seconds"), "host": host,
              "settings": {"ip_local_port_range": ports, "tcp_tw_reuse": reuse, "duration_s": args.duration,
                           "connections": args.connections, "apps": plan["apps"]},
              "runs": runs}
    bench.report(
        args.out, started, host, "-exhaustion", result,
        [f"# Port exhaustion {result['started']} on {host}", "",
         f"Local ports {ports[0]}–{ports[1]}, tcp_tw_reuse {reuse}; wrk with {args.connections} connections for "
         f"{args.duration} s through nginx."],
        ["upstream", "keep-alive", "expected", "requests", "errors (non-2xx and socket)",
         "nginx: cannot assign address", "TIME_WAIT after"],
        [[r["target"], r["keepalive"] or "none", r["expect"], f"{r['requests']:,}", f"{r['errors']:,}",
          f"{r['eaddrnotavail_logged']:,}", f"{r['time_wait_after']:,}"] for r in runs],
        "a default failed requests, or HTTP without keep-alive did not run the range out")


if __name__ == "__main__":
    main()
