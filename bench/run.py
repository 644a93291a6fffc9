#!/usr/bin/env python3
"""make bench: load the apps site.yml deployed on a host, through nginx, in interleaved rounds,
and write <out>/<date>-<host>.json, .md and .png.

The plan (bench/plan.yml) lists the host's apps as site.yml resolved them. The targets are the
1 KB static file nginx serves alone (the ceiling), every app's JSON endpoint through nginx, and
the apps of `direct` on their own port without nginx. wrk runs on the host itself (`docker exec`),
over loopback. Each round runs every target at every concurrency, in its own order (the plan's,
then shuffled), after a warm-up; a figure counts only when its run had no socket error and no
answer outside 2xx/3xx, otherwise the run reports its goodput and errors. Ratios are taken within
a round (absolute numbers drift on a shared machine), then summarised over the rounds (median,
min, max)."""

import argparse
import datetime
import json
import pathlib
import random
import shlex
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
LUA = HERE / "report.lua"
# What the sample app reports as its server, for each value of server:.
REPORTED = {"fastcgi": "flup-fastcgi", "scgi": "flup-scgi"}
VENV_PACKAGES = ("gunicorn", "gevent", "uWSGI", "flup", "tornado", "mod_wsgi", "Flask")
# The server configs the roles render into a release (the others' settings are in the unit).
CONFIG_FILES = "gunicorn.conf.py uwsgi.ini httpd.conf"
DEBIAN_PACKAGES = ("nginx", "apache2-bin", "libapache2-mod-python", "spawn-fcgi", "fcgiwrap", "wrk")
CHECK = r"""
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Host": sys.argv[2]})
with urllib.request.urlopen(request, timeout=30) as response:
    body = response.read()
    kind = response.headers.get("Content-Type", "")
print(json.dumps({"status": response.status, "json": json.loads(body) if "json" in kind else None,
                  "bytes": len(body)}))
"""
VERSIONS = r"""
import importlib.metadata, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def run_on(host, argv, check=True):
    """A command on the bench host (a local container), its output as text."""
    done = subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"on {host}: {shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def prepare(host):
    """wrk's report script onto the host."""
    subprocess.run(["docker", "cp", str(LUA), f"{host}:/root/webstack-report.lua"], check=True)


def stem_of(out, started, host, suffix=""):
    """<out>/<date>-<host><suffix>, the name every file of a bench part starts with."""
    out.mkdir(parents=True, exist_ok=True)
    return str(out / f"{started.strftime('%Y-%m-%d')}-{host}{suffix}")


