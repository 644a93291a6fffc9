"""The JSON side: what a test needs to prove which release, server and interpreter answered."""

import hmac
import os
import socket
import sys

from flask import Blueprint, current_app, g, request

from hello import db

api = Blueprint("api", __name__)


@api.before_request
def _remember_request():
    g.client = request.remote_addr


@api.get("/info")
def info():
    config = current_app.config
    return {
        "app": "hello",
        "release": config["RELEASE_ID"],
        "server": config["SERVER"],
        "worker_class": config["WORKER_CLASS"],
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "client": g.client,
        "scheme": request.scheme,
        "host": request.host,
        "script_root": request.script_root,
    }


@api.route("/visits", methods=["GET", "POST"])
def visits():
    """The visit counter kept in PostgreSQL: POST counts one more, GET reads it."""
    try:
        count = db.visits(increment=request.method == "POST")
    except db.NoDatabase as error:
        return {"error": str(error)}, 503
    return {"visits": count, "hostname": socket.gethostname()}


@api.get("/private/<path:rest>")
def private(rest):
    """A resource nginx guards (an access: check in webstack_apps): answering means nginx let it in."""
    return {"private": rest, "hostname": socket.gethostname()}


@api.get("/auth")
def auth():
    """The check nginx's auth_request asks before a guarded request: 204 admits it, 401 when it
    carries no bearer token, 403 when the token is not HELLO_AUTH_TOKEN (none set: nothing is admitted)."""
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return "", 401, {"WWW-Authenticate": 'Bearer realm="hello"'}
    expected = os.environ.get("HELLO_AUTH_TOKEN", "")
    if not expected or not hmac.compare_digest(given[len("Bearer "):].encode(), expected.encode()):
        return "", 403
    return "", 204
