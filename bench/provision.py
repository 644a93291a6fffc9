#!/usr/bin/env python3
"""make bench, provisioning and deploys: a bare container (webstack-bench-provision, the project's
own apps) converged to a serving stack by site.yml, site.yml again (which must change nothing), and
that re-run under Mitogen's strategy (molecule/shared/plugins/strategy), the faster transport the
README offers. Then, in rounds, what a team does every day, each timed on the wall clock with
Ansible's per-task timings (profile_tasks), over docker exec as `make deploy` runs it:
- a code-only deploy (playbooks/deploy.yml, a changed line, the same requirements),
- a deploy with one requirement added (a new venv, the app's pip cache warm),
- a rollback (playbooks/rollback.yml, back to the code-only release, whose venv is kept),
- an idempotent site.yml re-run of what is live.
The container is removed and started again first, so the converge starts from the bare image: apt
and pip download as on a new host. Writes <out>/<date>-<host>.json and .md, and the output of the
converge and re-runs as -first.log, -rerun.log and -rerun-mitogen.log."""

import argparse
import datetime
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402

HOST = "webstack-bench-provision"
# Seconds; issue 33's measures for the daily runs.
TARGETS = {"first": 180, "rerun": 10, "code_deploy": 10, "requirement_deploy": 30, "rollback": 5}
DAILY = [("code_deploy", "code-only deploy (deploy.yml)"),
         ("requirement_deploy", "deploy with one requirement added (deploy.yml)"),
         ("rollback", "rollback (rollback.yml)"),
         ("rerun", "idempotent re-run (site.yml)")]
# One small package with no dependencies, another version each round: each round's requirement
# deploy builds a venv no earlier release had.
REQUIREMENTS = ["six==1.17.0", "six==1.16.0", "six==1.15.0", "six==1.14.0", "six==1.13.0"]
# Mitogen takes over the connection named "docker" (community.docker.docker's short name): a host
# variable from a second inventory (an extra var would reach the delegate_to: localhost tasks too).
MITOGEN_HOST = HERE / "mitogen.yml"
MITOGEN = {"ANSIBLE_STRATEGY_PLUGINS": str(ROOT / "molecule/shared/plugins/strategy"),
           "ANSIBLE_STRATEGY": "mitogen_linear"}
PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
           "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "25", "PROFILE_TASKS_SORT_ORDER": "descending"}


def timed(inventory, name, log=None, extra=(), mitogen=False):
    """Run playbook `name` on HOST, timed; its recap counts and slowest tasks. Fails the bench when
    the playbook fails (the log, or its tail, says why)."""
    start = time.monotonic()
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), str(ROOT / name), "--limit", HOST,
         *(["-i", str(MITOGEN_HOST)] if mitogen else []), *extra],
        capture_output=True, text=True,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", **PROFILE, **(MITOGEN if mitogen else {})})
    seconds = round(time.monotonic() - start, 1)
    if log:
        log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"{name} on {HOST} failed; " + (f"see {log}" if log else (done.stdout + done.stderr)[-4000:]))
    [recap] = re.findall(rf"^{HOST}\s*: (ok=.*)$", done.stdout, re.M)
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap)}
    # profile_tasks' table: "task name ---- 12.34s", slowest first.
    slowest = [{"task": task.strip(), "s": float(s)} for task, s in
               re.findall(r"^(.+?) -+ ([0-9.]+)s$", done.stdout.split("PLAY RECAP", 1)[1], re.M)]
    return {"seconds": seconds, "recap": counts, "slowest": slowest}