def write(out, started, host, suffix, result, lines):
    """<out>/<date>-<host><suffix>.json and .md; returns the common stem."""
    stem = stem_of(out, started, host, suffix)
    pathlib.Path(stem + ".json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    pathlib.Path(stem + ".md").write_text("\n".join(lines) + "\n")
    return stem


def table(columns, rows):
    """A markdown table's lines."""
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def report(out, started, host, suffix, result, intro, columns, rows, failure):
    """Write a part's json and its markdown table (intro lines, then one row per run); then fail
    the command with `failure` if a run was not as expected."""
    stem = write(out, started, host, suffix, result, intro + [""] + table(columns, rows))
    print(f"wrote {stem}.json and .md")
    if not all(r["as_expected"] for r in result["runs"]):
        sys.exit(f"unexpected: {failure}")


def family(app):
    """(server, worker model) of an app: what its transports are variants of. An app that logs each
    request itself too (nginx logs them all; gunicorn and uWSGI do not by default) is a family of
    its own, `+log`."""
    gunicorn = app.get("gunicorn", {})
    logs = gunicorn.get("access_log") or app.get("uwsgi", {}).get("log_requests")
    name = f"gunicorn-{gunicorn.get('worker_class', 'sync')}" if app["server"] == "gunicorn" else app["server"]
    return name + ("+log" if logs else "")


def current(app):
    """The app's current release on the host."""
    return f"{app.get('root', '/srv/' + app['name'])}/current"


def through_nginx(app, path):
    """The URL of a path of the app through nginx, on the host itself."""
    return "http://127.0.0.1:80" + app["prefix"].rstrip("/") + path


def transport(app):
    if app["listen"].startswith("/"):
        return "unix"
    return "tcp+keepalive" if app.get("keepalive") else "tcp"


def targets(plan):
    """What to load, in the order of every round. Plain HTTP to nginx: an HTTPS app (whose plain
    HTTP only redirects) is left out."""
    apps = [app for app in plan["apps"] if app.get("tls") is None]
    first = apps[0]
    listed = [{"name": "static 1 KB (nginx)", "kind": "static", "family": "nginx-static", "transport": "",
               "url": through_nginx(first, plan["static"]), "host": first["domains"][0]}]
    for app in apps:
        name = f"{family(app)} {transport(app)}"
        if name in {t["name"] for t in listed}:
            name += f" ({app['name']})"
        listed.append({"name": name, "kind": "nginx", "app": app["name"], "family": family(app),
                       "transport": transport(app), "server": app["server"], "keepalive": app.get("keepalive", 0),
                       "url": through_nginx(app, plan["path"]), "host": app["domains"][0]})
        if app["name"] in plan.get("direct", []):
            if app["protocol"] != "http" or app["listen"].startswith("/"):
                sys.exit(f"direct: {app['name']} must serve HTTP on TCP for wrk to load it without nginx")
            listed.append({"name": f"{name} direct", "via": name, "kind": "direct", "app": app["name"],
                           "family": family(app), "transport": "direct", "server": app["server"],
                           "url": f"http://{app['listen']}{plan['path']}", "host": app["domains"][0]})
    return listed


def order(listed, round_):
    """The targets of a round: the plan's order in the first, then shuffled (seeded by the round,
    so a run can be repeated). In a fixed order the app right after the static file measured 9% and
    16% low (medians of two runs, low in every round) against the same site under other names
    placed later, which skewed its ratios; a `sync` between targets did not remove it. Shuffling
    spreads whatever a target leaves behind over the others."""
    shuffled = list(listed)
    if round_:
        random.Random(round_).shuffle(shuffled)
    return shuffled


def check(host, target):
    """One GET before the load: the target answers 200, and an app reports the server it should."""
    answer = json.loads(run_on(host, ["python3", "-c", CHECK, target["url"], target["host"]]).stdout)
    if answer["status"] != 200:
        sys.exit(f"{target['name']}: {target['url']} answered {answer['status']}")
    if target["kind"] != "static":
        reported = (answer["json"] or {}).get("server")
        expected = REPORTED.get(target["server"], target["server"])
        if reported != expected:
            sys.exit(f"{target['name']}: {target['url']} is served by {reported!r}, not {expected!r}")
        target["worker_class"] = answer["json"].get("worker_class")
    target["bytes"] = answer["bytes"]


def merged(first, more):
    """Concurrencies: `first`, then those of `more` not in it."""
    return first + [c for c in more if c not in first]


def loads(target, connections, high, high_servers):
    """The concurrencies a target runs at: every target at each of `connections`, and the apps of
    `high_servers` through nginx also at each of `high`."""
    return merged(connections, high if target["kind"] == "nginx" and target["server"] in high_servers else [])


def wrk(host, target, connections, seconds, threads):
    argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "-s", "/root/webstack-report.lua", "-H", f"Host: {target['host']}", target["url"]]
    out = run_on(host, argv).stdout
    [line] = [line for line in out.splitlines() if line.startswith("WRK_JSON ")]
    raw = json.loads(line[len("WRK_JSON "):])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    duration = raw["duration_us"] / 1e6
    good = raw["requests"] - raw["status"]
    return {
        "requests": raw["requests"], "duration_s": round(duration, 3),
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
        "non_2xx_3xx": raw["status"], "errors": errors + raw["status"],
        # A figure counts only when the run had no error (and answered at all: a request slower
        # than the run is not counted by wrk); otherwise goodput and the errors.
        "rps": round(raw["requests"] / duration, 1) if errors + raw["status"] == 0 and raw["requests"] else None,
        "goodput": round(good / duration, 1),
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000, "mean_ms": round(raw["mean_us"] / 1000, 3),
    }


