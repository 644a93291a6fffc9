#!/usr/bin/env python3
"""make bench, provisioning: a bare container (webstack-bench-provision, the project's own apps)
converged to a serving stack by site.yml, then site.yml again (which must change nothing), both
timed on the wall clock with Ansible's per-task timings (profile_tasks), and a third time under
Mitogen's strategy (molecule/shared/plugins/strategy), the faster transport the README offers. The
container is removed and started again first, so the converge starts from the bare image: apt and
pip download as on a new host. Writes <out>/<date>-<host>.json and .md, and each run's output as
-first.log, -rerun.log and -rerun-mitogen.log."""

import argparse
import datetime
import os
import pathlib
import re
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402

HOST = "webstack-bench-provision"
TARGETS = {"first": 180, "rerun": 30}
# Mitogen takes over the connection named "docker" (community.docker.docker's short name): a host
# variable from a second inventory (an extra var would reach the delegate_to: localhost tasks too).
MITOGEN_HOST = HERE / "mitogen.yml"
MITOGEN = {"ANSIBLE_STRATEGY_PLUGINS": str(ROOT / "molecule/shared/plugins/strategy"),
           "ANSIBLE_STRATEGY": "mitogen_linear"}


def playbook(inventory, name, *extra, env=None):
    return subprocess.run(["ansible-playbook", "-i", str(inventory), str(ROOT / name), *extra],
                          capture_output=True, text=True, env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})})


def timed_converge(inventory, log, mitogen=False):
    start = time.monotonic()
    done = playbook(inventory, "site.yml", "--limit", HOST, *(["-i", str(MITOGEN_HOST)] if mitogen else []),
                    env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                         "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "25", "PROFILE_TASKS_SORT_ORDER": "descending",
                         **(MITOGEN if mitogen else {})})
    seconds = round(time.monotonic() - start, 1)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"site.yml on {HOST} failed; see {log}")
    [recap] = re.findall(rf"^{HOST}\s*: (ok=.*)$", done.stdout, re.M)
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap)}
    # profile_tasks' table: "task name ---- 12.34s", slowest first.
    slowest = [{"task": name.strip(), "s": float(s)} for name, s in
               re.findall(r"^(.+?) -+ ([0-9.]+)s$", done.stdout.split("PLAY RECAP", 1)[1], re.M)]
    return {"seconds": seconds, "recap": counts, "slowest": slowest}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", type=pathlib.Path, default=HERE / "inventory")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    args = parser.parse_args()
    subprocess.run(["docker", "rm", "-f", HOST], capture_output=True, check=False)
    started = datetime.datetime.now(datetime.timezone.utc)
    stem = bench.stem_of(args.out, started, HOST)
    boot = playbook(args.inventory, "playbooks/sandbox.yml")
    if boot.returncode != 0:
        sys.exit(boot.stdout[-3000:])
    first = timed_converge(args.inventory, pathlib.Path(stem + "-first.log"))
    rerun = timed_converge(args.inventory, pathlib.Path(stem + "-rerun.log"))
    mitogen = timed_converge(args.inventory, pathlib.Path(stem + "-rerun-mitogen.log"), mitogen=True)
    result = {"started": started.isoformat(timespec="seconds"), "host": HOST, "targets_s": TARGETS,
              "first": first, "rerun": rerun, "rerun_mitogen": mitogen,
              "met": {"first": first["seconds"] <= TARGETS["first"],
                      **{name: run["seconds"] <= TARGETS["rerun"] and run["recap"].get("changed") == 0
                         for name, run in (("rerun", rerun), ("rerun_mitogen", mitogen))}}}
    lines = [f"# Provisioning {result['started']} on {HOST}", ""]
    lines += bench.table(["run", "wall time", "target", "tasks ok / changed"], [
        ["first converge from the bare image", f"{first['seconds']} s", f"under {TARGETS['first']} s",
         f"{first['recap'].get('ok')} / {first['recap'].get('changed')}"],
        *[[label, f"{run['seconds']} s", f"under {TARGETS['rerun']} s, nothing changed",
           f"{run['recap'].get('ok')} / {run['recap'].get('changed')}"]
          for label, run in (("re-run (docker exec per task, as make demo)", rerun),
                             ("re-run under Mitogen", mitogen))]])
    lines += ["", "Slowest tasks of the first converge (profile_tasks):", ""]
    lines += [f"- {t['s']:.1f} s {t['task']}" for t in first["slowest"][:10]]
    bench.write(args.out, started, HOST, "", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
