"""Helpers for the testinfra tests of every scenario: HTTP through nginx from inside the host.

The bare images have python3 but no curl (and the roles add none), so requests run in the host
with http.client.
"""

import json
import os
import pathlib
import re
import subprocess
import tempfile

FETCH = r"""
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
try:
    conn.request(sys.argv[2], sys.argv[1], body=sys.argv[4] or None,
                 headers=dict(json.loads(sys.argv[3])))
    r = conn.getresponse()
    headers = {}
    for k, v in r.getheaders():  # a repeated header shows as "a, b", as HTTP folds it
        headers[k.lower()] = headers[k.lower()] + ", " + v if k.lower() in headers else v
    print(json.dumps({"status": r.status, "headers": headers,
                      "body": r.read().decode("utf-8", "replace")}))
except (http.client.RemoteDisconnected, ConnectionResetError) as error:
    print(json.dumps({"status": None, "error": type(error).__name__}))
"""

# The load generator the side effects use too: requests through nginx, counting failures.
LOAD = (pathlib.Path(__file__).resolve().parent / "loadgen.py").read_text()


def http(host, path, method="GET", host_header="localhost", body="", headers=None):
    all_headers = {"Host": host_header, **(headers or {})}
    if body:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    cmd = host.run("python3 -c %s %s %s %s %s", FETCH, path, method, json.dumps(all_headers), body)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


# One HTTPS request to nginx on 127.0.0.1 for the name argv[1] (SNI, Host, and the name checked
# against the certificate), trusting only the CA file argv[2]; prints the answer and the serial
# number of the certificate nginx showed.
FETCH_TLS = r"""
import http.client, json, socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
# A self-signed server certificate as its own anchor has no CA extensions: Python 3.13's strict
# X.509 checks (on by default) would refuse it.
context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
class Loopback(http.client.HTTPSConnection):
    def connect(self):
        sock = socket.create_connection(("127.0.0.1", 443), timeout=10)
        self.sock = context.wrap_socket(sock, server_hostname=self.host)
conn = Loopback(sys.argv[1], 443, timeout=10)
conn.request("GET", sys.argv[3])
response = conn.getresponse()
print(json.dumps({"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
                  "body": response.read().decode(), "serial": conn.sock.getpeercert()["serialNumber"]}))
"""


def https(host, name, cafile, path="/"):
    """The answer of nginx over HTTPS for `name`, trusting only `cafile`; fails the test when the
    handshake or the certificate check fails (use host.run with FETCH_TLS to expect that)."""
    cmd = host.run("python3 -c %s %s %s %s", FETCH_TLS, name, cafile, path)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def load_during(host, host_header, command, seconds=6, path="/api/info"):
    """Requests for `path` from 4 clients for `seconds`, running `command` a third of the way in."""
    cmd = host.run("python3 -c %s --host %s --command %s --seconds %s --path %s",
                   LOAD, host_header, command, str(seconds), path)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def release_dir(host, app):
    return host.file(f"/srv/{app}/current").linked_to

# Sends N requests to nginx over persistent client connections and checks every answer.
DRIVE = r"""
import http.client, json, sys
host, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok = 0
conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
for _ in range(count):
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        ok += response.status == 200
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
    except (http.client.HTTPException, OSError):
        conn.close()
print(json.dumps({"ok": ok}))
"""


def drive(host, host_header, count, path="/healthz"):
    """count GETs of path through nginx, back to back over one keep-alive connection; the 200s."""
    cmd = host.run("python3 -c %s %s %s %s", DRIVE, host_header, str(count), path)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)["ok"]


def time_wait(host, port):
    """TCP connections in TIME_WAIT on either side of a local port."""
    out = host.run("ss -Htan state time-wait '( sport = :%s or dport = :%s )'", str(port), str(port)).stdout
    return len([line for line in out.splitlines() if line.strip()])


def exposure(host, unit):
    """systemd-analyze security's overall exposure level of a unit (0 safest, 10 unsafe)."""
    out = host.run("systemd-analyze security %s --no-pager", unit).stdout
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    return float(match.group(1)), out


def run_playbook(playbook, extra_vars=None, limit=None, options=()):
    """Run one of the project's playbooks against the scenario's hosts, as a user would, with
    extra variables on top; returns the finished process (output in .stdout)."""
    project = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    extra = {"webstack_project_dir": str(project), **(extra_vars or {})}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra, handle)
    env = {**os.environ, "ANSIBLE_CONFIG": str(project / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(project / playbook),
               "-e", f"@{handle.name}", *options] + (["--limit", limit] if limit else [])
    try:
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=project)
    finally:
        os.unlink(handle.name)


def process_env(host, app):
    """The environment the app's main process runs with."""
    pid = host.run("systemctl show --property=MainPID --value %s.service", app).stdout.strip()
    raw = host.run("cat /proc/%s/environ", pid).stdout
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def scenario_host(name):
    """Another host of the scenario, for a test that runs once and checks them all."""
    import testinfra
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
