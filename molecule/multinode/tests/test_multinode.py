"""One web host, two app hosts: nginx balances them over TCP, and one going away fails nothing."""

import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest
import testinfra
import yaml

from webstack_verify import LOAD, http

WEB = "webstack-mn-web"
APPS = ["webstack-mn-app1", "webstack-mn-app2"]
DB = "webstack-mn-db"
PORT = 8001
PG_PORT = 5432

# Exit 0 when a TCP connection to argv[1]:argv[2] opens within 3 s, 1 when it is refused or dropped.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
except OSError as error:
    print(error)
    sys.exit(1)
"""


def can_connect(source, address, port):
    return source.run("python3 -c %s %s %s", CONNECT, address, str(port)).rc == 0


def other(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def private_address(name):
    """The address of the host's default route, as the roles find it."""
    out = other(name).check_output("ip -4 -o route get 1.1.1.1")
    return out.split(" src ", 1)[1].split()[0]


@pytest.fixture
def web(host):
    if host.backend.get_hostname() != WEB:
        pytest.skip("checked from the web host")
    return host


@pytest.fixture
def app_host(host):
    if host.backend.get_hostname() not in APPS:
        pytest.skip("an app host check")
    return host


def test_the_page_answers_through_nginx(web):
    page = http(web, "/")
    assert page["status"] == 200 and "Hello from many hosts" in page["body"]
    # The release (and its static files) is on the app hosts: nginx passes /static/ on to them.
    static = http(web, "/static/style.css")
    assert static["status"] == 200 and "location /static/" not in web.file(
        "/etc/nginx/sites-enabled/hello.conf").content_string


def test_answers_come_from_both_app_hosts(web):
    seen = {json.loads(http(web, "/api/info")["body"])["hostname"] for _ in range(20)}
    assert seen == set(APPS)


def test_the_upstream_lists_every_app_host_on_its_private_address(web):
    site = web.file("/etc/nginx/sites-enabled/hello.conf").content_string
    for name in APPS:
        assert f"server {private_address(name)}:{PORT} max_fails=1 fail_timeout=10s;" in site
    assert "proxy_next_upstream error timeout http_502 http_503;" in site
    assert not web.service("hello").is_running, "no app on the web host"


def test_the_app_listens_on_its_private_address_only(app_host):
    address = private_address(app_host.backend.get_hostname())
    assert app_host.socket(f"tcp://{address}:{PORT}").is_listening
    assert not app_host.socket(f"tcp://0.0.0.0:{PORT}").is_listening
    assert not app_host.socket("unix:///run/hello.sock").is_listening
    assert not app_host.package("nginx").is_installed, "nginx only on web hosts"
    # A boot where the private address comes up late must not leave the socket unbound.
    assert app_host.check_output("systemctl show -p FreeBind --value hello.socket") == "yes"


def test_one_app_host_going_away_fails_no_request(web):
    """Load through nginx while app1's socket and service stop, then start again."""
    web.check_output("printf '%%s' %s > /tmp/mn-loadgen.py", LOAD)
    web.run("rm -f /tmp/mn-load.json /tmp/mn-load.stop")
    web.check_output("setsid -f python3 /tmp/mn-loadgen.py --host localhost --seconds 60 "
                     "--stop-file /tmp/mn-load.stop --out /tmp/mn-load.json >/dev/null 2>&1")
    app1 = other(APPS[0])
    try:
        time.sleep(2)
        app1.check_output("systemctl stop hello.socket hello.service")
        time.sleep(4)
    finally:
        app1.check_output("systemctl start hello.socket")
        time.sleep(2)
        web.run("touch /tmp/mn-load.stop")
    for _ in range(30):
        if web.file("/tmp/mn-load.json").exists:
            break
        time.sleep(1)
    result = json.loads(web.file("/tmp/mn-load.json").content_string)
    assert result["failed"] == 0 and result["ok"] > 100, result
    # nginx rests a failed server for fail_timeout (10s), then tries it again.
    seen = set()
    for _ in range(30):
        seen |= {json.loads(http(web, "/api/info")["body"])["hostname"] for _ in range(4)}
        if seen == set(APPS):
            break
        time.sleep(1)
    assert seen == set(APPS), "app1 answers again once it is back and its rest is over"