def settings(host, plan):
    """Every setting the stack ran with: nginx -T, and each app's units and server config."""
    found = {"nginx -T": run_on(host, ["nginx", "-T"]).stdout, "apps": {}}
    for app in plan["apps"]:
        units = run_on(host, ["systemctl", "cat", f"{app['name']}.service", f"{app['name']}.socket"], check=False)
        configs = run_on(host, ["sh", "-c", f"cd {shlex.quote(current(app))} && tail -n +1 -- {CONFIG_FILES} "
                                "2>/dev/null"], check=False)
        found["apps"][app["name"]] = {"units": units.stdout, "config": configs.stdout}
    return found


def versions(host, plan):
    found = {"kernel": plan["kernel"], "distribution": plan["distribution"]}
    found["nginx"] = run_on(host, ["nginx", "-v"]).stderr.strip().split("/")[-1]
    found["python"] = run_on(host, ["python3", "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
    listing = run_on(host, ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\\n",
                            *DEBIAN_PACKAGES], check=False).stdout
    found["debian"] = {line.split()[0]: line.split()[1] for line in listing.splitlines()
                       if line.split()[-1] == "installed"}
    found["venvs"] = {}
    for app in plan["apps"]:
        python = f"{current(app)}/venv/bin/python"
        found["venvs"][app["name"]] = json.loads(run_on(host, [python, "-c", VERSIONS, *VENV_PACKAGES]).stdout)
    return found


def spread(values):
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values), "n": len(values)}


def ratios(listed, runs, rounds, connections):
    """name -> connections -> spread of the ratio over the rounds where both figures count."""
    by = {(r["round"], r["target"], r["connections"]): r for r in runs}
    pairs = []
    static = listed[0]["name"]
    nginx = [t for t in listed if t["kind"] == "nginx"]
    for t in nginx:
        pairs.append((f"{t['name']} ÷ static", t["name"], static))
    families = {}
    for t in nginx:
        families.setdefault(t["family"], {}).setdefault(t["transport"], t["name"])
    for t in listed:
        if t["kind"] == "direct":
            if t["via"] in {n["name"] for n in nginx}:
                pairs.append((f"{t['via']} through nginx ÷ direct", t["via"], t["name"]))
            # The same server as shipped on its unix socket (wrk cannot load a unix socket itself).
            unix = families.get(t["family"], {}).get("unix")
            if unix:
                pairs.append((f"{unix} through nginx ÷ direct", unix, t["name"]))
    for fam, variants in families.items():
        tcp = variants.get("tcp+keepalive") or variants.get("tcp")
        if "unix" in variants and tcp:
            pairs.append((f"{fam} unix ÷ TCP", variants["unix"], tcp))
        if "tcp+keepalive" in variants and "tcp" in variants:
            pairs.append((f"{fam} keep-alive ÷ none", variants["tcp+keepalive"], variants["tcp"]))
        quiet = families.get(fam.removesuffix("+log"), {}).get("unix")
        if fam.endswith("+log") and "unix" in variants and quiet:
            pairs.append((f"{fam.removesuffix('+log')} with its own log ÷ without", variants["unix"], quiet))
    base = families.get("gunicorn-sync", {}).get("unix")
    if base:
        for fam, variants in families.items():
            mine = variants.get("unix") or variants.get("tcp+keepalive") or variants.get("tcp")
            if fam != "gunicorn-sync":
                pairs.append((f"{fam} ÷ gunicorn-sync", mine, base))
    result = {}
    seen = set()
    # Ratios over the concurrencies every target ran at; a pair already taken under another name
    # (gunicorn-sync+log ÷ gunicorn-sync is "with its own log ÷ without") only once.
    for label, top, bottom in pairs:
        if (top, bottom) in seen:
            continue
        seen.add((top, bottom))
        result[label] = {"of": [top, bottom]}
        for c in connections:
            values = []
            for n in range(rounds):
                a, b = by.get((n, top, c)), by.get((n, bottom, c))
                if a and b and a["rps"] and b["rps"]:
                    values.append(round(a["rps"] / b["rps"], 3))
            result[label][str(c)] = spread(values)
    return result


