"""hello: the sample Flask app that webstack deploys to prove the stack end to end."""

import os
import sys
import time

from flask import Flask, g
from werkzeug.middleware.proxy_fix import ProxyFix

from hello.api import api
from hello.pages import pages


def _detect_server():
    """Name the app server that imported us, from what it puts in sys.modules or the env."""
    declared = os.environ.get("WEBSTACK_SERVER")
    if declared:
        return declared
    for module, name in (("gunicorn", "gunicorn"), ("uwsgi", "uwsgi"), ("flup", "flup")):
        if module in sys.modules:
            return name
    return "unknown"


def create_app(config=None):
    """Application factory: every server (and every test) builds its own app."""
    app = Flask(__name__)
    app.config.update(
        GREETING=os.environ.get("HELLO_GREETING", "Hello from webstack"),
        RELEASE_ID=os.environ.get("WEBSTACK_RELEASE_ID", "dev"),
        SERVER=_detect_server(),
        WORKER_CLASS=os.environ.get("WEBSTACK_WORKER_CLASS", "unknown"),
        # Only the proxy in front of us may set X-Forwarded-*: one hop by default.
        PROXY_HOPS=int(os.environ.get("HELLO_PROXY_HOPS", "1")),
        # Signs sessions; webstack generates one per app, the same on every app host.
        SECRET_KEY=os.environ.get("SECRET_KEY"),
    )
    if config:
        app.config.update(config)

    hops = app.config["PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _timing_header(response):
        elapsed_ms = (time.perf_counter() - g.started) * 1000
        response.headers["X-App-Time-Ms"] = f"{elapsed_ms:.2f}"
        return response

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "release": app.config["RELEASE_ID"]}

    app.register_blueprint(pages)
    app.register_blueprint(api, url_prefix="/api")
    return app