def site_yml(inventory, limit):
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = {**os.environ, "ANSIBLE_CONFIG": f"{project}/ansible.cfg", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), f"{project}/site.yml",
                             "-e", f"webstack_project_dir={project}", "--limit", limit],
                            capture_output=True, text=True, env=env, cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def upstream_servers(web):
    site = web.file("/etc/nginx/sites-enabled/hello.conf").content_string
    return [line.split()[1] for line in site.splitlines() if line.strip().startswith("server ") and ":" in line]


def test_an_app_host_left_out_of_the_inventory_leaves_the_upstream(web):
    """site.yml with app2 out of the app group: nginx lists app1 alone; back in: both again.
    Limited to the web host, as a user would run it after editing the inventory: the upstream is
    derived from the inventory's groups, not from which hosts the run touched."""
    full = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = yaml.safe_load(full.read_text())
    # Molecule writes each group at the top of its inventory file.
    app_group = inventory["app"] if "app" in inventory else inventory["all"]["children"]["app"]
    del app_group["hosts"][APPS[1]]
    # Next to the scenario's inventory, so its group_vars (the apps) still apply.
    shrunk = full.with_name("shrunk.yml")
    shrunk.write_text(yaml.safe_dump(inventory))
    try:
        site_yml(shrunk, WEB)
        assert upstream_servers(web) == [f"{private_address(APPS[0])}:{PORT}"]
        assert {json.loads(http(web, "/api/info")["body"])["hostname"] for _ in range(8)} == {APPS[0]}
    finally:
        shrunk.unlink()
        site_yml(full, WEB)
    assert upstream_servers(web) == [f"{private_address(name)}:{PORT}" for name in APPS]


# --- The database tier ----------------------------------------------------------------------------

def post_visit(web):
    answer = http(web, "/api/visits", method="POST")
    assert answer["status"] == 200, answer
    return json.loads(answer["body"])


def test_the_counter_lives_in_postgresql_on_the_db_host(web):
    """POSTs through nginx land on both app hosts and count up one shared counter in one database."""
    answers = [post_visit(web) for _ in range(8)]
    counts = [answer["visits"] for answer in answers]
    assert counts == list(range(counts[0], counts[0] + 8)), counts
    assert {answer["hostname"] for answer in answers} == set(APPS)
    db = other(DB)
    stored = db.check_output("runuser -u postgres -- psql -d hello -tAc 'SELECT count FROM hello_visits'")
    assert int(stored) == counts[-1]


def test_database_url_reaches_the_env_file_only(app_host):
    env = app_host.file("/srv/hello/shared/env")
    assert env.mode == 0o640 and env.user == "root" and env.group == "hello"
    [line] = [line for line in env.content_string.splitlines() if line.startswith("DATABASE_URL=")]
    password = other(DB).check_output("cat /var/lib/webstack/postgresql/hello")
    assert line == f'DATABASE_URL="postgresql://hello:{password}@{private_address(DB)}:{PG_PORT}/hello"'
    assert len(password) == 32
    assert app_host.run("grep -rqF %s /srv/hello/releases", password).rc == 1, "never in a release"


def test_postgresql_takes_the_app_hosts_only(host):
    """pg_hba.conf: scram-sha-256 for the hello role from each app host; nothing from the web host."""
    if host.backend.get_hostname() != DB:
        pytest.skip("a db host check")
    version = host.check_output("ls /etc/postgresql")
    hba = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf").content_string
    for name in APPS:
        assert f"host    hello  hello  {private_address(name)}/32  scram-sha-256" in hba
    assert private_address(WEB) not in hba
    assert host.file("/var/lib/webstack/postgresql/hello").mode == 0o600
    listening = host.check_output("runuser -u postgres -- psql -tAc 'SHOW listen_addresses'")
    assert listening == f"localhost,{private_address(DB)}"
    assert host.socket(f"tcp://{private_address(DB)}:{PG_PORT}").is_listening


