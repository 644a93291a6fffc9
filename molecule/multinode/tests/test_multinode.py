"""One web host, two app hosts: nginx balances them over TCP, and one going away fails nothing."""

import json
import os
import pathlib
import subprocess
import time

import pytest
import testinfra
import yaml

from webstack_verify import LOAD, http

WEB = "webstack-mn-web"
APPS = ["webstack-mn-app1", "webstack-mn-app2"]
PORT = 8001


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


def site_yml(inventory):
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = {**os.environ, "ANSIBLE_CONFIG": f"{project}/ansible.cfg", "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), f"{project}/site.yml",
                             "-e", f"webstack_project_dir={project}"],
                            capture_output=True, text=True, env=env, cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def upstream_servers(web):
    site = web.file("/etc/nginx/sites-enabled/hello.conf").content_string
    return [line.split()[1] for line in site.splitlines() if line.strip().startswith("server ") and ":" in line]


def test_an_app_host_left_out_of_the_inventory_leaves_the_upstream(web):
    """site.yml with app2 out of the app group: nginx lists app1 alone; back in: both again."""
    full = pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = yaml.safe_load(full.read_text())
    # Molecule writes each group at the top of its inventory file.
    app_group = inventory["app"] if "app" in inventory else inventory["all"]["children"]["app"]
    del app_group["hosts"][APPS[1]]
    # Next to the scenario's inventory, so its group_vars (the apps) still apply.
    shrunk = full.with_name("shrunk.yml")
    shrunk.write_text(yaml.safe_dump(inventory))
    try:
        site_yml(shrunk)
        assert upstream_servers(web) == [f"{private_address(APPS[0])}:{PORT}"]
        assert {json.loads(http(web, "/api/info")["body"])["hostname"] for _ in range(8)} == {APPS[0]}
    finally:
        shrunk.unlink()
        site_yml(full)
    assert upstream_servers(web) == [f"{private_address(name)}:{PORT}" for name in APPS]
