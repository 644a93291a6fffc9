"""Behaviour of the converged stack: nginx -> gunicorn (unix socket) -> hello, on each host."""

import json
import os
import re

import pytest
from webstack_verify import exposure, http, load_during, process_env, run_playbook, scenario_host
from webstack_verify import release_dir as shared_release_dir

APP = "hello"
HOSTS = ["webstack-default-debian12", "webstack-default-debian13"]
SOCKET = f"/run/{APP}.sock"
CURRENT = f"/srv/{APP}/current"


def release_dir(host):
    return shared_release_dir(host, APP)


def test_index_through_nginx(host):
    response = http(host, "/")
    assert response["status"] == 200
    assert "<h1>Hello from webstack</h1>" in response["body"]
    assert response["headers"]["server"] == "nginx", "server_tokens must be off"
    assert response["headers"]["x-content-type-options"] == "nosniff"
    assert response["headers"]["x-frame-options"] == "SAMEORIGIN"
    assert response["headers"]["content-security-policy"].startswith("default-src 'self';")


def test_api_info_runs_in_the_release_venv(host):
    response = http(host, "/api/info", headers={"X-Forwarded-For": "198.51.100.7"})
    assert response["status"] == 200
    info = json.loads(response["body"])
    release = release_dir(host)
    assert release.startswith(f"/srv/{APP}/releases/")
    # The release's venv: its own, or the one it shares with releases of the same requirements.
    venv = host.check_output("realpath -e %s", release + "/venv")
    assert venv.startswith(f"/srv/{APP}/venvs/")
    assert host.check_output("realpath -e %s", info["prefix"]) == venv
    assert info["executable"].startswith(info["prefix"] + "/bin/python")
    assert info["release"] == release.rsplit("/", 1)[1]
    assert info["server"] == "gunicorn"
    assert info["worker_class"] == "sync"
    # nginx appends the real peer to X-Forwarded-For; ProxyFix trusts exactly that hop.
    assert info["client"] == "127.0.0.1"
    assert info["host"] == "localhost"


def test_the_app_sees_the_matched_host_never_the_raw_header(host):
    response = http(host, "/api/info", host_header="localhost:evil.example", headers={"X-Forwarded-Host": "evil"})
    assert response["status"] == 200
    assert json.loads(response["body"])["host"] == "localhost"


def test_the_live_release_passed_its_gate(host):
    assert host.file(release_dir(host) + "/.webstack-gate").content_string.strip() == "passed"


def test_routes_post_and_redirect_through_nginx(host):
    assert "Hello, ada!" in http(host, "/hello/ada")["body"]
    echoed = http(host, "/echo", method="POST", body="a=1&b=two")
    assert echoed["status"] == 200
    assert json.loads(echoed["body"]) == {"form": {"a": "1", "b": "two"}}
    redirect = http(host, "/go-home")
    assert redirect["status"] == 302
    assert redirect["headers"]["location"] == "/"


def test_static_file_is_served_by_nginx_not_the_app(host):
    page = http(host, "/")
    assert "x-app-time-ms" in page["headers"], "the app stamps every response it serves"
    static = http(host, "/static/style.css?probe=webstack-static")
    assert static["status"] == 200
    assert "served by nginx straight from the release" in static["body"]
    assert "x-app-time-ms" not in static["headers"]
    assert static["headers"]["cache-control"] == "max-age=604800"
    assert static["headers"]["x-content-type-options"] == "nosniff"
    # nginx logs every request, with the app's time (urt=) only where the app served it.
    http(host, "/api/info?probe=webstack-dynamic")
    lines = host.run("grep -h -F -- probe=webstack- /var/log/nginx/%s.access.log", APP).stdout.splitlines()
    urt = {("dynamic" if "probe=webstack-dynamic" in line else "static"): line.rsplit(" urt=", 1)[1] for line in lines}
    assert urt["static"] == "-", lines
    assert re.fullmatch(r"\d+\.\d+", urt["dynamic"]), lines