def test_the_firewall_lets_each_tier_reach_the_next_only(web):
    db, app1 = other(DB), other(APPS[0])
    assert can_connect(web, private_address(APPS[0]), PORT), "web -> app port"
    assert can_connect(app1, private_address(DB), PG_PORT), "app -> PostgreSQL"
    assert not can_connect(db, private_address(APPS[0]), PORT), "db host -> app port is dropped"
    assert not can_connect(web, private_address(DB), PG_PORT), "web host -> PostgreSQL is dropped"
    table = app1.check_output("nft list table inet webstack")
    assert f"tcp dport {PORT} ip saddr {private_address(WEB)} accept" in table.replace("{ ", "").replace(" }", "")
    assert app1.service("webstack-firewall").is_enabled


def test_two_migrations_at_once_take_turns(app_host):
    """The pre-activation lock: two commands under webstack_pglock.py for the same app run one after
    the other, the second saying it waited."""
    if app_host.backend.get_hostname() != APPS[0]:
        pytest.skip("once")
    run = ("systemd-run --quiet --collect --unit=lock-{0} --property=Type=oneshot "
           "--property=EnvironmentFile=/srv/hello/shared/env --property=StandardError=file:/tmp/lock-{0}.err "
           "--uid=hello --gid=hello /usr/local/lib/webstack/webstack_pglock.py --key hello -- sleep 3")
    started = time.monotonic()
    app_host.check_output(f"rm -f /tmp/lock-*.err; ({run.format('a')}) & (sleep 0.5; {run.format('b')}) & wait")
    elapsed = time.monotonic() - started
    assert elapsed >= 6, f"took {elapsed:.1f}s: the two ran side by side"
    assert "waiting" in app_host.file("/tmp/lock-b.err").content_string


# --- Rolling deploys ----------------------------------------------------------------------------

PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", "."))


def scenario_apps(source):
    """The scenario's app list with another source directory (a new release)."""
    config = yaml.safe_load((pathlib.Path(__file__).resolve().parents[1] / "molecule.yml").read_text())
    apps = config["provisioner"]["inventory"]["group_vars"]["scenario"]["webstack_apps"]
    return [{**app, "source": str(source)} for app in apps]


def sample_copy(tmp_path, name, healthz_500=False):
    source = tmp_path / name
    shutil.copytree(PROJECT / "apps" / "hello", source)
    init = source / "hello" / "__init__.py"
    text = init.read_text() + f"\n# {name}\n"
    if healthz_500:
        text += ("_create_app = create_app\n\n\ndef create_app(config=None):\n    app = _create_app(config)\n"
                 "    app.view_functions['healthz'] = lambda: ({'status': 'broken'}, 500)\n    return app\n")
    init.write_text(text)
    return source


def deploy(tmp_path, source, options=(), result_format="yaml", **settings):
    """deploy.yml with the scenario's apps from source, each app's keys updated with settings;
    options are more ansible-playbook arguments."""
    extra = tmp_path / f"{source.name}.json"
    extra.write_text(json.dumps({"webstack_apps": [{**app, **settings} for app in scenario_apps(source)]}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_CALLBACK_RESULT_FORMAT": result_format}
    return subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                           str(PROJECT / "playbooks" / "deploy.yml"), "-e", f"@{extra}",
                           "-e", f"webstack_project_dir={PROJECT}", *options],
                          capture_output=True, text=True, env=env, cwd=PROJECT)


def live_release(name):
    return other(name).file("/srv/hello/current").linked_to.rsplit("/", 1)[1]


def start_load(web, seconds=300):
    web.check_output("printf '%%s' %s > /tmp/mn-loadgen.py", LOAD)
    web.run("rm -f /tmp/mn-load.json /tmp/mn-load.stop")
    web.check_output(f"setsid -f python3 /tmp/mn-loadgen.py --host localhost --seconds {seconds} "
                     "--stop-file /tmp/mn-load.stop --out /tmp/mn-load.json >/dev/null 2>&1")


def stop_load(web):
    web.run("touch /tmp/mn-load.stop")
    for _ in range(30):
        if web.file("/tmp/mn-load.json").exists:
            break
        time.sleep(1)
    return json.loads(web.file("/tmp/mn-load.json").content_string)


def drained(web):
    """The upstream servers nginx has marked down."""
    site = web.file("/etc/nginx/sites-enabled/hello.conf").content_string
    return [line.split()[1] for line in site.splitlines() if line.strip().startswith("server ")
            and line.rstrip().endswith(" down;")]


