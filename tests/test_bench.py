"""bench/run.py's arithmetic: targets from a plan, which runs count, ratios within a round; which apps
bench/reload.py loads, and that it keeps what it measured when stopped midway."""

import importlib.util
import json

import pytest

from webstack_testlib import ROOT

SPEC = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)
SPEC = importlib.util.spec_from_file_location("bench_reload", ROOT / "bench" / "reload.py")
reload_ = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(reload_)


def app(name, server, listen, keepalive=0, **extra):
    return {"name": name, "server": server, "protocol": "http" if server == "gunicorn" else server,
            "listen": listen, "keepalive": keepalive, "domains": [f"{name}.bench"], "prefix": "/", **extra}


PLAN = {
    "host": "h", "path": "/api/info", "static": "/static/bench-1k.txt", "direct": ["b-sync-tcp"], "cpus": 2,
    "apps": [
        app("b-sync", "gunicorn", "/run/b-sync.sock", gunicorn={"worker_class": "sync"}),
        app("b-sync-tcp", "gunicorn", "127.0.0.1:8101", 16, gunicorn={"worker_class": "sync"}),
        app("b-sync-nokeep", "gunicorn", "127.0.0.1:8102", 0, gunicorn={"worker_class": "sync"}),
        app("b-uwsgi", "uwsgi", "/run/b-uwsgi.sock"),
        app("b-uwsgi-tcp", "uwsgi", "127.0.0.1:8105"),
        app("b-tls", "gunicorn", "/run/b-tls.sock", tls={}),
        app("b-uwsgi-2", "uwsgi", "/run/b-uwsgi-2.sock"),
    ],
}


def run(round_, target, rps, errors=0):
    return {"round": round_, "target": target, "connections": 8, "rps": None if errors else rps,
            "errors": errors, "goodput": rps, "p50_ms": 1.0, "p99_ms": 2.0}


def test_targets_cover_every_transport_and_leave_https_out():
    listed = bench.targets(PLAN)
    assert [t["name"] for t in listed] == [
        "static 1 KB (nginx)", "gunicorn-sync unix", "gunicorn-sync tcp+keepalive", "gunicorn-sync tcp+keepalive direct",
        "gunicorn-sync tcp", "uwsgi unix", "uwsgi tcp", "uwsgi unix (b-uwsgi-2)"]
    assert listed[3]["url"] == "http://127.0.0.1:8101/api/info"
    assert listed[1]["url"] == "http://127.0.0.1:80/api/info" and listed[1]["host"] == "b-sync.bench"


def test_direct_needs_http_on_tcp():
    with pytest.raises(SystemExit, match="must serve HTTP on TCP"):
        bench.targets({**PLAN, "direct": ["b-uwsgi"]})


def test_ratios_are_taken_within_each_round_and_skip_runs_with_errors():
    listed = bench.targets(PLAN)
    figures = {"static 1 KB (nginx)": (10000, 5000), "gunicorn-sync unix": (4000, 1000),
               "gunicorn-sync tcp+keepalive": (3000, 1000), "gunicorn-sync tcp+keepalive direct": (4000, 2000),
               "gunicorn-sync tcp": (2000, 500), "uwsgi unix": (8000, 2000), "uwsgi tcp": (4000, 1000)}
    listed = listed[:-1]
    runs = [run(n, name, pair[n]) for name, pair in figures.items() for n in (0, 1)]
    # Round 1 of uwsgi tcp failed: that round counts for no ratio with it.
    runs[-1] = run(1, "uwsgi tcp", 1000, errors=3)
    ratios = bench.ratios(listed, runs, 2, [8])
    # Not the ratio of medians: 4000/10000 and 1000/5000.
    assert ratios["gunicorn-sync unix ÷ static"]["8"] == {"median": 0.3, "min": 0.2, "max": 0.4, "n": 2}
    assert ratios["gunicorn-sync tcp+keepalive through nginx ÷ direct"]["8"]["median"] == 0.625
    # The shipped gunicorn stack (its unix socket) against the same server loaded directly.
    assert ratios["gunicorn-sync unix through nginx ÷ direct"]["8"]["median"] == 0.75
    assert ratios["gunicorn-sync keep-alive ÷ none"]["8"]["min"] == 1.5
    assert ratios["uwsgi unix ÷ TCP"]["8"] == {"median": 2.0, "min": 2.0, "max": 2.0, "n": 1}
    assert ratios["uwsgi ÷ gunicorn-sync"]["8"]["max"] == 2.0
    summary = bench.summarise(listed, runs, [8])
    assert summary["uwsgi tcp"]["8"]["counted"] == 1 and summary["uwsgi tcp"]["8"]["errors"] == 3
    result = {"started": "2026-11-24T00:00:00+00:00", "host": "h", "machine": {"cpus": 2},
              "versions": {"distribution": "Debian 12", "kernel": "6", "nginx": "1.22.1", "python": "3.11"},
              "settings": {"connections": [8], "rounds": 2, "warmup_s": 5, "duration_s": 10, "threads": 2},
              "summary": summary, "ratios": ratios}
    table = bench.markdown(result)
    assert "| uwsgi tcp | **3 errors** in 1 of 2 rounds, goodput 2,500 |" in table
    assert "| gunicorn-sync unix | 2,500 (1,000–4,000), p99 2.0 ms |" in table