def test_only_nginx_logs_each_request(host):
    """gunicorn's access log is off by default: a second log of each request through the journal
    cost a fifth of the throughput and half again the p99 in make bench. Its journal keeps the errors
    and its start."""
    http(host, "/api/info?probe=webstack-not-logged-twice")
    logged = host.run("grep -c -F -- probe=webstack-not-logged-twice /var/log/nginx/%s.access.log", APP)
    assert logged.stdout.strip() != "0"
    journal = host.run("journalctl -u %s.service --no-pager -o cat", APP).stdout
    assert "Booting worker" in journal or "Listening at" in journal, journal[-2000:]
    assert "probe=webstack-not-logged-twice" not in journal


def test_unknown_host_gets_no_answer(host):
    response = http(host, "/", host_header="not-a-site.example")
    assert response["status"] is None


def test_socket_owner_and_mode(host):
    socket = host.file(SOCKET)
    assert socket.is_socket
    assert socket.user == "root"
    assert socket.group == "www-data"
    assert socket.mode == 0o660
    assert host.service(f"{APP}.socket").is_enabled


def test_app_user_cannot_write_its_code(host):
    release = release_dir(host)
    for path in (release, release + "/src", release + "/src/hello", release + "/venv/bin"):
        assert host.file(path).user == "root"
        result = host.run("runuser -u %s -- touch %s/webstack-write-probe", APP, path)
        assert result.rc != 0, f"{APP} could write {path}"
    assert not host.file(release + "/src/webstack-write-probe").exists


def test_env_file_is_private(host):
    env = host.file(f"/srv/{APP}/shared/env")
    assert env.user == "root" and env.group == APP and env.mode == 0o640
    assert 'HELLO_GREETING="Hello from webstack"' in env.content_string


def test_the_generated_secret_key_reaches_the_app_and_nothing_else(host):
    secrets = host.file(f"/srv/{APP}/shared/secrets")
    assert secrets.user == "root" and secrets.mode == 0o700
    kept = host.file(f"/srv/{APP}/shared/secrets/SECRET_KEY")
    assert kept.user == "root" and kept.mode == 0o600
    key = kept.content_string
    assert re.fullmatch(r"[A-Za-z0-9]{64}", key), "64 random letters and digits"
    assert process_env(host, APP)["SECRET_KEY"] == key
    assert host.run("grep -rlF -- %s /srv/%s/releases /etc /var/log", key, APP).stdout == "", "only in shared/"