def ran_task(stdout, title):
    """The hosts, in order, that ran (ok or changed) every task whose title starts with title."""
    hosts = []
    stdout = re.sub(r"\x1b\[[0-9;]*m", "", stdout)  # colours, when the caller's env forces them
    for block in stdout.split("\nTASK [")[1:]:
        header, _, body = block.partition("\n")
        if header.split(" : ", 1)[-1].startswith(title):
            hosts += [line.split("[", 1)[1].split("]", 1)[0] for line in body.splitlines()
                      if line.startswith(("ok: [", "changed: ["))]
    return hosts


def hostnames(web, count=12):
    return {json.loads(http(web, "/api/info")["body"])["hostname"] for _ in range(count)}


def test_a_rolling_deploy_drains_each_app_host_and_fails_no_request(web, tmp_path):
    """deploy.yml under load: one app host at a time out of the upstream, deployed, back in."""
    before = {name: live_release(name) for name in APPS}
    assert hostnames(web) == set(APPS)
    start_load(web)
    started = time.monotonic()
    try:
        result = deploy(tmp_path, sample_copy(tmp_path, "rolling-next"))
    finally:
        load = stop_load(web)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    after = {name: live_release(name) for name in APPS}
    assert len(set(after.values())) == 1 and set(after.values()).isdisjoint(before.values()), (before, after)
    # Each batch rewrote the web host's site twice (drained, then back), and reloaded it twice.
    for name in APPS:
        # Over ssh Ansible names the delegated host with its address: "-> webstack-mn-web(172.30.77.10)".
        delegated = rf"changed: \[{name} -> {WEB}(\([0-9.]+\))?\] => \(item={WEB}"
        assert len(re.findall(delegated + r": hello\)", result.stdout)) == 2, result.stdout
        assert len(re.findall(delegated + r"\)", result.stdout)) == 2, result.stdout
    assert drained(web) == []
    assert hostnames(web) == set(APPS)
    # The migration ran once for the whole roll (serial batches of one), on the first app host.
    assert ran_task(result.stdout, "Run the pre-activation command") == [APPS[0]], result.stdout[-4000:]
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "app_hosts": len(APPS), "serial": 1, "deploy_seconds": round(seconds, 1),
               "requests_ok": load["ok"], "requests_failed": load["failed"], "errors": load["errors"][:5],
               "releases": {"before": before, "after": after}}
    out = PROJECT / ".cache" / "bench" / f"rolling-{datetime.date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    assert load["failed"] == 0 and load["ok"] > 100, figures


def test_a_host_that_fails_its_gate_stops_the_roll(web, tmp_path):
    """app1's new release answers 500 on /healthz: it goes back, app2 is never touched."""
    before = {name: live_release(name) for name in APPS}
    built_on_app2 = other(APPS[1]).check_output("ls /srv/hello/releases")
    result = deploy(tmp_path, sample_copy(tmp_path, "rolling-broken", healthz_500=True))
    assert result.returncode != 0
    assert f"fatal: [{APPS[0]}]" in result.stdout and "/healthz" in result.stdout, result.stdout[-4000:]
    assert other(APPS[1]).check_output("ls /srv/hello/releases") == built_on_app2, "the roll never reached app2"
    assert {name: live_release(name) for name in APPS} == before, "app1 back on its release, app2 untouched"
    assert drained(web) == [], "app1 put back"
    assert hostnames(web) == set(APPS)


def failure_of(stdout, name):
    """The last failure Ansible printed for host name (a rescued task's failure comes first)."""
    return [line for line in stdout.splitlines() if line.startswith(f"fatal: [{name}]")][-1]