def variant(base, label, requirement=None):
    """A copy of the project's apps/ under base/label with one changed line in the sample app (and
    a requirement added): -e webstack_project_dir=<it> deploys it (group_vars/all.yml)."""
    project = base / label
    shutil.copytree(ROOT / "apps", project / "apps", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    with open(project / "apps/hello/hello/pages.py", "a") as handle:
        handle.write(f"# bench variant {label}\n")
    if requirement:
        with open(project / "apps/hello/requirements.txt", "a") as handle:
            handle.write(requirement + "\n")
    return ["-e", f"webstack_project_dir={project}"]


def daily_rounds(inventory, rounds):
    """Each round: code deploy, requirement deploy, rollback (to the code release), re-run of it."""
    runs = {key: [] for key, _ in DAILY}
    with tempfile.TemporaryDirectory(prefix="webstack-bench-") as tmp:
        base = pathlib.Path(tmp)
        for n in range(rounds):
            code = variant(base, f"code-{n}")
            runs["code_deploy"].append(timed(inventory, "playbooks/deploy.yml", extra=code))
            runs["requirement_deploy"].append(timed(
                inventory, "playbooks/deploy.yml",
                extra=variant(base, f"requirement-{n}", REQUIREMENTS[n % len(REQUIREMENTS)])))
            runs["rollback"].append(timed(inventory, "playbooks/rollback.yml"))
            runs["rerun"].append(timed(inventory, "site.yml", extra=code))
            print(f"round {n + 1}: " + ", ".join(f"{key} {runs[key][-1]['seconds']} s" for key, _ in DAILY),
                  flush=True)
    return runs


def summary(key, runs):
    seconds = [run["seconds"] for run in runs]
    median = statistics.median(seconds)
    # The median round's run, for its task timings.
    middle = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    return {"seconds": seconds, "median_s": median, "target_s": TARGETS[key], "met": median <= TARGETS[key],
            "changed": [run["recap"].get("changed") for run in runs], "tasks_ok": middle["recap"].get("ok"),
            "slowest": middle["slowest"][:8]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", type=pathlib.Path, default=HERE / "inventory")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["docker", "rm", "-f", HOST], capture_output=True, check=False)
    started = datetime.datetime.now(datetime.timezone.utc)
    stem = bench.stem_of(args.out, started, HOST)
    boot = subprocess.run(["ansible-playbook", "-i", str(args.inventory), str(ROOT / "playbooks/sandbox.yml")],
                          capture_output=True, text=True, check=False)
    if boot.returncode != 0:
        sys.exit(boot.stdout[-3000:])
    first = timed(args.inventory, "site.yml", pathlib.Path(stem + "-first.log"))
    rerun = timed(args.inventory, "site.yml", pathlib.Path(stem + "-rerun.log"))
    mitogen = timed(args.inventory, "site.yml", pathlib.Path(stem + "-rerun-mitogen.log"), mitogen=True)
    daily = {key: summary(key, runs) for key, runs in daily_rounds(args.inventory, args.rounds).items()}
    # The re-runs must change nothing; the others must change something.
    daily["rerun"]["met"] = daily["rerun"]["met"] and set(daily["rerun"]["changed"]) == {0}
    result = {"started": started.isoformat(timespec="seconds"), "host": HOST, "targets_s": TARGETS,
              "rounds": args.rounds, "first": first, "rerun_after_first": rerun, "rerun_mitogen": mitogen,
              "daily": daily,
              "met": {"first": first["seconds"] <= TARGETS["first"],
                      **{key: daily[key]["met"] for key, _ in DAILY}}}
    lines = [f"# Provisioning and deploys {result['started']} on {HOST}", "",
             "Over docker exec, as `make demo` and `make deploy` run them (the re-run once under Mitogen too).", ""]
    lines += bench.table(["run", "wall time", "target", "tasks ok / changed"], [
        ["first converge from the bare image", f"{first['seconds']} s", f"under {TARGETS['first']} s",
         f"{first['recap'].get('ok')} / {first['recap'].get('changed')}"],
        *[[label, f"{run['seconds']} s", "nothing changed",
           f"{run['recap'].get('ok')} / {run['recap'].get('changed')}"]
          for label, run in (("re-run after it", rerun), ("re-run under Mitogen", mitogen))]])
    lines += ["", f"Every day, {args.rounds} rounds (median; each round's figure in order):", ""]
    lines += bench.table(["run", "median", "rounds", "target", "met", "tasks ok"], [
        [label, f"{daily[key]['median_s']} s", ", ".join(f"{s} s" for s in daily[key]["seconds"]),
         f"{TARGETS[key]} s", "yes" if daily[key]["met"] else "**no**", daily[key]["tasks_ok"]]
        for key, label in DAILY])
    lines += ["", "Slowest tasks of the first converge (profile_tasks):", ""]
    lines += [f"- {t['s']:.1f} s {t['task']}" for t in first["slowest"][:10]]
    for key, label in DAILY:
        lines += ["", f"Slowest tasks of the median {label}:", ""]
        lines += [f"- {t['s']:.1f} s {t['task']}" for t in daily[key]["slowest"]]
    bench.write(args.out, started, HOST, "", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
