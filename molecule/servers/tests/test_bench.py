"""make bench's smoke run, so the bench cannot rot: bench/plan.yml and bench/run.py against the apps
site.yml deployed on the Debian 13 host (the one that runs every server but mod_python), one round of
one second per target, and a second concurrency for gunicorn and uWSGI."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest
from webstack_verify import run_playbook

PROJECT = pathlib.Path(__file__).resolve().parents[3]
OUT = PROJECT / ".cache" / "bench" / "smoke"


def test_bench_smoke_run_writes_every_figure(host, apps_here):
    if host.system_info.release.split(".")[0] != "13":
        pytest.skip("one host is enough: Debian 13, which runs every server but mod_python")
    name = host.backend.get_hostname()
    shutil.rmtree(OUT, ignore_errors=True)
    plan = run_playbook("bench/plan.yml", {"bench_hosts": name, "bench_plan_dir": str(OUT),
                                           "bench_direct": ["hello-wsgi"]}, limit=name)
    assert plan.returncode == 0, plan.stdout[-3000:]
    python = os.environ.get("WEBSTACK_BENCH_PYTHON", str(PROJECT / ".cache" / "bench-venv" / "bin" / "python"))
    run = subprocess.run([python, str(PROJECT / "bench" / "run.py"),
                          str(OUT / f"plan-{name}.json"), "--out", str(OUT / "results"), "--rounds", "1", "--warmup", "0",
                          "--duration", "1", "--connections", "8",
                          "--high-connections", "16"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    [result_file] = (OUT / "results").glob(f"*-{name}.json")
    result = json.loads(result_file.read_text())
    planned = json.loads((OUT / f"plan-{name}.json").read_text())["apps"]
    assert {app["name"] for app in planned} == set(apps_here), "the plan holds every app of the host"
    plain = {app["name"] for app in planned if app.get("tls") is None}
    assert plain and plain != set(apps_here), "the host runs HTTPS apps and plain ones"
    targets = {t["app"] for t in result["targets"] if t["kind"] == "nginx"}
    assert targets == plain, "every app of the host through nginx, but the HTTPS ones (plain HTTP only redirects)"
    assert [t["kind"] for t in result["targets"]].count("direct") == 1
    high = {t["name"] for t in result["targets"] if t["kind"] == "nginx" and t["server"] in ("gunicorn", "uwsgi")}
    assert high, "the host runs uWSGI"
    assert len(result["runs"]) == len(result["targets"]) + len(high), "8 connections each, and 16 for the high ones"
    assert {r["target"] for r in result["runs"] if r["connections"] == 16} == high
    for entry in result["runs"]:
        assert entry["requests"] > 0 and entry["errors"] == 0 and entry["rps"] > 0, entry
        assert 0 < entry["p50_ms"] <= entry["p99_ms"], entry
    ratios = result["ratios"]
    assert all(ratios[f"{t['name']} ÷ static"]["8"]["n"] == 1 for t in result["targets"] if t["kind"] == "nginx")
    assert ratios["mod_wsgi tcp+keepalive through nginx ÷ direct"]["8"]["median"] > 0
    assert result["versions"]["nginx"].startswith("1.26") and "flup" in result["versions"]["venvs"]["hello-fcgi"]
    stem = str(result_file)[: -len(".json")]
    assert "| static 1 KB (nginx) |" in pathlib.Path(stem + ".md").read_text()
    assert pathlib.Path(stem + ".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
