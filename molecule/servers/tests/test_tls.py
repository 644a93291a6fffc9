"""HTTPS from the nginx role: a self-signed certificate, Mozilla intermediate TLS, HTTP/2, HSTS."""

import datetime
import json
import pathlib
import subprocess
import sys

import pytest
from webstack_verify import http
from webstack_verify import https as verify_https

NAME = "tls.test"
pytestmark = pytest.mark.apps("hello-tls")
HSTS = "max-age=63072000"


def https(host, path):
    return verify_https(host, NAME, "/etc/nginx/tls/hello-tls/fullchain.pem", path)


def s_client(host, *args, name=NAME):
    """openssl s_client against nginx: its exit code and its report (stdout and stderr), printable
    characters only (after an h2 handshake it also prints the server's binary HTTP/2 frames)."""
    cmd = host.run("(echo | timeout 10 openssl s_client -connect 127.0.0.1:443 -servername %s "
                   + " ".join(["%s"] * len(args)) + " 2>&1; echo rc=$?) | LC_ALL=C tr -cd '\\11\\12\\40-\\176'",
                   name, *args)
    report, _, rc = cmd.stdout.rstrip().rpartition("rc=")
    return int(rc), report


def test_plain_http_only_redirects(host):
    response = http(host, "/hello/x?y=1", host_header=NAME)
    assert response["status"] == 301
    assert response["headers"]["location"] == f"https://{NAME}/hello/x?y=1"
    assert "Hello" not in response["body"]


def test_the_page_answers_over_https_with_hsts(host):
    page = https(host, "/")
    assert page["status"] == 200 and "Hello over TLS" in page["body"]
    assert page["headers"]["strict-transport-security"] == HSTS
    assert page["headers"]["x-content-type-options"] == "nosniff"
    static = https(host, "/static/style.css")
    assert static["status"] == 200
    assert static["headers"]["strict-transport-security"] == HSTS, "a location with headers of its own"


def test_the_certificate_is_the_sites_own_and_short_lived(host):
    out = host.check_output("openssl x509 -in /etc/nginx/tls/hello-tls/fullchain.pem -noout -ext subjectAltName "
                            "-startdate -enddate")
    assert f"DNS:{NAME}" in out
    start = datetime.datetime.strptime(out.split("notBefore=")[1].splitlines()[0], "%b %d %H:%M:%S %Y %Z")
    end = datetime.datetime.strptime(out.split("notAfter=")[1].splitlines()[0], "%b %d %H:%M:%S %Y %Z")
    assert (end - start).days <= 366
    key = host.file("/etc/nginx/tls/hello-tls/privkey.pem")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_1_2_and_1_3_are_accepted(host, version):
    rc, out = s_client(host, "-" + version.lower().replace("v", "").replace(".", "_"))
    assert rc == 0 and f"New, {version}, Cipher is" in out, out[-2000:]


def test_tls_1_1_is_refused_by_the_server(host):
    # The client offers TLS 1.1 only (its own floor lowered): the refusal must be nginx's alert.
    rc, out = s_client(host, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0
    assert "alert protocol version" in out or "unsupported protocol" in out, out[-2000:]


def test_http2_is_offered(host):
    rc, out = s_client(host, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: h2" in out, out[-2000:]


def test_a_name_no_site_has_gets_no_certificate(host):
    rc, out = s_client(host, name="unknown.test")
    assert rc != 0 and "unrecognized name" in out, out[-2000:]


def test_the_post_quantum_group_where_openssl_has_it(host):
    conf = host.check_output("nginx -T 2>/dev/null | grep ssl_ecdh_curve")
    if host.system_info.codename == "bookworm":
        assert "MLKEM" not in conf, "OpenSSL 3.0 would refuse it"
        return
    assert "?X25519MLKEM768:" in conf
    rc, out = s_client(host, "-groups", "X25519MLKEM768", "-tls1_3")
    assert rc == 0 and "X25519MLKEM768" in out, out[-2000:]


def test_gixy_finds_nothing_in_the_live_configuration(host, tmp_path):
    dump = tmp_path / "nginx-T.conf"
    dump.write_text(host.check_output("nginx -T 2>/dev/null"))
    gixy = pathlib.Path(sys.executable).parent / "gixy"
    report = subprocess.run([str(gixy), "--format", "json", str(dump)], capture_output=True, text=True)
    findings = json.loads(report.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