def test_high_concurrencies_load_only_the_named_servers_through_nginx():
    listed = {t["name"]: t for t in bench.targets(PLAN)}
    assert bench.loads(listed["gunicorn-sync unix"], [8, 32], [512], ["gunicorn", "uwsgi"]) == [8, 32, 512]
    assert bench.loads(listed["uwsgi tcp"], [8, 32], [512, 32], ["uwsgi"]) == [8, 32, 512]
    assert bench.loads(listed["gunicorn-sync tcp+keepalive direct"], [8], [512], ["gunicorn"]) == [8]
    assert bench.loads(listed["static 1 KB (nginx)"], [8], [512], ["gunicorn"]) == [8]
    assert bench.loads(listed["gunicorn-sync unix"], [8], [], ["gunicorn"]) == [8]


def test_an_app_that_logs_each_request_itself_is_a_family_of_its_own():
    plan = {**PLAN, "apps": PLAN["apps"][:1] + PLAN["apps"][3:4] + [
        app("b-sync-log", "gunicorn", "/run/b-sync-log.sock", gunicorn={"worker_class": "sync", "access_log": "-"}),
        app("b-sync-nolog", "gunicorn", "/run/b-sync-nolog.sock", gunicorn={"access_log": ""}),
        app("b-uwsgi-log", "uwsgi", "/run/b-uwsgi-log.sock", uwsgi={"log_requests": True})]}
    listed = bench.targets(plan)
    assert [t["name"] for t in listed[1:]] == [
        "gunicorn-sync unix", "uwsgi unix", "gunicorn-sync+log unix", "gunicorn-sync unix (b-sync-nolog)",
        "uwsgi+log unix"]
    runs = [run(0, "static 1 KB (nginx)", 9000), run(0, "gunicorn-sync unix", 3600), run(0, "uwsgi unix", 7200),
            run(0, "gunicorn-sync+log unix", 3000), run(0, "uwsgi+log unix", 6000)]
    ratios = bench.ratios(listed[:4] + listed[5:], runs, 1, [8])
    assert ratios["gunicorn-sync with its own log ÷ without"]["8"]["median"] == 0.833
    assert ratios["uwsgi with its own log ÷ without"]["8"]["median"] == 0.833
    assert ratios["uwsgi ÷ gunicorn-sync"]["8"]["median"] == 2.0
    assert "gunicorn-sync+log ÷ gunicorn-sync" not in ratios, "the same pair as with its own log ÷ without"


def test_the_table_has_a_column_for_the_high_concurrency_and_a_dash_where_it_did_not_run():
    listed = bench.targets({**PLAN, "apps": PLAN["apps"][:1] + PLAN["apps"][3:4]})
    runs = [run(0, t["name"], 1000) for t in listed]
    runs.append({**run(0, "uwsgi unix", 900), "connections": 512})
    settings = {"connections": [8], "high_connections": [512], "high_servers": ["uwsgi"], "rounds": 1,
                "warmup_s": 5, "duration_s": 10, "threads": 2}
    result = {"started": "2026-11-25T00:00:00+00:00", "host": "h", "machine": {"cpus": 2},
              "versions": {"distribution": "Debian 12", "kernel": "6", "nginx": "1.22.1", "python": "3.11"},
              "settings": settings, "summary": bench.summarise(listed, runs, bench.every(settings)),
              "ratios": bench.ratios(listed, runs, 1, [8])}
    table = bench.markdown(result)
    assert "| target | 8 connections | 512 connections |" in table
    assert "| uwsgi unix | 1,000 (1,000–1,000), p99 2.0 ms | 900 (900–900), p99 2.0 ms |" in table
    assert "| gunicorn-sync unix | 1,000 (1,000–1,000), p99 2.0 ms | – |" in table
    assert "| ratio | 8 connections |" in table and "| uwsgi ÷ gunicorn-sync | 1.00 (1.00–1.00) |" in table


