"""HTTPS with a certificate from an ACME server: pebble (prepare.yml) signed it through nginx's
HTTP-01 answers; the host's timer renews it with acme-tiny; sslyze passes the live handshake
against Mozilla's "intermediate" profile, trusting pebble's root."""

import json
import os
import pathlib
import subprocess
import time

import pytest
from webstack_verify import FETCH_TLS, http, https

NAME = "acme.test"
pytestmark = pytest.mark.apps("hello-acme", "hello-tls")
CERT = "/var/lib/webstack-acme/hello-acme/fullchain.pem"
ROOT = "/root/pebble-root.pem"
SSLYZE = os.environ.get("WEBSTACK_SSLYZE", str(pathlib.Path(__file__).resolve().parents[3] / ".cache/sslyze/bin/sslyze"))


@pytest.fixture(scope="module")
def root(host):
    """Pebble's root (made when pebble started), fetched from its management port."""
    out = host.run("python3 -c %s > %s",
                   "import urllib.request; print(urllib.request.urlopen("
                   "'https://localhost:15000/roots/0').read().decode())", ROOT)
    assert out.rc == 0, out.stderr
    assert "BEGIN CERTIFICATE" in host.file(ROOT).content_string
    return host.file(ROOT).content_string


def served_serial(host, name=NAME):
    """The serial number of the certificate nginx shows for `name`, checked against pebble's root
    (the exit code, the serial, the error)."""
    out = host.run("python3 -c %s %s %s /healthz", FETCH_TLS, name, ROOT)
    return out.rc, (json.loads(out.stdout)["serial"] if out.rc == 0 else ""), out.stderr


def test_the_certificate_chains_to_the_acme_servers_root(host, root):
    rc, serial, err = served_serial(host)
    assert rc == 0, err
    assert serial
    issuer = host.check_output("openssl x509 -in %s -noout -issuer", CERT)
    assert "Pebble Intermediate" in issuer, issuer
    # The control: the self-signed site beside it does not chain to that root.
    rc, _, err = served_serial(host, "tls.test")
    assert rc != 0 and "CERTIFICATE_VERIFY_FAILED" in err


def test_the_certificate_lives_90_days_and_names_the_site(host):
    dates = host.check_output("openssl x509 -in %s -noout -startdate -enddate -ext subjectAltName", CERT)
    assert "DNS:acme.test" in dates
    start, end = (line.split("=", 1)[1] for line in dates.splitlines() if "=" in line)
    days = (_epoch(host, end) - _epoch(host, start)) / 86400
    assert 89 <= days <= 91, dates


def _epoch(host, date):
    return int(host.check_output("date -d %s +%%s", date))


def test_the_page_answers_over_https(host, root):
    page = https(host, NAME, ROOT)
    assert page["status"] == 200 and "Hello over ACME" in page["body"]
    assert page["headers"]["strict-transport-security"] == "max-age=63072000"


def test_plain_http_answers_challenges_and_redirects_the_rest(host):
    token = host.file("/var/lib/webstack-acme/challenges/probe-token")
    host.run("echo probe-answer > %s", token.path)
    try:
        answer = http(host, "/.well-known/acme-challenge/probe-token", host_header=NAME)
        assert answer["status"] == 200 and answer["body"].strip() == "probe-answer"
        assert answer["headers"]["content-type"].startswith("text/plain")
        missing = http(host, "/.well-known/acme-challenge/no-such-token", host_header=NAME)
        assert missing["status"] == 404
        assert http(host, "/", host_header=NAME)["status"] == 301
    finally:
        host.run("rm -f %s", token.path)
    # Nothing is left over from the run's own challenges.
    assert host.run("ls -A /var/lib/webstack-acme/challenges").stdout.strip() == ""


def test_keys_stay_private(host):
    key = host.file("/etc/nginx/tls/hello-acme/privkey.pem")
    assert key.user == "root" and key.mode == 0o600
    account = host.file("/var/lib/webstack-acme/account.key")
    assert account.user == "webstack-acme" and account.mode == 0o600


def test_the_timer_is_set(host):
    timer = host.service("webstack-acme-renew.timer")
    assert timer.is_enabled and timer.is_running
    assert "OnCalendar=daily" in host.file("/etc/systemd/system/webstack-acme-renew.timer").content_string
    show = host.check_output("systemctl show webstack-acme-renew.timer -p TimersCalendar")
    assert "OnCalendar=*-*-* 00:00:00" in show and "next_elapse=" in show, show


def test_the_timer_service_renews_a_due_certificate_and_reloads_nginx(host, root):
    _, before, _ = served_serial(host)
    nginx_pid = host.check_output("systemctl show -p MainPID --value nginx.service")
    # Not due: left alone, and nginx is not reloaded.
    assert host.run("systemctl start webstack-acme-renew.service").rc == 0
    assert served_serial(host)[1] == before
    # Due within 400 days (every 90-day certificate): renewed by acme-tiny through nginx's HTTP-01.
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")  # no arguments: no %-formatting
    host.run("echo WEBSTACK_ACME_RENEW_DAYS=400 > /etc/default/webstack-acme")
    try:
        started = host.run("systemctl start webstack-acme-renew.service")
    finally:
        host.run("rm -f /etc/default/webstack-acme")
    journal = host.run("journalctl -u webstack-acme-renew.service --since %s --no-pager -o cat", since).stdout
    assert started.rc == 0, journal
    assert "hello-acme: renewed" in journal and "nginx reloaded with the renewed certificates" in journal
    for _ in range(20):  # the reload's new workers take over
        rc, after, err = served_serial(host)
        if after != before:
            break
        time.sleep(0.5)
    assert rc == 0 and after != before, err
    assert host.check_output("systemctl show -p MainPID --value nginx.service") == nginx_pid, "a reload, not a restart"
    assert not host.file("/var/lib/webstack-acme/renewed").exists
    assert host.file(CERT).user == "webstack-acme"


def test_sslyze_passes_mozilla_intermediate(host, root, tmp_path):
    assert pathlib.Path(SSLYZE).exists(), f"{SSLYZE} is missing: make sslyze installs it"
    ca = tmp_path / "pebble-root.pem"
    ca.write_text(root)
    address = host.check_output("hostname -I").split()[0]
    result = subprocess.run([SSLYZE, "--mozilla_config=intermediate", f"--certinfo_ca_file={ca}",
                             f"{NAME}:443{{{address}}}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{NAME}:443: OK - Compliant." in result.stdout, result.stdout[-2000:]
