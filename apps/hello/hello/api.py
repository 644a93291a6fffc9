"""The JSON side: what a test needs to prove which release, server and interpreter answered."""

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