def test_a_run_that_answered_nothing_is_no_answer_not_zero_errors():
    entry = {"rounds": 2, "counted": 1, "errors": 0, "rps": {"median": 10.0, "min": 10.0, "max": 10.0},
             "goodput": {"median": 5.0}, "p99_ms": {"median": 1.0}}
    assert bench.cell(entry) == "**no answer** in 1 of 2 rounds, goodput 5"
    assert bench.cell({**entry, "errors": 7}) == "**7 errors** in 1 of 2 rounds, goodput 5"
    assert bench.cell({**entry, "rounds": 0}) == "–"


def test_every_round_loads_every_target_once_and_later_rounds_in_another_order():
    listed = bench.targets(PLAN)
    rounds = [bench.order(listed, n) for n in range(5)]
    assert rounds[0] == listed
    for targets in rounds:
        assert sorted(t["name"] for t in targets) == sorted(t["name"] for t in listed)
    # A target is not always followed by the same one (the first round's neighbours).
    after_static = {r[(r.index(listed[0]) + 1) % len(r)]["name"] for r in rounds}
    assert len(after_static) > 1
    assert bench.order(listed, 3) == bench.order(listed, 3)


def test_reload_loads_each_server_once_on_its_socket_or_else_on_tcp_and_no_log_twin():
    plan = {**PLAN, "apps": PLAN["apps"] + [
        app("b-sync-log", "gunicorn", "/run/b-sync-log.sock", gunicorn={"worker_class": "sync", "access_log": "-"}),
        app("b-wsgi", "mod_wsgi", "127.0.0.1:8111", 16)]}
    assert [t["app"] for t in reload_.chosen(bench.targets(plan))] == ["b-sync", "b-uwsgi", "b-uwsgi-2", "b-wsgi"]
    assert [t["app"] for t in reload_.chosen(bench.targets(plan), "b-sync-log,b-uwsgi-tcp")] == [
        "b-uwsgi-tcp", "b-sync-log"]


@pytest.mark.parametrize("rate, load", [(1136.5, (8, 142)), (4.7, (5, 1)), (0.4, (1, 1)), (12, (8, 2))])
def test_reload_loads_at_about_half_capacity_even_a_slow_app(rate, load):
    """Eight clients at hey's least rate of 1/s each made 8/s: 85% of what CGI carries (9.4/s)."""
    assert reload_.split(rate) == load


def test_reload_writes_its_files_after_each_app_and_marks_them_partial_until_the_end(tmp_path, monkeypatch):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    monkeypatch.setattr(reload_.bench, "prepare", lambda host: None)
    monkeypatch.setattr(reload_.bench, "check", lambda host, target: None)
    monkeypatch.setattr(reload_.bench, "wrk", lambda *a: {"rps": 1000.0, "goodput": 1000.0})
    monkeypatch.setattr(reload_, "reloadable", lambda host, app: True)
    seen = []

    def under_load(host, target, rate, action, inventory):
        if target["app"] == "b-uwsgi":  # the second app: stop the run there
            seen.append(sorted(p.name for p in tmp_path.iterdir() if "reload" in p.name))
            raise KeyboardInterrupt
        return {"rate": 496, "action_s": [0.1, 0.1], "ok": 100, "failed": 5 if action == "hard" else 0}

    monkeypatch.setattr(reload_, "under_load", under_load)
    monkeypatch.setattr("sys.argv", ["reload.py", str(plan_file), "--out", str(tmp_path)])
    with pytest.raises(KeyboardInterrupt):
        reload_.main()
    [json_file] = tmp_path.glob("*-h-reload.json")
    kept = json.loads(json_file.read_text())
    assert kept["complete"] is False
    assert [(r["app"], r["action"]) for r in kept["runs"]] == [
        ("b-sync", "reload"), ("b-sync", "deploy"), ("b-sync", "hard")]
    assert "Partial" in json_file.with_suffix(".md").read_text()
    assert seen and seen[0] == sorted([json_file.name, json_file.with_suffix(".md").name])