def summarise(listed, runs, connections):
    summary = {}
    for t in listed:
        summary[t["name"]] = {}
        for c in connections:
            mine = [r for r in runs if r["target"] == t["name"] and r["connections"] == c]
            counted = [r for r in mine if r["rps"] is not None]
            summary[t["name"]][str(c)] = {
                "rps": spread([r["rps"] for r in counted]),
                "p50_ms": spread([r["p50_ms"] for r in counted]),
                "p99_ms": spread([r["p99_ms"] for r in counted]),
                "errors": sum(r["errors"] for r in mine),
                "goodput": spread([r["goodput"] for r in mine]),
                "rounds": len(mine), "counted": len(counted),
            }
    return summary


def every(settings):
    """Every concurrency of a run: the ones all targets ran at, then the high ones."""
    return merged(settings["connections"], settings.get("high_connections", []))


def cell(entry):
    if not entry["rounds"]:
        return "–"
    if entry["rps"] and entry["counted"] == entry["rounds"]:
        rps = entry["rps"]
        return f"{rps['median']:,.0f} ({rps['min']:,.0f}–{rps['max']:,.0f}), p99 {entry['p99_ms']['median']:.1f} ms"
    # A run that answered nothing within its seconds (and so had no timeout either) failed too.
    failed = f"**{entry['errors']} errors**" if entry["errors"] else "**no answer**"
    return f"{failed} in {entry['rounds'] - entry['counted']} of {entry['rounds']} rounds, " \
           f"goodput {entry['goodput']['median']:,.0f}"


def ratio_cell(spread_of):
    if not spread_of:
        return "n/a (errors)"
    return f"{spread_of['median']:.2f} ({spread_of['min']:.2f}–{spread_of['max']:.2f})"


def markdown(result):
    s = result["settings"]
    conns = every(s)
    lines = [f"# Bench {result['started']} on {result['host']}", "",
             f"{result['machine']['cpus']} CPUs, {result['versions']['distribution']}, kernel "
             f"{result['versions']['kernel']}, nginx {result['versions']['nginx']}, Python "
             f"{result['versions']['python']}. {s['rounds']} rounds, {s['warmup_s']} s warm-up and "
             f"{s['duration_s']} s measured per target and concurrency (the warm-up once per target and "
             f"round, at its highest concurrency), wrk with {s['threads']} threads on the host itself. "
             f"Requests per second: median (min–max) over the rounds, and the median p99 latency; a "
             f"run with any error does not count."
             + (f" {', '.join(map(str, s['high_connections']))} connections only for "
                f"{', '.join(s['high_servers'])} (–: not run)." if s.get("high_connections") else ""), ""]
    columns = [f"{c} connections" for c in conns]
    lines += table(["target", *columns], [[name, *(cell(per[str(c)]) for c in conns)]
                                          for name, per in result["summary"].items()])
    lines += ["", "Ratios, taken within each round: median (min–max).", ""]
    columns = [f"{c} connections" for c in s["connections"]]
    lines += table(["ratio", *columns], [[label, *(ratio_cell(per[str(c)]) for c in s["connections"])]
                                         for label, per in result["ratios"].items()])
    return "\n".join(lines) + "\n"