def test_a_failing_migration_runs_once_and_fails_the_whole_batch(web, tmp_path):
    """Both app hosts in one batch (webstack_serial=2): the pre-activation command runs on app1
    only and fails; app2 fails naming app1; neither switches, and the new release is removed."""
    before = {name: live_release(name) for name in APPS}
    kept = {name: other(name).check_output("ls /srv/hello/releases") for name in APPS}
    extra = tmp_path / "serial.json"
    extra.write_text(json.dumps({"webstack_serial": 2}))
    result = deploy(tmp_path, sample_copy(tmp_path, "migration-fails"),
                    pre_activate=["echo migrating the database; echo boom >&2; exit 3"],
                    options=["-e", f"@{extra}"], result_format="json")
    assert result.returncode != 0
    first, second = failure_of(result.stdout, APPS[0]), failure_of(result.stdout, APPS[1])
    for text in ("failed its pre-activation commands", "exit 3", "migrating the database", "boom"):
        assert text in first, first
    assert "was not switched to" in second, second
    assert f"pre-activation commands of hello failed on {APPS[0]}" in second, second
    assert "the release was removed" in first and "the release was removed" in second
    assert {name: live_release(name) for name in APPS} == before
    assert {name: other(name).check_output("ls /srv/hello/releases") for name in APPS} == kept
    assert hostnames(web) == set(APPS)


def test_a_drain_nginx_rejects_changes_nothing(web, tmp_path):
    """nginx -t fails on the web host: the site files go back, nothing reloads, nothing deploys."""
    before = {name: live_release(name) for name in APPS}
    site = web.file("/etc/nginx/sites-enabled/hello.conf").content_string
    web.check_output("echo 'not_a_directive on;' > /etc/nginx/sites-enabled/zz-broken.conf")
    try:
        result = deploy(tmp_path, sample_copy(tmp_path, "rolling-rejected"))
    finally:
        web.check_output("rm -f /etc/nginx/sites-enabled/zz-broken.conf")
    assert result.returncode != 0
    assert "rejected the drained sites" in result.stdout and "not_a_directive" in result.stdout, result.stdout[-4000:]
    assert web.file("/etc/nginx/sites-enabled/hello.conf").content_string == site
    assert web.check_output("ls -a /etc/nginx/sites-enabled | grep -c '~' || true") == "0", "backups dropped"
    assert {name: live_release(name) for name in APPS} == before
    assert hostnames(web) == set(APPS)


def test_every_app_host_runs_with_the_same_generated_secret_key(web):
    """Made once, on the first app host; a session signed by one app host verifies on the other."""
    kept = [other(name).file("/srv/hello/shared/secrets/SECRET_KEY").content_string for name in APPS]
    assert re.fullmatch(r"[A-Za-z0-9]{64}", kept[0]) and kept[0] == kept[1]
    for name in APPS:
        pid = other(name).check_output("systemctl show --property=MainPID --value hello.service")
        environ = other(name).check_output("tr '\\0' '\\n' < /proc/%s/environ", pid)
        assert f"SECRET_KEY={kept[0]}" in environ.splitlines()


def test_a_login_role_the_roles_did_not_make_is_never_an_apps(web, tmp_path):
    """The roles mark the login roles they make; a role made by hand (or postgres) named as an
    app's database user is refused before anything changes, and keeps its password and rights."""
    db = other(DB)
    comment = db.check_output("runuser -u postgres -- psql -tAc \"SELECT shobj_description(oid, 'pg_authid') "
                              "FROM pg_roles WHERE rolname = 'hello'\"")
    assert comment == "pyops.webstack"
    db.check_output("runuser -u postgres -- psql -c \"CREATE ROLE intruder LOGIN PASSWORD 'kept'\"")
    try:
        apps = scenario_apps(PROJECT / "apps" / "hello") + [
            {"name": "ledger", "source": str(PROJECT / "apps" / "hello"), "wsgi_app": "hello:create_app()",
             "domains": ["ledger.test"], "port": 8002, "database": {"user": "intruder"}}]
        extra = tmp_path / "apps.json"
        extra.write_text(json.dumps({"webstack_apps": apps}))
        env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        result = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                                 str(PROJECT / "site.yml"), "-e", f"@{extra}", "-e", f"webstack_project_dir={PROJECT}"],
                                capture_output=True, text=True, env=env, cwd=PROJECT)
        output = " ".join(result.stdout.split())
        assert result.returncode != 0
        assert "the login role intruder exists and was not made by pyops.webstack" in output, result.stdout[-3000:]
        assert not re.search(r"changed=[1-9]", result.stdout), "refused before anything changed"
        assert db.check_output("runuser -u postgres -- psql -tAc \"SELECT count(*) FROM pg_database "
                               "WHERE datname = 'ledger'\"") == "0"
    finally:
        db.run("runuser -u postgres -- psql -c 'DROP ROLE IF EXISTS intruder'")
