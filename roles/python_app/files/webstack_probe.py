#!/usr/bin/env python3
"""One GET to an app server in its own protocol (HTTP, uwsgi, FastCGI or SCGI), the way nginx
would send it. Prints the status; exits 0 when it is the expected one (with --expect 0, any
status below 500: the app is alive and answered), 1 when it is another, 2 when no answer came. Standard library only: it runs with the host's python3.

    webstack_probe.py --protocol fastcgi --address /run/app.sock --host example.com --path /healthz
"""

import argparse
import os
import socket
import struct
import sys


def connect(address, timeout):
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def cgi_environ(host, path):
    """What nginx's params give an app at the site root (SCRIPT_NAME "", the path as PATH_INFO)."""
    path, _sep, query = path.partition("?")
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "REQUEST_URI": path + ("?" + query if query else ""), "DOCUMENT_URI": path,
        "SERVER_NAME": host, "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "0",
        "CONTENT_TYPE": "", "CONTENT_LENGTH": "", "HTTP_HOST": host, "HTTP_USER_AGENT": "webstack-probe",
    }


def http_request(host, path):
    return f"GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: webstack-probe\r\nConnection: close\r\n\r\n".encode()


def uwsgi_request(environ):
    """uwsgi packet: modifier1 0 (WSGI), a little-endian size, then 16-bit length-prefixed pairs."""
    body = b""
    for name, value in environ.items():
        key, val = name.encode("latin-1"), value.encode("latin-1")
        body += struct.pack("<H", len(key)) + key + struct.pack("<H", len(val)) + val
    return struct.pack("<BHB", 0, len(body), 0) + body


def scgi_request(environ):
    """SCGI netstring of NUL-separated headers, CONTENT_LENGTH first, then SCGI=1; no body."""
    items = [("CONTENT_LENGTH", "0"), ("SCGI", "1")]
    items += [(name, value) for name, value in environ.items() if name != "CONTENT_LENGTH"]
    header = b"".join(name.encode("latin-1") + b"\0" + value.encode("latin-1") + b"\0" for name, value in items)
    return str(len(header)).encode() + b":" + header + b","


def _fcgi_length(size):
    return bytes([size]) if size < 128 else struct.pack(">I", size | 0x80000000)


def _fcgi_record(kind, content, request_id=1):
    padding = -len(content) % 8
    return struct.pack(">BBHHBx", 1, kind, request_id, len(content), padding) + content + b"\0" * padding


FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6


def fastcgi_request(environ):
    """BEGIN_REQUEST (responder), the params, an empty PARAMS and an empty STDIN."""
    params = b""
    for name, value in environ.items():
        key, val = name.encode("latin-1"), value.encode("latin-1")
        params += _fcgi_length(len(key)) + _fcgi_length(len(val)) + key + val
    records = _fcgi_record(FCGI_BEGIN_REQUEST, struct.pack(">HB5x", 1, 0))
    for start in range(0, len(params), 65535):
        records += _fcgi_record(FCGI_PARAMS, params[start:start + 65535])
    return records + _fcgi_record(FCGI_PARAMS, b"") + _fcgi_record(FCGI_STDIN, b"")


def fastcgi_stdout(raw):
    """The STDOUT stream of a FastCGI answer, up to END_REQUEST."""
    out, offset = b"", 0
    while offset + 8 <= len(raw):
        _version, kind, _request_id, length, padding = struct.unpack(">BBHHBx", raw[offset:offset + 8])
        content = raw[offset + 8:offset + 8 + length]
        offset += 8 + length + padding
        if kind == FCGI_STDOUT:
            out += content
        elif kind == FCGI_END_REQUEST:
            break
    return out


def status_of(response):
    """The status of an HTTP response ("HTTP/1.1 200 OK") or a CGI one ("Status: 200 OK"; none is 200)."""
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("latin-1")
    lines = [line.strip() for line in head.splitlines()]
    if not lines or not lines[0]:
        return None
    if lines[0].startswith("HTTP/"):
        return int(lines[0].split()[1])
    for line in lines:
        if line.lower().startswith("status:"):
            return int(line.split(":", 1)[1].split()[0])
    return 200


def request_bytes(protocol, host, path, script=""):
    if protocol == "http":
        return http_request(host, path)
    environ = cgi_environ(host, path)
    if script:
        environ["SCRIPT_FILENAME"] = script
    return {"uwsgi": uwsgi_request, "scgi": scgi_request, "fastcgi": fastcgi_request}[protocol](environ)


def probe(protocol, address, host, path, timeout, script=""):
    with connect(address, timeout) as sock:
        sock.sendall(request_bytes(protocol, host, path, script))
        # Every protocol here closes after one answer (FastCGI: FCGI_KEEP_CONN is not set).
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    return status_of(fastcgi_stdout(raw) if protocol == "fastcgi" else raw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--protocol", required=True, choices=["http", "uwsgi", "fastcgi", "scgi"])
    parser.add_argument("--address", required=True, help="unix socket path or host:port")
    parser.add_argument("--host", default="localhost", help="the Host the app is asked for")
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--expect", type=int, default=0, help="the status wanted; 0: any below 500")
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--script", default="", help="SCRIPT_FILENAME, for a CGI runner such as fcgiwrap")
    parser.add_argument("--record", default="", help="a file that says 'passed' once the wanted status came")
    args = parser.parse_args(argv)
    try:
        status = probe(args.protocol, args.address, args.host, args.path, args.timeout, args.script)
    except OSError as error:
        print(f"no answer from {args.address} ({args.protocol}): {error}")
        return 2
    wanted = f"status {args.expect}" if args.expect else "a status below 500"
    print(f"{args.protocol} {args.address} {args.path} (Host {args.host}): status {status}, wanted {wanted}")
    passed = status == args.expect or (not args.expect and status < 500)
    if passed and args.record:
        record(args.record)
    return 0 if passed else 1


def record(path):
    """Write 'passed' to path (0644), replacing it in one rename."""
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write("passed\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
