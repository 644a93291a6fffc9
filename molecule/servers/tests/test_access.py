"""Edge access checks: a Lua token check and auth_request, each with an allowed and a denied
request, and the app's own access log showing the denied ones never reached it."""

import time
import uuid

import pytest
from webstack_verify import http

SYNC = "sync.test"
# The checks sit in hello-sync's locations; auth_request asks hello-uwsgi.
pytestmark = pytest.mark.apps("hello-sync", "hello-uwsgi")


def journal(host, unit):
    return host.run("journalctl -u %s --no-pager -o cat", unit).stdout


def reached_app(host, unit, allowed_path, denied_paths):
    """Wait for the allowed request in the app's access log, then say which denied ones are there."""
    for _ in range(20):
        log = journal(host, unit)
        if allowed_path in log:
            return [path for path in denied_paths if path in log]
        time.sleep(0.5)
    raise AssertionError(f"{allowed_path} never showed in the access log of {unit}")


def fresh(prefix):
    return f"{prefix}{uuid.uuid4().hex}"


def test_lua_check_admits_only_listed_tokens(host):
    missing = fresh("/api/private/lua/missing-")
    wrong = fresh("/api/private/lua/wrong-")
    allowed = fresh("/api/private/lua/allowed-")
    response = http(host, missing, host_header=SYNC)
    assert response["status"] == 401
    assert response["headers"]["www-authenticate"].startswith("Bearer")
    assert response["headers"]["x-content-type-options"] == "nosniff", "security headers on a denial too"
    assert http(host, wrong, host_header=SYNC, headers={"X-Access-Token": "sync-token-3"})["status"] == 403
    ok = http(host, allowed, host_header=SYNC, headers={"X-Access-Token": "sync-token-2"})
    assert ok["status"] == 200, ok
    assert ok["body"].count(allowed.rsplit("/", 1)[1]) == 1
    assert http(host, "/api/private/lua/x", host_header=SYNC, headers={"X-Access-Token": "sync-token-1"})["status"] == 200
    assert reached_app(host, "hello-sync.service", allowed, [missing, wrong]) == []


def test_auth_request_to_another_app_decides(host):
    missing = fresh("/api/private/auth/missing-")
    wrong = fresh("/api/private/auth/wrong-")
    allowed = fresh("/api/private/auth/allowed-")
    assert http(host, missing, host_header=SYNC)["status"] == 401
    assert http(host, wrong, host_header=SYNC, headers={"Authorization": "Bearer nope"})["status"] == 403
    ok = http(host, allowed, host_header=SYNC, headers={"Authorization": "Bearer uwsgi-token"})
    assert ok["status"] == 200, ok
    assert reached_app(host, "hello-sync.service", allowed, [missing, wrong]) == []


def test_auth_request_to_the_app_itself_under_its_prefix(host):
    assert http(host, "/uwsgi/api/private/x", host_header="apps.test")["status"] == 401
    denied = http(host, "/uwsgi/api/private/x", host_header="apps.test", headers={"Authorization": "Bearer no"})
    assert denied["status"] == 403
    ok = http(host, "/uwsgi/api/private/x", host_header="apps.test", headers={"Authorization": "Bearer uwsgi-token"})
    assert ok["status"] == 200 and '"private":"x"' in ok["body"].replace(" ", "")


def test_unguarded_paths_stay_open(host):
    assert http(host, "/api/private/open", host_header=SYNC)["status"] == 200


@pytest.mark.parametrize("secret", ["sync-token-1", "sync-token-2", "uwsgi-token"])
def test_tokens_never_reach_nginx_files_in_clear(host, secret):
    assert host.run("grep -rl -- %s /etc/nginx", secret).stdout == ""


def test_the_lua_module_is_there_because_a_site_uses_it(host):
    assert host.package("libnginx-mod-http-lua").is_installed
