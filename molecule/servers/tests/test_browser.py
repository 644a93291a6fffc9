"""The sample app's page in a real browser (headless Chromium on the machine running the tests),
over HTTPS, under the Content-Security-Policy nginx sends: its stylesheet and image load, and the
browser reports no policy violation."""

import base64
import hashlib
import shutil
import subprocess
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

NAME = "tls.test"
pytestmark = pytest.mark.apps("hello-tls")
CERT = "/etc/nginx/tls/hello-tls/fullchain.pem"


def chromium(*args):
    """Headless Chromium with its console on stderr: (DOM, stderr)."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing on this machine (make test installs it)"
    result = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             "--v=0", "--virtual-time-budget=5000", *args, "--dump-dom"],
                            capture_output=True, text=True, timeout=120)
    return result.stdout, result.stderr


def violations(console):
    return [line for line in console.splitlines() if "Content Security Policy" in line]


def test_the_harness_sees_a_violation(tmp_path):
    """The control: a page that breaks its own policy is reported on the console."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                    "<style>body{color:red}</style><p>x</p>")
    _, console = chromium(page.as_uri())
    assert violations(console), console[-2000:]


@pytest.fixture
def spki(host):
    """The base64 SHA-256 of the site certificate's public key: what Chromium is told to trust."""
    cert = x509.load_pem_x509_certificate(host.file(CERT).content)
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_the_page_loads_everything_within_its_policy(host, spki):
    address = host.interface("eth0").addresses[0]
    agent = f"webstack-browser-{uuid.uuid4().hex}"
    dom, console = chromium(f"--host-resolver-rules=MAP {NAME} {address}",
                            f"--ignore-certificate-errors-spki-list={spki}", f"--user-agent={agent}",
                            f"https://{NAME}/")
    assert "<h1>Hello over TLS</h1>" in dom, console[-3000:]
    assert violations(console) == []
    # The browser fetched the stylesheet and the image (a blocked one is never requested).
    log = host.run("grep -F -- %s /var/log/nginx/hello-tls.access.log", agent).stdout
    for path in ("/static/style.css", "/static/logo.svg"):
        assert any(f"GET {path} " in line and '" 200 ' in line for line in log.splitlines()), log
