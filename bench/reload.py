#!/usr/bin/env python3
"""make bench, reloads and deploys under load: hey sends a constant rate (half of what wrk
measured the app to carry) through nginx; 10 s in, the action runs, 10 s after it the action runs
again, 10 s later the load stops. Actions: `reload` (systemctl reload, where the unit has one),
`deploy` (playbooks/deploy.yml builds and switches to a new release of the app), and `hard`, the
control: the service and its socket stopped and started, which must lose requests, or the harness
could not see a failure. Writes <out>/<date>-<host>-reload.json and .md after each app (marked
partial until the last); exits 1 when a reload or deploy failed a request or the control failed none."""

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "molecule" / "shared"))
import hey_report  # noqa: E402
import run as bench  # noqa: E402

CLIENTS = 8


def reloadable(host, app):
    answer = bench.run_on(host, ["systemctl", "show", "-p", "CanReload", "--value", f"{app}.service"])
    return answer.stdout.strip() == "yes"


def act(host, app, action, inventory):
    """Run the action; returns how long it took."""
    start = time.monotonic()
    if action == "reload":
        bench.run_on(host, ["systemctl", "reload", f"{app}.service"])
    elif action == "hard":
        units = [f"{app}.service"] + ([f"{app}.socket"] if bench.run_on(
            host, ["systemctl", "cat", f"{app}.socket"], check=False).returncode == 0 else [])
        bench.run_on(host, ["systemctl", "stop", *units])
        time.sleep(1)
        bench.run_on(host, ["systemctl", "start", *reversed(units)])
    else:
        release = f"bench-{int(time.time() * 1000)}"
        done = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), str(HERE.parent / "playbooks" / "deploy.yml"), "--limit", host,
             "-e", f"webstack_deploy_apps={app}", "-e", f"python_app_release_id={release}"],
            capture_output=True, text=True, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
        if done.returncode != 0:
            sys.exit(f"deploy of {app} failed:\n{done.stdout[-3000:]}")
    return round(time.monotonic() - start, 1)


def split(rate):
    """hey's clients and each one's requests per second (a whole number, at least 1) for a total
    near ``rate``: up to CLIENTS clients, fewer for an app that carries only a few requests a second
    (CGI's half of 9.4/s is 5 clients at 1/s, not 8 at 1/s, 85% of what it carries)."""
    clients = min(CLIENTS, max(1, round(rate)))
    return clients, max(1, round(rate / clients))


def under_load(host, target, rate, action, inventory, quiet=10):
    clients, per_client = split(rate)
    load = subprocess.Popen(["docker", "exec", host, "sh", "-c",
                             f"exec hey -z 900s -c {clients} -q {per_client} -t 10 -host {target['host']} "
                             f"{target['url']} > /tmp/webstack-bench-hey.txt 2>&1"])
    time.sleep(quiet)
    took = [act(host, target["app"], action, inventory)]
    time.sleep(quiet)
    took.append(act(host, target["app"], action, inventory))
    time.sleep(quiet)
    bench.run_on(host, ["pkill", "-INT", "-x", "hey"])
    load.wait(timeout=60)
    figures = hey_report.report(bench.run_on(host, ["cat", "/tmp/webstack-bench-hey.txt"]).stdout)
    return {"rate": per_client * clients, "clients": clients, "action_s": took, **figures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=pathlib.Path)
    parser.add_argument("--inventory", type=pathlib.Path, default=HERE / "inventory")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--apps", default="", help="comma-separated app names (default: every unix-socket app, "
                                                   "and the TCP-only ones, but not the +log twins)")
    parser.add_argument("--actions", default="reload,deploy,hard")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    host = plan["host"]
    listed = chosen(bench.targets(plan), args.apps)
    bench.prepare(host)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = []
    result = {"started": started.isoformat(timespec="seconds"), "host": host,
              "settings": {"clients": CLIENTS, "actions": args.actions.split(","), "apps": plan["apps"]}, "runs": runs}
    for t in listed:
        bench.check(host, t)
        capacity = bench.wrk(host, t, CLIENTS, 5, int(plan["cpus"]))
        rate = (capacity["rps"] or capacity["goodput"]) / 2
        for action in args.actions.split(","):
            if action == "reload" and not reloadable(host, t["app"]):
                continue
            figures = under_load(host, t, rate, action, args.inventory)
            entry = {"target": t["name"], "app": t["app"], "action": action, "capacity_rps": capacity["rps"], **figures}
            entry["as_expected"] = entry["failed"] > 0 if action == "hard" else entry["failed"] == 0 and entry["ok"] > 0
            runs.append(entry)
            print(f"{t['name']} {action}: {entry['ok']} ok, {entry['failed']} failed at {entry['rate']}/s "
                  f"(took {entry['action_s']} s)", flush=True)
        # Each app takes minutes (a deploy builds a release twice): a run stopped midway keeps its files.
        bench.write(args.out, started, host, "-reload", {**result, "complete": False},
                    intro(result, partial=True) + [""] + bench.table(COLUMNS, rows(runs)))
    result["complete"] = True
    bench.report(args.out, started, host, "-reload", result, intro(result), COLUMNS, rows(runs),
                 "a reload or deploy failed requests, or the control failed none")


def chosen(targets, apps=""):
    """The targets through nginx of the apps named (comma-separated), or by default each server on a
    unix socket, and on TCP the servers that have no socket."""
    listed = [t for t in targets if t["kind"] == "nginx"]
    if apps:
        return [t for t in listed if t["app"] in apps.split(",")]
    # A +log twin has its server's units and reload: it would only repeat that server's figures.
    listed = [t for t in listed if not t["family"].endswith("+log")]
    families = {t["family"] for t in listed if t["transport"] == "unix"}
    return [t for t in listed if t["transport"] == "unix" or t["family"] not in families]


COLUMNS = ["target", "action", "rate/s", "ok", "failed", "action took (s)"]


def intro(result, partial=False):
    return [f"# Reloads and deploys under load {result['started']} on {result['host']}", "",
            f"hey, up to {CLIENTS} clients at a constant rate (half of wrk's figure at {CLIENTS} connections); the action "
            "at 10 s and again 10 s after it ends. `hard` (service and socket stopped, then started) is the "
            "control: it must fail requests." + (" **Partial: the run did not finish.**" if partial else "")]


def rows(runs):
    return [[r["target"], r["action"], r["rate"], f"{r['ok']:,}", f"{r['failed']:,}",
             ", ".join(map(str, r["action_s"]))] for r in runs]


if __name__ == "__main__":
    main()