def chart(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conns = every(result["settings"])
    names = list(result["summary"])
    height = 0.8 / len(conns)
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(names) * max(1, len(conns) / 2) + 1.5))
    for i, c in enumerate(conns):
        medians, low, high, ys = [], [], [], []
        for j, name in enumerate(names):
            entry = result["summary"][name][str(c)]
            rps = entry["rps"] if entry["rounds"] and entry["counted"] == entry["rounds"] else None
            ys.append(j + i * height)
            medians.append(rps["median"] if rps else 0)
            low.append(rps["median"] - rps["min"] if rps else 0)
            high.append(rps["max"] - rps["median"] if rps else 0)
        ax.barh(ys, medians, height=height, xerr=[low, high], label=f"{c} connections", capsize=2)
    ax.set_yticks([j + height * (len(conns) - 1) / 2 for j in range(len(names))], names)
    ax.invert_yaxis()
    # Log scale: nginx's static file and CGI are orders of magnitude apart.
    ax.set_xscale("log")
    ax.set_xlabel("requests per second, log scale (median of the rounds, min–max; none where a run had errors)")
    ax.set_title(f"webstack through nginx, {result['host']}, {result['started'][:10]}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=pathlib.Path, nargs="?", help="plan-<host>.json from bench/plan.yml")
    parser.add_argument("--render", type=pathlib.Path, help="a run's json: write its .md and .png again, run nothing")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5, help="seconds before each measured run")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--connections", default="8,32,128")
    parser.add_argument("--high-connections", default="512",
                        help="comma-separated: more concurrencies, for the apps of --high-servers only")
    parser.add_argument("--high-servers", default="gunicorn,uwsgi")
    parser.add_argument("--threads", type=int, default=0, help="wrk threads (default: the host's CPUs)")
    parser.add_argument("--only", default="", help="comma-separated substrings: load only matching targets")
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        # The ratios again, as this run.py defines them.
        result["ratios"] = ratios(result["targets"], result["runs"], result["settings"]["rounds"],
                                  result["settings"]["connections"])
        stem = str(args.render)[: -len(".json")]
        pathlib.Path(stem + ".md").write_text(markdown(result))
        chart(result, stem + ".png")
        print(f"wrote {stem}.md and .png")
        return
    if not args.plan:
        parser.error("a plan is needed (or --render)")
    plan = json.loads(args.plan.read_text())
    host = plan["host"]
    connections = [int(c) for c in args.connections.split(",")]
    high = [int(c) for c in args.high_connections.split(",") if c]
    high_servers = [s for s in args.high_servers.split(",") if s]
    threads = args.threads or int(plan["cpus"])
    listed = targets(plan)
    if args.only:
        wanted = args.only.split(",")
        listed = [listed[0]] + [t for t in listed[1:] if any(w in t["name"] for w in wanted)]
    prepare(host)
    for t in listed:
        check(host, t)
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    runs = []
    total = args.rounds * sum(len(loads(t, connections, high, high_servers)) for t in listed)
    for n in range(args.rounds):
        for t in order(listed, n):
            mine = loads(t, connections, high, high_servers)
            # One warm-up per target and round, at its highest concurrency: every worker, thread
            # and upstream connection the measured runs use is up before the first of them.
            if args.warmup:
                wrk(host, t, max(mine), args.warmup, threads)
            for c in mine:
                figures = wrk(host, t, c, args.duration, threads)
                runs.append({"round": n, "target": t["name"], "connections": c, **figures})
                shown = f"{figures['rps']:,.0f}/s" if figures["rps"] is not None else f"{figures['errors']} errors"
                print(f"[{len(runs)}/{total}] round {n + 1} {t['name']} c={c}: {shown}, "
                      f"p99 {figures['p99_ms']:.1f} ms", flush=True)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": host,
        "machine": {"cpus": plan["cpus"]},
        "versions": versions(host, plan),
        "settings": {"rounds": args.rounds, "warmup_s": args.warmup, "duration_s": args.duration,
                     "connections": connections, "high_connections": high, "high_servers": high_servers,
                     "threads": threads, "path": plan["path"],
                     "static": plan["static"], "apps": plan["apps"], "deployed": settings(host, plan)},
        "targets": listed,
        "runs": runs,
    }
    result["summary"] = summarise(listed, runs, every(result["settings"]))
    result["ratios"] = ratios(listed, runs, args.rounds, connections)
    stem = write(args.out, started, host, "", result, markdown(result).splitlines())
    chart(result, stem + ".png")
    print(f"wrote {stem}.json, .md and .png after {time.monotonic() - clock:.0f} s")


if __name__ == "__main__":
    main()