def test_a_verbose_diff_check_run_shows_no_secret_and_plans_no_change(host):
    """The app tier again on both converged hosts in check mode, as verbose as a user would debug
    it: it plans no change, and the generated keys appear nowhere in the output."""
    if host.backend.get_hostname() != HOSTS[0]:
        pytest.skip("runs once, against every host")
    hosts = [scenario_host(name) for name in HOSTS]
    keys = [h.file(f"/srv/{APP}/shared/secrets/SECRET_KEY").content_string for h in hosts]
    result = run_playbook("playbooks/app.yml", options=["--check", "--diff", "-vv"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.search(r"changed=0\b", result.stdout) and not re.search(r"changed=[1-9]", result.stdout), "idempotent"
    for h, key in zip(hosts, keys):
        assert key not in result.stdout + result.stderr
        assert h.file(f"/srv/{APP}/shared/secrets/SECRET_KEY").content_string == key


def test_a_new_app_in_check_mode_plans_its_first_deploy_quietly_and_changes_nothing(host):
    """A second app, new to both hosts, through the app tier in check mode: the run plans its
    user, directories and release without a warning about its paths (a find of its directories,
    which are not there yet, warned for each), and the hosts have nothing of it afterwards."""
    if host.backend.get_hostname() != HOSTS[0]:
        pytest.skip("runs once, against every host")
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    fresh = {"name": "fresh", "source": f"{project}/apps/hello", "wsgi_app": "hello:create_app()",
             "server": "gunicorn", "domains": ["fresh.test"]}
    result = run_playbook("playbooks/app.yml", {"webstack_apps": [fresh], "webstack_deploy_apps": "fresh"},
                          options=["--check"])
    assert result.returncode == 0, result.stdout[-3000:]
    for name in HOSTS:
        assert re.search(rf"{name}\s*:.*\bchanged=[1-9]", result.stdout), result.stdout[-1500:]
    # (The user module's own check-mode warning, that group fresh is not there yet, stays.)
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "WARNING" in line and "/srv" in line]
    assert warnings == [], warnings
    for h in (scenario_host(name) for name in HOSTS):
        assert not h.file("/srv/fresh").exists and not h.user("fresh").exists


def test_workers_run_as_the_app_user(host):
    cores = int(host.run("nproc").stdout)
    workers = host.process.filter(user=APP, comm="gunicorn")
    # one master and 2 x cores + 1 workers
    assert len(workers) == 2 * cores + 2


def test_service_is_hardened(host):
    level, out = exposure(host, f"{APP}.service")
    assert level <= 2.0, out
    unit = host.file(f"/etc/systemd/system/{APP}.service").content_string
    assert "Type=notify" in unit and "KillMode=mixed" in unit
    timeout_stop = int(re.search(r"TimeoutStopSec=(\d+)", unit).group(1))
    graceful = int(re.search(r"graceful_timeout = (\d+)", host.file(CURRENT + "/gunicorn.conf.py").content_string).group(1))
    assert timeout_stop > graceful
    log = host.run("journalctl -u %s.service --no-pager -o cat", APP).stdout
    assert "Permission denied" not in log, "control socket or other write outside the sandbox"


def test_nginx_runs_in_its_sandbox(host):
    level, out = exposure(host, "nginx.service")
    assert level <= 5.0, out
    dropin = host.file("/etc/systemd/system/nginx.service.d/webstack-hardening.conf")
    assert dropin.exists and dropin.user == "root" and dropin.mode == 0o644
    # No Lua check here: no writable-and-executable memory either.
    show = host.run("systemctl show nginx.service -p MemoryDenyWriteExecute -p ProtectSystem").stdout
    assert "MemoryDenyWriteExecute=yes" in show and "ProtectSystem=strict" in show
    assert not host.package("libnginx-mod-http-lua").is_installed


def test_a_sandbox_nginx_cannot_start_in_is_undone(host):
    """Without the capabilities to open its logs and bind port 80 nginx cannot start: the run
    fails saying so, the previous drop-in is back and nginx serves again (both hosts, one run)."""
    if host.backend.get_hostname() != HOSTS[0]:
        pytest.skip("runs once, against every host")
    hosts = [scenario_host(name) for name in HOSTS]
    dropin = "/etc/systemd/system/nginx.service.d/webstack-hardening.conf"
    before = [h.file(dropin).content_string for h in hosts]
    result = run_playbook("playbooks/web.yml", {"nginx_hardening_overrides": {
        "CapabilityBoundingSet": "CAP_SETUID CAP_SETGID CAP_CHOWN"}})
    assert result.returncode != 0, result.stdout[-2000:]
    output = " ".join(result.stdout.split())  # the callback folds long messages
    assert "nginx did not start in its new sandbox" in output, result.stdout[-3000:]
    for name in HOSTS:  # each host failed once, at that step, after the rescue put things back
        assert re.search(rf"{name}\s*:.*\bfailed=1\b.*\brescued=1\b", result.stdout), result.stdout[-1500:]
    for h, text in zip(hosts, before):
        assert h.file(dropin).content_string == text
        assert h.run("ls -A %s", dropin.rsplit("/", 1)[0]).stdout.split() == ["webstack-hardening.conf"], "no backup"
        assert h.service("nginx").is_running
        assert http(h, "/healthz")["status"] == 200


def test_nginx_config_is_valid_and_owned(host):
    assert host.run("nginx -t").rc == 0
    conf = host.file("/etc/nginx/nginx.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "root", 0o640)
    assert re.search(r"^user www-data;", conf.content_string, re.M)
    assert re.search(r"^\s*server_tokens off;", conf.content_string, re.M)
    assert not host.file("/etc/nginx/sites-enabled/default").exists


@pytest.mark.parametrize("unit", ["nginx.service", f"{APP}.socket", f"{APP}.service"])
def test_units_enabled_and_running(host, unit):
    service = host.service(unit)
    assert service.is_running


def test_restart_under_load_fails_no_request(host):
    """systemd holds the socket while gunicorn restarts: requests queue instead of failing."""
    result = load_during(host, "localhost", f"systemctl restart {APP}.service")
    assert result["ok"] > 20
    assert result["failed"] == 0, result


def test_a_release_is_readable_by_its_app_and_only_its_static_files_by_others(host):
    """The app's user reads its code and venv through its group; www-data (nginx) reads the
    static files and nothing else of the release, not even its bytecode; nobody else reads the
    env file."""
    release = release_dir(host)
    assert host.file(release).group == APP and host.file(release).mode == 0o751
    assert host.file(f"{release}/src").group == APP
    for path in (f"{release}/src/hello/__init__.py", f"{release}/src/hello/__pycache__",
                 f"{release}/webstack_wsgi.py", f"{release}/venv/bin/python", f"/srv/{APP}/shared/env"):
        denied = host.run("runuser -u www-data -- cat %s", path if not path.endswith("__pycache__")
                          else host.run("ls %s/*.pyc", path).stdout.split()[0])
        assert denied.rc != 0 and "Permission denied" in denied.stderr, path
    assert host.run("runuser -u www-data -- cat %s/src/hello/static/style.css", release).rc == 0
    assert host.run("runuser -u %s -- cat %s/src/hello/__init__.py", APP, release).rc == 0
    assert host.run("runuser -u nobody -- cat %s/src/hello/static/style.css", release).rc == 0, "static is public"
    # The venv was built by the app's user and handed to root; nothing in the release or its venv
    # (<root>/venvs, which the release links to) is the app's.
    assert host.run("find %s /srv/%s/venvs ! -user root", release, APP).stdout == ""
    assert host.file(f"/srv/{APP}/venvs").mode == 0o711


def test_names_the_roles_did_not_make_are_refused_before_anything_changes(host):
    """An app named after a person's account, one whose directory exists without the roles'
    mark, and one named after a unit written by hand: site's app tier refuses all three, naming
    each, and changes nothing on either host."""
    if host.backend.get_hostname() != HOSTS[1]:
        pytest.skip("runs on the Debian 13 host (the module reads what Debian 12 has alike)")
    hosts = [host]
    for each in hosts:
        each.run("useradd --create-home --shell /bin/bash --comment Alice alice")
        each.run("mkdir -p /srv/ledger/data && echo keep > /srv/ledger/data/books")
        each.run("printf '[Service]\\nExecStart=/bin/true\\n' > /etc/systemd/system/intruder.service")
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    apps = [{"name": name, "source": f"{project}/apps/hello", "wsgi_app": "hello:create_app()",
             "domains": [f"{name}.test"]} for name in ("alice", "ledger", "intruder")]
    try:
        before = [each.run("getent passwd alice; stat -c %a:%U:%G /srv/ledger; ls /srv; cat "
                           "/etc/systemd/system/intruder.service").stdout for each in hosts]
        result = run_playbook("playbooks/app.yml", {"webstack_apps": apps}, limit=HOSTS[1])
        assert result.returncode != 0
        output = " ".join(result.stdout.split())  # the result's lines are folded
        for problem in ("the account alice exists and was not made by pyops.webstack",
                        "/srv/ledger exists and was not made by pyops.webstack",
                        "the unit /etc/systemd/system/intruder.service exists and was not made by pyops.webstack"):
            assert problem in output, result.stdout[-3000:]
        assert re.search(r"changed=0\b", result.stdout) and not re.search(r"changed=[1-9]", result.stdout)
        after = [each.run("getent passwd alice; stat -c %a:%U:%G /srv/ledger; ls /srv; cat "
                          "/etc/systemd/system/intruder.service").stdout for each in hosts]
        assert after == before
        # Set absent, they are left alone: only what carries the roles' marks is removed.
        gone = run_playbook("playbooks/app.yml", {"webstack_apps": [{**app, "state": "absent"} for app in apps[:2]]},
                            limit=HOSTS[1])
        assert gone.returncode == 0, gone.stdout[-3000:]
        for each in hosts:
            assert each.user("alice").exists and each.file("/srv/ledger/data/books").exists
    finally:
        for each in hosts:
            each.run("userdel -r alice; rm -rf /srv/ledger /etc/systemd/system/intruder.service")
