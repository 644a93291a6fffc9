"""The edge limits of every nginx server: request rate per client address (429), loopback exempt,
and hidden paths never served."""

import json

import pytest
from webstack_verify import http

# The limits are checked on hello-sync's server (sync.test).
pytestmark = pytest.mark.apps("hello-sync")

# argv: address, Host, count. Sends count requests back to back over one keep-alive connection
# and prints how many got each status.
BURST = r"""
import collections, http.client, json, sys
address, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection(address, 80, timeout=10)
seen = collections.Counter()
for _ in range(count):
    conn.request("GET", "/healthz", headers={"Host": name})
    response = conn.getresponse()
    response.read()
    seen[response.status] += 1
print(json.dumps(seen))
"""


def burst(host, address, count=400):
    cmd = host.run("python3 -c %s %s %s %s", BURST, address, "sync.test", str(count))
    assert cmd.rc == 0, cmd.stderr
    return {int(status): n for status, n in json.loads(cmd.stdout).items()}


def test_a_client_over_the_rate_gets_429(host):
    # From the host's own network address, not loopback: a client like any other.
    address = [a for a in host.interface("eth0").addresses if "." in a][0]
    seen = burst(host, address)
    assert seen.get(429, 0) > 0, seen
    assert set(seen) == {200, 429}, seen
    assert seen[200] >= 100, "the burst is answered at once"


def test_loopback_is_never_limited(host):
    assert burst(host, "127.0.0.1") == {200: 400}


@pytest.mark.parametrize("path", ["/.git/config", "/.env", "/static/.hidden", "/static/.git/config", "/hello/.x"])
def test_hidden_paths_answer_404(host, path):
    # The files are there in the static directory: only the rule keeps nginx from serving them.
    static = host.file("/srv/hello-sync/current").linked_to + "/src/hello/static"
    host.check_output(f"mkdir -p {static}/.git && echo secret > {static}/.hidden && echo secret > {static}/.git/config")
    try:
        assert http(host, "/static/style.css", host_header="sync.test")["status"] == 200
        response = http(host, path, host_header="sync.test")
    finally:
        host.check_output(f"rm -rf {static}/.hidden {static}/.git")
    assert response["status"] == 404 and "secret" not in response["body"]
    assert response["headers"].get("x-content-type-options") == "nosniff"
