"""The health probe speaks each protocol the way nginx does, against real servers."""

import importlib.util
import struct
import subprocess
import sys
import time

import pytest

from webstack_testlib import ROLES

SPEC = importlib.util.spec_from_file_location("webstack_probe", ROLES / "python_app/files/webstack_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)

# A WSGI app that answers 200 on /healthz only for the right Host, and 500 on /broken.
APP = r'''
def app(environ, start_response):
    host = environ.get("HTTP_HOST", "")
    path = environ.get("PATH_INFO", "")
    status = "500 Broken" if path == "/broken" else "200 OK" if host == "good.test" else "400 Bad Host"
    body = f"{environ['REQUEST_METHOD']} {path} {host} script_name={environ.get('SCRIPT_NAME')!r}".encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''
# Each server serves probe_app:app on SOCK, a unix socket.
SERVERS = {
    "http": [sys.executable, "-m", "gunicorn", "--bind", "unix:{sock}", "--workers", "1", "probe_app:app"],
    "fastcgi": [sys.executable, "-c", "from flup.server.fcgi import WSGIServer; from probe_app import app; "
                "WSGIServer(app, bindAddress={sock!r}).run()"],
    "scgi": [sys.executable, "-c", "from flup.server.scgi import WSGIServer; from probe_app import app; "
             "WSGIServer(app, bindAddress={sock!r}).run()"],
}


@pytest.fixture(params=list(SERVERS))
def server(request, tmp_path):
    sock = str(tmp_path / "app.sock")
    (tmp_path / "probe_app.py").write_text(APP)
    argv = [arg.format(sock=sock) for arg in SERVERS[request.param]]
    process = subprocess.Popen(argv, cwd=tmp_path, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if (tmp_path / "app.sock").exists():
            break
        time.sleep(0.05)
    yield request.param, sock
    process.kill()
    process.wait()


def test_probe_gets_each_status_through_the_protocol(server):
    protocol, sock = server
    assert probe.probe(protocol, sock, "good.test", "/healthz", 5) == 200
    assert probe.probe(protocol, sock, "other.test", "/healthz", 5) == 400, "the Host reaches the app"
    assert probe.probe(protocol, sock, "good.test", "/broken", 5) == 500


def test_exit_codes(server, capsys):
    protocol, sock = server
    args = ["--protocol", protocol, "--address", sock, "--host", "good.test"]
    assert probe.main(args + ["--expect", "200"]) == 0
    assert "status 200" in capsys.readouterr().out
    assert probe.main(args + ["--path", "/broken"]) == 1
    assert probe.main(args + ["--path", "/broken", "--expect", "500"]) == 0
    # The default (--expect 0): any answer below 500, so an app with no health route passes.
    assert probe.main(args) == 0
    assert probe.main(args + ["--host", "other.test"]) == 0, "a 400 is an answer from a live app"
    assert probe.main(args + ["--host", "other.test", "--expect", "200"]) == 1
    assert "wanted status 200" in capsys.readouterr().out.splitlines()[-1]


def test_only_a_pass_is_recorded(server, tmp_path):
    protocol, sock = server
    record = tmp_path / "gate"
    args = ["--protocol", protocol, "--address", sock, "--host", "good.test", "--record", str(record)]
    assert probe.main(args + ["--path", "/broken", "--expect", "200"]) == 1
    assert not record.exists(), "a failed probe records nothing (revert.yml records the failure)"
    record.write_text("failed\n")
    assert probe.main(args + ["--expect", "200"]) == 0
    assert record.read_text() == "passed\n" and oct(record.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gate")] == ["gate"], "no temporary left"


def test_no_answer_is_exit_2(tmp_path, capsys):
    assert probe.main(["--protocol", "fastcgi", "--address", str(tmp_path / "none.sock")]) == 2
    assert "no answer" in capsys.readouterr().out
    assert probe.main(["--protocol", "http", "--address", "127.0.0.1:1"]) == 2


def test_uwsgi_packet_layout():
    packet = probe.uwsgi_request({"A": "bc"})
    # modifier1 0, a little-endian 16-bit size of the vars block, modifier2 0, then the pairs
    assert packet == bytes([0]) + struct.pack("<H", 7) + bytes([0]) + b"\x01\x00A\x02\x00bc"


def test_scgi_netstring_puts_content_length_first():
    packet = probe.scgi_request({"CONTENT_LENGTH": "", "PATH_INFO": "/x"})
    length, rest = packet.split(b":", 1)
    assert int(length) == len(rest) - 1 and rest.endswith(b",")
    assert rest.startswith(b"CONTENT_LENGTH\x000\x00SCGI\x001\x00PATH_INFO\x00/x\x00")


def test_fastcgi_lengths_and_records():
    assert probe._fcgi_length(5) == b"\x05"
    assert probe._fcgi_length(300) == struct.pack(">I", 300 | 0x80000000)
    record = probe._fcgi_record(probe.FCGI_STDIN, b"abc")
    assert record[:8] == struct.pack(">BBHHBx", 1, 5, 1, 3, 5) and len(record) == 16


def test_fastcgi_names_the_script_only_when_asked():
    assert b"SCRIPT_FILENAME/srv/a/current/webstack_cgi.py" in probe.request_bytes(
        "fastcgi", "a.test", "/healthz", "/srv/a/current/webstack_cgi.py")
    assert b"SCRIPT_FILENAME" not in probe.request_bytes("fastcgi", "a.test", "/healthz")


@pytest.mark.parametrize(("response", "status"), [
    (b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\nbody", 404),
    (b"Status: 503 Busy\r\nContent-Type: text/plain\r\n\r\n", 503),
    (b"Content-Type: text/plain\r\n\r\nok", 200),
    (b"", None),
])
def test_status_of(response, status):
    assert probe.status_of(response) == status
