"""Every service sandboxed: nginx under its drop-in (at most 5.0 with systemd-analyze security),
still reloading and reopening its logs; every app service at most 2.0."""

import time

import pytest
from webstack_verify import exposure, http

# Every app service, and the ACME renewal service (the nginx role's, rendered by systemd_unit,
# only where an app gets its certificate from ACME).
APP_UNITS = ["hello-sync", "hello-gthread", "hello-gevent", "hello-uwsgi", "hello-fcgi", "hello-scgi",
             "hello-tornado", "hello-pywsgi", "hello-cgi", "hello-spawn", "hello-wsgi", "hello-modpy", "hello-tls",
             "hello-acme",
             pytest.param("webstack-acme-renew", marks=pytest.mark.apps("hello-acme"))]


def test_nginx_runs_in_its_sandbox(host, apps_here):
    level, out = exposure(host, "nginx.service")
    assert level <= 5.0, out
    show = host.run("systemctl show nginx.service -p ProtectSystem -p NoNewPrivileges -p MemoryDenyWriteExecute").stdout
    assert "ProtectSystem=strict" in show and "NoNewPrivileges=yes" in show
    # hello-sync's Lua check: LuaJIT needs writable then executable memory; without Lua, no.
    lua = "hello-sync" in apps_here
    assert f"MemoryDenyWriteExecute={'no' if lua else 'yes'}" in show


@pytest.mark.apps("hello-sync")
def test_nginx_reloads_in_its_sandbox(host):
    before = host.run("systemctl show -p MainPID --value nginx.service").stdout.strip()
    assert host.run("systemctl reload nginx.service").rc == 0
    assert host.run("systemctl show -p MainPID --value nginx.service").stdout.strip() == before
    assert http(host, "/healthz", host_header="sync.test")["status"] == 200


@pytest.mark.apps("hello-sync")
def test_nginx_reopens_its_logs_as_logrotate_asks(host):
    log = "/var/log/nginx/hello-sync.access.log"
    assert host.run("mv %s %s.1", log, log).rc == 0
    # What Debian's /etc/logrotate.d/nginx runs after rotating.
    assert host.run("invoke-rc.d nginx rotate").rc == 0
    for _ in range(20):
        http(host, "/healthz?reopened", host_header="sync.test")
        if host.file(log).exists and "/healthz?reopened" in host.file(log).content_string:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("nginx did not reopen its access log in the sandbox")
    assert host.file(log).user == "www-data"


@pytest.mark.parametrize("unit", APP_UNITS)
def test_app_services_stay_at_2_or_lower(host, unit):
    level, out = exposure(host, f"{unit}.service")
    assert level <= 2.0, out
