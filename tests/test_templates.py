"""Role templates rendered by Ansible itself across many variable combinations, then checked.

One ansible-playbook run renders every case: a play per case loads the role's defaults and vars
files, then the case's variables (later vars_files win), and renders the role's templates.
"""

import hashlib
import importlib.util
import json
import pathlib
import re
import runpy
import sys
import time

import pytest
import yaml
from gunicorn.config import Config

from webstack_testlib import ROLES, ROOT, run, run_local_playbook

APP = {
    "name": "hello", "id": "abc123", "path": "/srv/hello/releases/abc123",
    "current": "/srv/hello/current", "venv": "/srv/hello/releases/abc123/venv",
    "src": "/srv/hello/releases/abc123/src", "user": "hello", "group": "hello",
    "env_file": "/srv/hello/shared/env", "listen": "/run/hello.sock", "wsgi_app": "hello:create_app()",
}
HELLO_SITE = {
    "name": "hello", "server_names": ["localhost", "hello.test"],
    "upstream": {"protocol": "http", "servers": ["unix:/run/hello.sock"]},
    "static": [{"location": "/static/", "path": "/srv/hello/current/src/hello/static/"}],
}
TCP_SITE = {
    "name": "api", "server_names": ["api.test"], "listen": 8080, "read_timeout": 5,
    "client_max_body_size": "1m", "limit_req_rate": 0, "limit_conn": 5, "client_body_timeout": 30,
    "upstream": {"protocol": "http", "servers": ["10.0.0.5:8000", "10.0.0.6:8000"], "keepalive": 16},
}

NGINX_FILES = [
    "nginx.conf", "security-headers.conf", "proxy-params.conf", "uwsgi-params.conf",
    "fastcgi-params.conf", "scgi-params.conf", "default-deny.conf", "site.conf",
]
UWSGI_FILES = ["uwsgi.ini", "service.yml", "socket.yml"]
FLUP_FILES = ["webstack_flup.py", "service.yml", "socket.yml"]
TORNADO_FILES = ["webstack_tornado.py", "service.yml", "socket.yml"]
GEVENT_FILES = ["webstack_gevent.py", "service.yml", "socket.yml"]
CGI_FILES = ["webstack_cgi.py", "webstack_cgi_stop.py", "service.yml", "socket.yml"]
SPAWN_FCGI_FILES = ["webstack_spawn.py", "webstack_spawn_fcgi.py", "service.yml"]
MOD_WSGI_FILES = ["httpd.conf", "webstack_mod_wsgi.py", "webstack_apache.py", "service.yml"]
MOD_PYTHON_FILES = ["httpd.conf", "webstack_mod_python.py", "webstack_apache.py", "service.yml"]
# What mod_wsgi-express module-location prints for a release's venv.
MOD_WSGI_SO = "venv/lib/python3.13/site-packages/mod_wsgi/server/mod_wsgi-py313.cpython-313-x86_64-linux-gnu.so"


def site(name, protocol, servers, keepalive=0):
    return {"name": name, "server_names": [f"{name}.test"],
            "upstream": {"protocol": protocol, "servers": servers, "keepalive": keepalive}}


UWSGI_SITE = site("uw", "uwsgi", ["unix:/run/uw.sock"])
# One server, four apps: gunicorn at the root, the others under URL prefixes.
PREFIXED_SITE = {
    **HELLO_SITE,
    "mounts": [
        {"name": "blog-uw", "prefix": "/blog/", "upstream": {"protocol": "uwsgi", "servers": ["unix:/run/blog-uw.sock"]},
         "static": [{"location": "/blog/static/", "path": "/srv/blog-uw/current/src/static/"}]},
        {"name": "wiki", "prefix": "/wiki/v1.0/", "upstream": {"protocol": "fastcgi", "servers": ["unix:/run/wiki.sock"]}},
        {"name": "forum", "prefix": "/forum/", "upstream": {"protocol": "scgi", "servers": ["unix:/run/forum.sock"]}},
        {"name": "api", "prefix": "/api/", "upstream": {"protocol": "http", "servers": ["127.0.0.1:8001"], "keepalive": 8}},
    ],
}
# Only prefixed apps: nothing answers at the root.
NO_ROOT_SITE = {"name": "only", "server_names": ["only.test"], "prefix": "/app/",
                "upstream": {"protocol": "scgi", "servers": ["unix:/run/only.sock"]}}
FCGI_SITE = site("fc", "fastcgi", ["10.0.0.7:9000"], keepalive=4)
# Three uWSGI app hosts, one drained for a rolling deploy.
TLS_SITE = {**HELLO_SITE, "tls": {}}
TLS_GIVEN_SITE = {
    "name": "shop", "server_names": ["shop.test"], "listen": 8080,
    "tls": {"certificate": "/etc/ssl/shop/fullchain.pem", "key": "/etc/ssl/private/shop.pem", "port": 8443},
    "upstream": {"protocol": "uwsgi", "servers": ["unix:/run/shop.sock"]},
    "static": [{"location": "/assets/", "path": "/srv/shop/current/src/assets/"}],
}
# A certificate from an ACME server: the challenge path stays open on plain HTTP.
ACME_SITE = {**HELLO_SITE, "name": "shop", "server_names": ["shop.example.org", "www.shop.example.org"],
             "tls": {"acme": True}}
DRAINED_SITE = {**site("uwd", "uwsgi", ["10.0.0.5:8001", "10.0.0.6:8001", "10.0.0.7:8001"]),
                "upstream": {"protocol": "uwsgi", "servers": ["10.0.0.5:8001", "10.0.0.6:8001", "10.0.0.7:8001"],
                             "down": ["10.0.0.6:8001"], "max_fails": 2, "fail_timeout": "5s", "next_upstream_tries": 3}}
SCGI_SITE = site("sc", "scgi", ["unix:/run/sc.sock"])
# A CGI app (fcgiwrap) under a prefix, checked by auth_request to itself.
CGI_SITE = {
    **site("web", "fastcgi", ["unix:/run/web.sock"]),
    "mounts": [{"name": "old", "prefix": "/old/",
                "upstream": {"protocol": "fastcgi", "servers": ["unix:/run/old.sock"],
                             "script": "/srv/old/current/webstack_cgi.py"},
                "access": [{"location": "/old/admin/", "auth_request": {"path": "/api/auth"}}]}],
}
# Guarded locations: a Lua token check on the root app, auth_request to the app itself, and to
# an app under a prefix that speaks uwsgi.
ACCESS_SITE = {
    **HELLO_SITE,
    "access": [
        {"location": "/admin/", "lua": {"tokens": ["s3cret", "other-token", "s3cret"]}},
        {"location": "/api/private/", "lua": {"header": "Authorization", "tokens": ["bearer-one"]}},
        {"location": "/reports/", "auth_request": {"path": "/api/auth"}},
        {"location": "/shared/", "auth_request": {"path": "/check", "app": "blog"}},
    ],
    "mounts": [{"name": "blog", "prefix": "/blog/", "upstream": {"protocol": "uwsgi", "servers": ["unix:/run/blog.sock"]},
                "access": [{"location": "/blog/drafts/", "auth_request": {"path": "/check"}}]}],
}
GUNICORN_FILES = ["gunicorn.conf.py", "service.yml", "socket.yml"]
UNIT_FILES = ["service", "socket"]

CASES = {
    "nginx_tls_122": ("nginx", NGINX_FILES + ["tls.conf"], {
        "nginx_ipv6": True, "nginx_sites": [TLS_SITE], "site": TLS_SITE,
        "_nginx_features": {"version": "1.22.1", "openssl": "3.0.17", "http2_directive": False, "pq_groups": False},
    }),
    "nginx_tls_126": ("nginx", NGINX_FILES + ["tls.conf"], {
        "nginx_ipv6": False, "nginx_sites": [TLS_GIVEN_SITE], "site": TLS_GIVEN_SITE,
        "nginx_tls_hsts_max_age": 0, "_nginx_tls_ocsp": {"shop": "http://ocsp.example.net"},
        "nginx_resolvers": ["10.0.0.2"],
        "_nginx_features": {"version": "1.26.3", "openssl": "3.5.1", "http2_directive": True, "pq_groups": True},
    }),
    "nginx_tls_acme": ("nginx", NGINX_FILES + ["tls.conf", "acme-renew.sh", "acme-reload.sh"], {
        "nginx_ipv6": False, "nginx_sites": [ACME_SITE, TLS_SITE], "site": ACME_SITE,
        "nginx_acme_email": "ops@example.org", "nginx_acme_directory": "https://ca.example.org/acme/dir",
        "_nginx_features": {"version": "1.26.3", "openssl": "3.5.1", "http2_directive": True, "pq_groups": True},
    }),
    "nginx_default": ("nginx", NGINX_FILES + ["hardening.conf"], {
        "nginx_ipv6": False, "nginx_sites": [HELLO_SITE], "site": HELLO_SITE}),
    "nginx_access": ("nginx", NGINX_FILES + ["hardening.conf"], {
        "nginx_ipv6": False, "nginx_sites": [ACCESS_SITE], "site": ACCESS_SITE,
        "nginx_hardening_overrides": {"ProtectHome": "read-only", "UMask": None}}),
    "nginx_tcp_keepalive": ("nginx", NGINX_FILES, {
        "nginx_ipv6": True, "nginx_gzip": False, "nginx_server_tokens": True,
        "nginx_worker_connections": 4096, "nginx_extra_http_directives": ["map_hash_bucket_size 128;"],
        "nginx_security_headers": {"X-Frame-Options": "DENY"},
        "nginx_sites": [HELLO_SITE, TCP_SITE], "site": TCP_SITE,
    }),
    "nginx_uwsgi": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [UWSGI_SITE], "site": UWSGI_SITE}),
    "nginx_fastcgi_tcp": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [FCGI_SITE], "site": FCGI_SITE}),
    "nginx_drained": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [DRAINED_SITE], "site": DRAINED_SITE}),
    "nginx_scgi": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [SCGI_SITE], "site": SCGI_SITE}),
    "nginx_cgi": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [CGI_SITE], "site": CGI_SITE}),
    "nginx_prefixed": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [PREFIXED_SITE], "site": PREFIXED_SITE}),
    "nginx_no_root": ("nginx", NGINX_FILES, {"nginx_ipv6": False, "nginx_sites": [NO_ROOT_SITE], "site": NO_ROOT_SITE}),
    "uwsgi_default": ("uwsgi", UWSGI_FILES, {"uwsgi_app": APP, "uwsgi_processes": 5}),
    "uwsgi_threads": ("uwsgi", UWSGI_FILES, {
        "uwsgi_app": APP, "uwsgi_processes": 5,
        "uwsgi_overrides": {"processes": 2, "threads": 4, "harakiri": 0, "log_requests": True},
        "uwsgi_extra_options": {"stats": "/run/x.stats", "route": ["^/a break:403", "^/b break:404"], "memory-report": True},
    }),
    "flup_fastcgi": ("flup", FLUP_FILES, {"flup_app": APP, "flup_protocol": "fastcgi"}),
    "flup_scgi_tcp": ("flup", FLUP_FILES, {
        "flup_app": {**APP, "listen": "127.0.0.1:9001"}, "flup_protocol": "scgi", "flup_overrides": {"max_children": 2},
    }),
    "tornado_default": ("tornado", TORNADO_FILES, {"tornado_app": APP}),
    "tornado_threads_tcp": ("tornado", TORNADO_FILES, {
        "tornado_app": {**APP, "listen": "127.0.0.1:9002"}, "tornado_overrides": {"processes": 3, "threads": 4},
    }),
    "gevent_default": ("gevent", GEVENT_FILES, {"gevent_app": APP, "gevent_overrides": {"graceful_timeout": 5}}),
    "cgi_default": ("cgi", CGI_FILES, {"cgi_app": APP, "cgi_overrides": {"processes": 3}}),
    "spawn_fcgi_default": ("spawn_fcgi", SPAWN_FCGI_FILES, {
        "spawn_fcgi_app": APP, "spawn_fcgi_overrides": {"processes": 3, "timeout": 10, "drain": 3}}),
    "mod_wsgi_default": ("mod_wsgi", MOD_WSGI_FILES, {
        "mod_wsgi_app": {**APP, "listen": "127.0.0.1:8090"},
        "_mod_wsgi_location": {"stdout": f"{APP['path']}/{MOD_WSGI_SO}\n"}}),
    # Another release of the same app, with other settings for one of them.
    "mod_wsgi_next_release": ("mod_wsgi", MOD_WSGI_FILES, {
        "mod_wsgi_app": {**APP, "id": "def456", "path": "/srv/hello/releases/def456", "venv": "/srv/hello/releases/def456/venv",
                         "src": "/srv/hello/releases/def456/src", "listen": "127.0.0.1:8090"},
        "_mod_wsgi_location": {"stdout": f"/srv/hello/releases/def456/{MOD_WSGI_SO}\n"}}),
    "mod_wsgi_overrides": ("mod_wsgi", MOD_WSGI_FILES, {
        "mod_wsgi_app": {**APP, "listen": "[::1]:8090"}, "mod_wsgi_overrides": {"processes": 3, "threads": 1},
        "_mod_wsgi_location": {"stdout": f"{APP['path']}/{MOD_WSGI_SO}\n"}}),
    "mod_python_default": ("mod_python", MOD_PYTHON_FILES, {
        "mod_python_app": {**APP, "listen": "127.0.0.1:8091"}, "mod_python_overrides": {"processes": 3}}),
    "gunicorn_sync": ("gunicorn", GUNICORN_FILES, {"gunicorn_app": APP, "gunicorn_workers": 5}),
    "gunicorn_gthread_tcp": ("gunicorn", GUNICORN_FILES, {
        "gunicorn_app": {**APP, "listen": "0.0.0.0:8000"}, "gunicorn_workers": 3,
        "gunicorn_overrides": {"worker_class": "gthread", "threads": 8, "graceful_timeout": 50,
                               "access_log": "/var/log/hello/access.log"},
        "gunicorn_control_socket": True,
        "gunicorn_extra_settings": {"preload_app": True, "limit_request_line": 8190, "user": None},
    }),
    "gunicorn_gevent": ("gunicorn", GUNICORN_FILES, {
        "gunicorn_app": APP, "gunicorn_workers": 2, "gunicorn_worker_class": "gevent", "gunicorn_access_log": "",
    }),
    "unit_socket": ("systemd_unit", UNIT_FILES, {
        "systemd_unit_name": "hello", "systemd_unit_unit": {"After": "network.target"},
        "systemd_unit_service": {"Type": "notify", "ExecStart": "/bin/true", "Environment": ["A=1", "B=2"]},
        "systemd_unit_socket": {"ListenStream": "/run/hello.sock", "SocketMode": "0660"},
        "systemd_unit_hardening_overrides": {"ProtectSystem": None, "PrivateUsers": True, "ProtectHome": "read-only"},
    }),
    "postgresql_tiers": ("postgresql", ["pg_hba.conf", "webstack.conf"], {
        "postgresql_listen_addresses": ["localhost", "10.0.0.30"], "postgresql_port": 5433,
        "postgresql_settings": {"max_connections": 200, "log_line_prefix": "%m [%p] it's"},
        "postgresql_databases": [
            {"name": "hello", "clients": ["10.0.0.11", "fd00::12"]},
            {"name": "shop", "user": "shop_rw", "clients": ["10.0.1.0/24"], "extensions": ["pg_trgm"]},
            {"name": "old", "state": "absent", "clients": ["10.0.0.99"]},
        ],
        "postgresql_hba_extra": [{"type": "host", "database": "all", "user": "backup", "address": "10.0.2.5/32",
                                  "method": "scram-sha-256"}],
    }),
    "firewall_tiers": ("firewall", ["firewall.nft", "webstack-firewall.service"], {
        "firewall_rules": [{"name": "hello", "port": 8001, "sources": ["10.0.0.2", "fd00::2", "10.0.1.0/24"]},
                           {"name": "postgresql", "port": 5432, "sources": ["10.0.0.11"]}],
    }),
    "unit_timer": ("systemd_unit", ["service", "timer"], {
        "systemd_unit_name": "renew", "systemd_unit_service": {"Type": "oneshot", "ExecStart": "/bin/true"},
        "systemd_unit_timer": {"OnCalendar": "daily", "RandomizedDelaySec": "1h", "Persistent": True},
    }),
    # A gunicorn-like service with the control socket's RuntimeDirectory, and its hand-over unit.
    "unit_handover": ("systemd_unit", ["service", "socket", "handover"], {
        "systemd_unit_name": "hello",
        "systemd_unit_service": {
            "Type": "notify", "WorkingDirectory": "/srv/hello/current/src",
            "ExecStart": "/srv/hello/current/venv/bin/gunicorn --config /srv/hello/current/gunicorn.conf.py",
            "ExecReload": "/bin/kill -s HUP $MAINPID", "Environment": ["HOME_PAGE=/srv/hello/currently"],
            "RuntimeDirectory": "hello-gunicorn",
        },
        "systemd_unit_socket": {"ListenStream": "/run/hello.sock"},
        "systemd_unit_handover": {"current": "/srv/hello/current", "releases": "/srv/hello/releases"},
    }),
    "unit_plain": ("systemd_unit", UNIT_FILES, {
        "systemd_unit_name": "worker", "systemd_unit_service": {"ExecStart": "/bin/true", "Restart": "always"},
        "systemd_unit_socket": {},
    }),
}

# A server role hands its own [Service] keys and settings to app_server (its tasks/configure.yml),
# which adds the shared keys and renders the socket: the cases render what the units get.
EFFECTIVE_SERVICE = ROOT / "tests" / "data" / "effective-service.yml.j2"
APP_SERVER_VARS = {
    "gunicorn": {"app_server_app": "{{ gunicorn_app }}"},
    "uwsgi": {"app_server_app": "{{ uwsgi_app }}", "app_server_backlog": "{{ uwsgi_listen }}",
              "app_server_environment": ["PYTHONDONTWRITEBYTECODE=1"]},
    "flup": {"app_server_app": "{{ flup_app }}"},
    "tornado": {"app_server_app": "{{ tornado_app }}"},
    "gevent": {"app_server_app": "{{ gevent_app }}"},
    "cgi": {"app_server_app": "{{ cgi_app }}"},
    "spawn_fcgi": {"app_server_app": "{{ spawn_fcgi_app }}"},
    # The Apache-run servers go through the apache role, which calls app_server with these.
    "mod_wsgi": {"app_server_app": "{{ mod_wsgi_app }}", "app_server_socket": False, "apache_app": "{{ mod_wsgi_app }}",
                 "apache_label": "Apache mod_wsgi", "apache_workers": "daemons",
                 "apache_processes": "{{ _mod_wsgi_settings.processes }}",
                 "apache_graceful_timeout": "{{ _mod_wsgi_settings.graceful_timeout }}"},
    "mod_python": {"app_server_app": "{{ mod_python_app }}", "app_server_socket": False,
                   "apache_app": "{{ mod_python_app }}", "apache_label": "Apache mod_python",
                   "apache_processes": "{{ _mod_python_settings.processes }}",
                   "apache_graceful_timeout": "{{ _mod_python_settings.graceful_timeout }}",
                   "app_server_environment": ["PYTHONPATH={{ mod_python_app.current }}"]},
}
APACHE_ROLES = ("mod_wsgi", "mod_python")
TEMPLATE_SOURCES = {
    ("nginx", "site.conf"): "site.conf.j2",
    ("nginx", "tls.conf"): "tls.conf.j2",
    ("uwsgi", "service.yml"): str(EFFECTIVE_SERVICE),
    ("uwsgi", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("flup", "service.yml"): str(EFFECTIVE_SERVICE),
    ("flup", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("tornado", "service.yml"): str(EFFECTIVE_SERVICE),
    ("tornado", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("gevent", "service.yml"): str(EFFECTIVE_SERVICE),
    ("gevent", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("cgi", "service.yml"): str(EFFECTIVE_SERVICE),
    ("spawn_fcgi", "service.yml"): str(EFFECTIVE_SERVICE),
    ("mod_wsgi", "service.yml"): str(EFFECTIVE_SERVICE),
    ("mod_wsgi", "webstack_apache.py"): str(ROLES / "apache/templates/webstack_apache.py.j2"),
    ("mod_python", "service.yml"): str(EFFECTIVE_SERVICE),
    ("mod_python", "webstack_apache.py"): str(ROLES / "apache/templates/webstack_apache.py.j2"),
    ("cgi", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("gunicorn", "service.yml"): str(EFFECTIVE_SERVICE),
    ("gunicorn", "socket.yml"): str(ROLES / "app_server/templates/app_server_socket.yml.j2"),
    ("systemd_unit", "service"): "service.j2",
    ("systemd_unit", "socket"): "socket.j2",
    ("systemd_unit", "timer"): "timer.j2",
    ("systemd_unit", "handover"): "handover.j2",
}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("rendered")
    plays = []
    for case, (role, files, variables) in CASES.items():
        (out / case).mkdir()
        role_files = [str(ROLES / role / "defaults/main.yml"), str(ROLES / role / "vars/main.yml")]
        if role in APP_SERVER_VARS:
            role_files += [str(ROLES / "app_server/defaults/main.yml"), str(ROLES / "app_server/vars/main.yml")]
            service_role = "apache" if role in APACHE_ROLES else role
            if role in APACHE_ROLES:
                role_files += [str(ROLES / "apache/defaults/main.yml"), str(ROLES / "apache/vars/main.yml")]
            variables = {**APP_SERVER_VARS[role], **variables, "app_server_service": (
                "{{ lookup('ansible.builtin.template', '%s') | from_yaml }}"
                % (ROLES / service_role / "templates/service.yml.j2"))}
        case_vars = out / f"{case}.json"
        case_vars.write_text(json.dumps(variables))
        plays.append({
            "name": case, "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "vars_files": role_files + [str(case_vars)],
            "tasks": [{
                "name": f"render {case}",
                "ansible.builtin.template": {
                    "src": "{{ item.src }}",
                    "dest": str(out / case / "{{ item.dest }}"), "mode": "0644",
                },
                "loop": [{"src": str(ROLES / role / "templates" / TEMPLATE_SOURCES.get((role, name), name + ".j2")),
                          "dest": name} for name in files],
            }],
        })
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    run_local_playbook(playbook)
    return out


def read(rendered, case, name):
    return (rendered / case / name).read_text()


def without_lua(text):
    """The text with the code of every *_by_lua_block left out (Lua is not nginx syntax)."""
    kept, depth = [], 0
    for line in text.splitlines():
        if depth:
            depth += line.count("{") - line.count("}")
            if depth == 0:
                kept.append(line)
            continue
        kept.append(line)
        if re.search(r"_by_lua_block \{$", line.strip()):
            depth = 1
    return "\n".join(kept)


def nginx_statements(text):
    """Strip comments, check braces balance and every statement is terminated."""
    body = "\n".join(line.split("#", 1)[0] for line in without_lua(text).splitlines())
    depth = 0
    for char in body:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, "unbalanced }"
    assert depth == 0, "unbalanced {"
    for line in body.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("'"):
            assert stripped[-1] in ";{}'", f"unterminated nginx statement: {stripped!r}"
    return body


PYTHON_RUN = {"tornado": ("tornado_default", "webstack_tornado.py"), "gevent": ("gevent_default", "webstack_gevent.py")}
TEST_APP = """
import json, os, time
if os.environ.get("TEST_APP_FAILS"):
    raise RuntimeError("this app cannot load")
def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.5)
    seen = {key: environ.get(key) for key in ("SCRIPT_NAME", "PATH_INFO", "REMOTE_ADDR", "wsgi.url_scheme")}
    body = json.dumps({**seen, "pid": os.getpid(), "server": os.environ["WEBSTACK_SERVER"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""


def test_python_run_servers_units(rendered):
    for server, (case, runner) in PYTHON_RUN.items():
        service = yaml.safe_load(read(rendered, case, "service.yml"))
        assert service["ExecStart"] == f"/srv/hello/current/{runner}"
        assert (service["Type"], service["NotifyAccess"], service["KillMode"]) == ("notify", "main", "mixed")
        assert "ExecReload" not in service, "no graceful reload: a change restarts with the hand-over"
        source = read(rendered, case, runner)
        assert source.startswith("#!/srv/hello/releases/abc123/venv/bin/python\n"), "the release's own interpreter"
        assert 'webstack_serve.listen_socket("/run/hello.sock")' in source
        assert f'WEBSTACK_SERVER="{server}"' in source
    assert yaml.safe_load(read(rendered, "gevent_default", "service.yml"))["TimeoutStopSec"] == 15
    tcp = read(rendered, "tornado_threads_tcp", "webstack_tornado.py")
    assert 'listen_socket("127.0.0.1:9002")' in tcp and "prefork(3," in tcp and "THREADS = 4" in tcp
    assert 'WEBSTACK_WORKER_CLASS="prefork+threads"' in tcp
    assert 'WEBSTACK_WORKER_CLASS="prefork+ioloop"' in read(rendered, "tornado_default", "webstack_tornado.py")


class Runner:
    """A rendered runner started by hand in a directory of its own, as the unit would start it
    from the release: the runner, webstack_serve.py and a test app, on a unix socket there."""

    def __init__(self, rendered, server, tmp_path, env=None):
        import subprocess

        case, name = PYTHON_RUN[server]
        self.sock = tmp_path / "app.sock"
        source = read(rendered, case, name).replace('listen_socket("/run/hello.sock")', f"listen_socket({str(self.sock)!r})")
        (tmp_path / name).write_text(source)
        (tmp_path / "webstack_serve.py").write_text((ROLES / "app_server/files/webstack_serve.py").read_text())
        (tmp_path / "webstack_wsgi.py").write_text(TEST_APP)
        self.notify = tmp_path / "notify"
        import socket

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.listener.bind(str(self.notify))
        self.process = subprocess.Popen([sys.executable, str(tmp_path / name)], cwd=tmp_path, start_new_session=True,
                                        env={"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(self.notify), **(env or {})})

    def ready(self, timeout=20):
        """What the runner told systemd, or None if it said nothing in time."""
        self.listener.settimeout(timeout)
        try:
            return self.listener.recv(64)
        except TimeoutError:
            return None

    def get(self, path, timeout=10, **headers):
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.sock))
            lines = [f"GET {path} HTTP/1.0", "Host: hello.test"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    def close(self):
        """Kill whatever is left of its process group (a parent killed leaves its children)."""
        import os
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.listener.close()


@pytest.fixture
def runner(rendered, tmp_path):
    started = []

    def start(server, env=None):
        started.append(Runner(rendered, server, tmp_path, env))
        return started[-1]

    yield start
    for each in started:
        each.close()


@pytest.mark.parametrize("server", list(PYTHON_RUN))
def test_python_run_server_is_ready_only_when_serving_and_mounts_as_nginx_says(runner, server):
    app = runner(server)
    assert app.ready() == b"READY=1"
    status, seen = app.get("/pre/hello/x?q=1", X_Forwarded_Prefix="/pre", X_Real_IP="203.0.113.9",
                           X_Forwarded_Proto="https")
    assert status == 200
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/pre", "/hello/x")
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == ("203.0.113.9", "https")
    assert seen["server"] == server
    assert app.get("/prefixed/x", X_Forwarded_Prefix="/pre")[1]["PATH_INFO"] == "/prefixed/x", "only a whole segment"
    assert app.get("/x")[1]["SCRIPT_NAME"] in ("", None)


@pytest.mark.parametrize("server", list(PYTHON_RUN))
def test_python_run_server_finishes_requests_on_sigterm(runner, server):
    import os
    import signal
    import threading
    import time

    app = runner(server)
    assert app.ready() == b"READY=1"
    answers = []
    slow = threading.Thread(target=lambda: answers.append(app.get("/slow")))
    slow.start()
    time.sleep(0.4)
    app.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    slow.join(10)
    assert answers and answers[0][0] == 200, "the request under way was cut"
    assert app.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):
        os.killpg(app.process.pid, 0)  # its session holds no process: every child stopped first


@pytest.mark.parametrize("server", list(PYTHON_RUN))
def test_python_run_server_answers_a_connection_accepted_before_sigterm(runner, server):
    """nginx connects, the server accepts, SIGTERM comes, then the request: it must still be
    answered (tornado closed such a connection unanswered: one 502 in a restart under load)."""
    import signal
    import socket

    app = runner(server)
    assert app.ready() == b"READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(app.sock))
        time.sleep(0.3)  # accepted by a process now
        app.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the stop is under way
        conn.sendall(b"GET /late HTTP/1.0\r\nHost: hello.test\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"), data[:100]
    assert app.process.wait(timeout=10) == 0


@pytest.mark.parametrize("server", list(PYTHON_RUN))
def test_python_run_server_that_cannot_load_the_app_fails_its_start(runner, server):
    app = runner(server, {"TEST_APP_FAILS": "1"})
    assert app.process.wait(timeout=20) == 1
    assert app.ready(timeout=0.5) is None, "never READY"


@pytest.mark.parametrize("server", list(PYTHON_RUN))
def test_python_run_server_replaces_a_process_that_dies(runner, server):
    import os
    import signal
    import time

    app = runner(server)
    assert app.ready() == b"READY=1"
    victim = app.get("/x")[1]["pid"]
    os.kill(victim, signal.SIGKILL)
    time.sleep(2)
    pids = {app.get("/x")[1]["pid"] for _ in range(30)}
    assert victim not in pids and len(pids) >= 1
    assert app.process.poll() is None


def load_probe():
    spec = importlib.util.spec_from_file_location("probe_for_cgi", ROLES / "python_app/files/webstack_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe


def fcgiwrap_pool(tmp_path):
    """Debian's fcgiwrap with two workers on a unix socket, as the unit runs it (fds 0-2 only),
    and a CGI script that answers after 1 s."""
    import subprocess

    script = tmp_path / "slow.cgi"
    script.write_text("#!/bin/sh\nsleep 1\nprintf 'Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\ndone'\n")
    script.chmod(0o755)
    sock = tmp_path / "fcgi.sock"
    pool = subprocess.Popen(["/usr/sbin/fcgiwrap", "-c", "2", "-s", f"unix:{sock}"], start_new_session=True,
                            stdin=subprocess.DEVNULL)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    return pool, sock, script


def requests_in_flight(sock, script, workers):
    """A request to the pool for each worker, returning once every worker holds one (an fd beyond
    0-2: the connection, the CGI's pipes); a function that waits for their statuses."""
    import os
    import threading

    probe = load_probe()
    statuses = []
    threads = [threading.Thread(target=lambda: statuses.append(
        probe.probe("fastcgi", str(sock), "hello.test", "/", 10, str(script)))) for _ in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while not all(any(int(fd) > 2 for fd in os.listdir(f"/proc/{w}/fd")) for w in workers):
        assert time.monotonic() < deadline, "the workers never took the requests"
        time.sleep(0.01)
    time.sleep(0.1)  # each is relaying now: its CGI sleeps 1 s
    return lambda: [thread.join(15) for thread in threads] and statuses


@pytest.mark.parametrize("stopped_by", ["webstack_cgi_stop", "sigterm"])
def test_the_cgi_stop_lets_fcgiwrap_finish_its_replies(rendered, tmp_path, stopped_by):
    """The ExecStop of the cgi unit against the real fcgiwrap: both replies under way arrive and
    every process is gone. The control (SIGTERM to the workers, what systemd alone would do)
    shows what it prevents: fcgiwrap drops the replies (502)."""
    import os
    import signal
    import subprocess

    pool, sock, script = fcgiwrap_pool(tmp_path)
    try:
        workers = [int(pid) for pid in pathlib.Path(f"/proc/{pool.pid}/task/{pool.pid}/children").read_text().split()]
        assert len(workers) == 2
        statuses = requests_in_flight(sock, script, workers)
        if stopped_by == "sigterm":
            for worker in workers:
                os.kill(worker, signal.SIGTERM)
            assert statuses() == [502, 502], "the control: fcgiwrap drops a reply when signalled"
            return
        stopper = tmp_path / "webstack_cgi_stop.py"
        stopper.write_text(read(rendered, "cgi_default", "webstack_cgi_stop.py"))
        subprocess.run([sys.executable, str(stopper), str(pool.pid), "10"], check=True, timeout=20)
        assert statuses() == [200, 200]
        for worker in workers:
            assert not pathlib.Path(f"/proc/{worker}").exists() or "Z" in pathlib.Path(f"/proc/{worker}/stat").read_text().split()[2]
    finally:
        try:
            os.killpg(pool.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pool.wait()


def test_spawn_fcgi_unit(rendered):
    service = yaml.safe_load(read(rendered, "spawn_fcgi_default", "service.yml"))
    assert (service["Type"], service["GuessMainPID"], service["KillMode"]) == ("forking", False, "control-group")
    assert (service["User"], service["Group"]) == ("hello", "hello"), "root only in the publish step"
    script = "/srv/hello/current/webstack_spawn.py"
    assert service["ExecStart"] == f"{script} start"
    assert service["ExecStartPost"] == f"+{script} publish"
    assert service["ExecReload"] == [f"{script} start", f"+{script} publish", f"{script} retire"]
    assert service["ExecStopPost"] == "+/bin/rm -f /run/hello.sock"
    assert service["RuntimeDirectory"] == "spawn-fcgi-hello" and service["TimeoutStartSec"] == 35
    controller = read(rendered, "spawn_fcgi_default", "webstack_spawn.py")
    assert '"-F", "3"' in controller and '"-M", "0660"' in controller and '"-u"' not in controller
    assert read(rendered, "spawn_fcgi_default", "webstack_spawn_fcgi.py").startswith(
        "#!/srv/hello/releases/abc123/venv/bin/python\n")


def test_mod_wsgi_config_is_the_same_in_every_release(rendered):
    """A deploy restarts only the daemon processes when httpd.conf is unchanged: every path of a
    release in it goes through current, so two releases render the same file; other settings
    do not."""
    conf = read(rendered, "mod_wsgi_default", "httpd.conf")
    assert conf == read(rendered, "mod_wsgi_next_release", "httpd.conf")
    assert "/releases/" not in conf
    assert f"LoadModule wsgi_module /srv/hello/current/{MOD_WSGI_SO}\n" in conf
    assert "Listen 127.0.0.1:8090\n" in conf and "WSGIRestrictEmbedded On" in conf
    daemon = re.search(r"^WSGIDaemonProcess hello (.*)$", conf, re.M).group(1).split()
    assert {"processes=2", "threads=4", "python-home=/srv/hello/current/venv", "listen-backlog=2048"} <= set(daemon)
    other = read(rendered, "mod_wsgi_overrides", "httpd.conf")
    assert other != conf and "processes=3 threads=1" in other and "Listen [::1]:8090\n" in other
    assert read(rendered, "mod_wsgi_default", "webstack_mod_wsgi.py") != read(
        rendered, "mod_wsgi_next_release", "webstack_mod_wsgi.py"), "the script names its release"


def test_mod_wsgi_unit(rendered):
    service = yaml.safe_load(read(rendered, "mod_wsgi_default", "service.yml"))
    script = "/srv/hello/current/webstack_apache.py"
    assert (service["Type"], service["User"], service["Group"]) == ("exec", "hello", "hello")
    assert service["ExecStartPre"] == f"{script} prepare"
    assert service["ExecStart"] == "/usr/sbin/apache2 -DFOREGROUND -f /run/apache-hello/httpd.conf"
    assert service["ExecStartPost"] == f"{script} ready $MAINPID"
    assert service["ExecReload"] == f"{script} reload $MAINPID"
    assert service["EnvironmentFile"] is None, "the daemon processes read the env file when they start"
    assert (service["KillSignal"], service["KillMode"]) == ("SIGWINCH", "mixed")
    assert service["RuntimeDirectory"] == "apache-hello"
    helper = read(rendered, "mod_wsgi_default", "webstack_apache.py")
    assert helper.startswith("#!/usr/bin/python3\n") and "PROCESSES = 2\n" in helper
    compile(helper, "webstack_apache.py", "exec")
    compile(read(rendered, "mod_wsgi_default", "webstack_mod_wsgi.py"), "webstack_mod_wsgi.py", "exec")


def test_mod_python_config_and_unit(rendered):
    """mod_python: prefork children with the app embedded, found through PYTHONPATH (no
    PythonPath, which mod_python would apply again on a request); the unit restarts Apache
    gracefully on a reload and waits for the children."""
    conf = read(rendered, "mod_python_default", "httpd.conf")
    assert "LoadModule mpm_prefork_module" in conf and "LoadModule python_module" in conf
    assert not re.search(r"^\s*PythonPath", conf, re.M) and "PythonImport webstack_mod_python main_interpreter" in conf
    for line in ("StartServers 3", "MaxRequestWorkers 3", "Listen 127.0.0.1:8091", "PythonHandler webstack_mod_python\n"):
        assert line in conf
    assert "/releases/" not in conf
    service = yaml.safe_load(read(rendered, "mod_python_default", "service.yml"))
    assert "PYTHONPATH=/srv/hello/current" in service["Environment"]
    assert service["ExecReload"] == "/srv/hello/current/webstack_apache.py reload $MAINPID"
    helper = read(rendered, "mod_python_default", "webstack_apache.py")
    assert "DAEMONS = False\n" in helper and "PROCESSES = 3\n" in helper
    assert "DAEMONS = True\n" in read(rendered, "mod_wsgi_default", "webstack_apache.py")
    module = read(rendered, "mod_python_default", "webstack_mod_python.py")
    compile(module, "webstack_mod_python.py", "exec")
    assert 'CURRENT = "/srv/hello/current"' in module and "/run/apache-hello" in module


class SpawnFcgi:
    """Debian's spawn-fcgi run by the rendered webstack_spawn.py as the unit runs it: start and
    retire as the app's user (nobody here), publish as root. In a world-readable directory of
    its own: releases of a test app with flup beside it, a current symlink, the runtime directory
    (nobody's), the socket. Everything runs the host's python3 (the test venv's is not nobody's
    to run)."""

    def __init__(self, rendered):
        import grp
        import os
        import shutil
        import tempfile

        import flup

        self.base = pathlib.Path(tempfile.mkdtemp(prefix="webstack-spawn-"))
        self.base.chmod(0o755)
        (self.base / "run").mkdir(mode=0o711)
        os.chown(self.base / "run", 65534, 65534)
        self.sock = self.base / "app.sock"
        self.flup = pathlib.Path(flup.__file__).parent
        self.www_data = grp.getgrnam("www-data").gr_gid
        self.copy = shutil.copytree
        paths = {'"/run/hello.sock"': repr(str(self.sock)), "/srv/hello/current": str(self.base / "current"),
                 '"/run/spawn-fcgi-hello"': repr(str(self.base / "run"))}
        controller = read(rendered, "spawn_fcgi_default", "webstack_spawn.py")
        self.runner = read(rendered, "spawn_fcgi_default", "webstack_spawn_fcgi.py").replace(
            "#!/srv/hello/releases/abc123/venv/bin/python", "#!/usr/bin/python3")
        for old, new in paths.items():
            controller, self.runner = controller.replace(old, new), self.runner.replace(old, new)
        self.controller = self.base / "webstack_spawn.py"
        self.controller.write_text(controller)
        self.controller.chmod(0o755)

    def release(self, name, app=TEST_APP):
        """A release directory: the runner, the app, flup; current points at it."""
        release = self.base / name
        (release / "src").mkdir(parents=True)
        (release / "webstack_spawn_fcgi.py").write_text(self.runner)
        (release / "webstack_wsgi.py").write_text(app.replace("json.dumps({", "json.dumps({'release': %r, " % name))
        self.copy(self.flup, release / "flup")
        for path in [release, *release.rglob("*")]:
            path.chmod(0o755)
        current = self.base / "current.new"
        current.symlink_to(release)
        current.rename(self.base / "current")

    def run(self, action, env=None):
        """The unit's steps for action (start: start, publish; reload: start, publish, retire),
        each as the unit runs it, until one fails: its exit and the output (a file: the
        processes keep the controller's stderr, the journal)."""
        import subprocess
        import types

        steps = {"start": ["start", "publish"], "reload": ["start", "publish", "retire"]}[action]
        log = self.base / f"{action}.log"
        with log.open("w") as out:
            for step in steps:
                as_user = [] if step == "publish" else ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
                done = subprocess.run([*as_user, "/usr/bin/python3", str(self.controller), step],
                                      stdout=out, stderr=subprocess.STDOUT, timeout=60, cwd=self.base,
                                      env={"PATH": "/usr/bin:/bin", **(env or {})})
                if done.returncode:
                    break
        time.sleep(0.2)  # what the processes print after it exits
        return types.SimpleNamespace(returncode=done.returncode, output=log.read_text())

    def get(self, path="/"):
        with socket_connection(self.sock) as conn:
            probe = load_probe()
            conn.sendall(probe.request_bytes("fastcgi", "hello.test", path))
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        head, _, body = probe.fastcgi_stdout(data).partition(b"\r\n\r\n")
        return probe.status_of(head), json.loads(body) if body else None

    def processes(self):
        return [p for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and self._ours(p)]

    def _ours(self, proc):
        try:
            return str(self.base) in (proc / "cmdline").read_text()
        except OSError:
            return False

    def close(self):
        import os
        import shutil
        import signal

        for proc in self.processes():
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


def socket_connection(path):
    import socket

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(path))
    return conn


@pytest.fixture
def spawn_fcgi(rendered):
    server = SpawnFcgi(rendered)
    yield server
    server.close()


def test_spawn_fcgi_starts_its_processes_as_the_app_user_on_a_root_www_data_socket(spawn_fcgi):
    spawn_fcgi.release("r1")
    result = spawn_fcgi.run("start")
    assert result.returncode == 0, result.output
    stat = spawn_fcgi.sock.stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (0, spawn_fcgi.www_data, 0o660)
    processes = spawn_fcgi.processes()
    assert len(processes) == 3, result.output
    assert {p.stat().st_uid for p in processes} == {65534}, "each process dropped to the app's user"
    status, seen = spawn_fcgi.get("/x/y")
    assert status == 200 and seen["release"] == "r1" and seen["server"] == "spawn-fcgi"
    assert seen["PATH_INFO"] == "/x/y"
    assert [p.name for p in spawn_fcgi.base.iterdir() if p.name.startswith("app.sock")] == ["app.sock"]


def test_spawn_fcgi_reload_under_load_fails_no_request(spawn_fcgi):
    """A reload onto a new release while requests run (one slow one under way): every request
    answers 200, the new release answers after it, and the old processes are gone when the
    reload returns."""
    import threading

    spawn_fcgi.release("r1")
    assert spawn_fcgi.run("start").returncode == 0
    old = {p.name for p in spawn_fcgi.processes()}
    statuses, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                statuses.append(spawn_fcgi.get("/api")[0])
            except OSError as error:
                statuses.append(repr(error))

    slow = threading.Thread(target=lambda: statuses.append(spawn_fcgi.get("/slow")[0]))
    workers = [threading.Thread(target=load) for _ in range(2)]
    for thread in [slow, *workers]:
        thread.start()
    time.sleep(0.5)
    spawn_fcgi.release("r2")
    result = spawn_fcgi.run("reload")
    time.sleep(0.5)
    stop.set()
    for thread in [slow, *workers]:
        thread.join(20)
    assert result.returncode == 0, result.output
    assert len(statuses) > 50 and set(statuses) == {200}, [s for s in statuses if s != 200][:5]
    assert not old & {p.name for p in spawn_fcgi.processes()}, "the old set exited before the reload returned"
    assert spawn_fcgi.get("/")[1]["release"] == "r2"


def test_spawn_fcgi_processes_end_on_sigterm_after_serving(spawn_fcgi):
    """A connection wakes every process of the set and one takes it: the others must not wait in
    accept() for the next one, deaf to the SIGTERM of a stop (then systemd kills them at
    TimeoutStopSec)."""
    import os
    import signal

    spawn_fcgi.release("r1")
    assert spawn_fcgi.run("start").returncode == 0
    for _ in range(3):
        assert spawn_fcgi.get("/")[0] == 200
    processes = spawn_fcgi.processes()
    assert len(processes) == 3
    for proc in processes:
        os.kill(int(proc.name), signal.SIGTERM)
    deadline = time.monotonic() + 5
    while spawn_fcgi.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spawn_fcgi.processes(), "a process outlived its SIGTERM by 5 s"


def test_a_spawn_fcgi_reload_that_cannot_load_the_app_keeps_the_old_set(spawn_fcgi):
    spawn_fcgi.release("r1")
    assert spawn_fcgi.run("start").returncode == 0
    spawn_fcgi.release("r3")
    result = spawn_fcgi.run("reload", env={"TEST_APP_FAILS": "1"})
    assert result.returncode != 0
    assert "0 of 3 processes loaded the app" in result.output
    assert "this app cannot load" in result.output, "the processes' traceback reaches the journal"
    assert spawn_fcgi.get("/")[1]["release"] == "r1", "the old set still serves"
    time.sleep(1.5)
    assert len(spawn_fcgi.processes()) == 3, "nothing of the failed set is left"
    assert [p.name for p in spawn_fcgi.base.iterdir() if p.name.startswith("app.sock")] == ["app.sock"]
    assert not list((spawn_fcgi.base / "run").glob("socket.*")), "its socket is gone too"


def test_nginx_names_the_cgi_script_only_for_the_cgi_app(rendered):
    text = read(rendered, "nginx_cgi", "site.conf")
    found = {loc: body for loc, body in re.findall(r"location ([^{]+?) \{(.*?)\n    \}", text, re.S)}
    script = "fastcgi_param SCRIPT_FILENAME /srv/old/current/webstack_cgi.py;"
    assert script in found["/old/"] and script in found["/old/admin/"]
    [check] = [body for loc, body in found.items() if loc.startswith("= /_webstack_access/")]
    assert script in check, "the auth_request subrequest runs the same script"
    assert "SCRIPT_FILENAME" not in found["/"], "a FastCGI app that is its own server gets none"


# server (servers.yml) -> a case that renders its unit
SERVER_UNIT_CASES = {
    "gunicorn": "gunicorn_sync", "uwsgi": "uwsgi_default", "fastcgi": "flup_fastcgi", "scgi": "flup_scgi_tcp",
    "tornado": "tornado_default", "gevent": "gevent_default", "cgi": "cgi_default",
    "spawn-fcgi": "spawn_fcgi_default", "mod_wsgi": "mod_wsgi_default", "mod_python": "mod_python_default",
}


@pytest.mark.parametrize("server", list(SERVER_UNIT_CASES))
def test_the_server_tables_stop_is_what_its_unit_does(rendered, server):
    """A server switch stops the server leaving the way the server table says (stop_leaving.yml):
    its unit's ExecStop script, or its KillSignal to whom its KillMode sends it."""
    table = yaml.safe_load((ROLES / "python_app/vars/main/servers.yml").read_text())["_python_app_servers"]
    assert set(SERVER_UNIT_CASES) == set(table), "a case per server of the table"
    default = yaml.safe_load((ROLES / "python_app/vars/main/main.yml").read_text())["_python_app_default_stop"]
    stop = table[server].get("stop", default)
    service = yaml.safe_load(read(rendered, SERVER_UNIT_CASES[server], "service.yml"))
    if "script" in stop:
        assert service["ExecStop"].split()[0].endswith("/" + stop["script"])
    else:
        assert "ExecStop" not in service
        assert service.get("KillSignal", "SIGTERM") == stop["signal"]
        assert {"mixed": "main", "control-group": "all"}[service.get("KillMode", "control-group")] == stop["whom"]


def test_cgi_unit_runs_a_per_app_fcgiwrap(rendered):
    service = yaml.safe_load(read(rendered, "cgi_default", "service.yml"))
    assert service["ExecStart"] == "/usr/sbin/fcgiwrap -c 3"
    assert (service["User"], service["Group"]) == ("hello", "hello"), "the app's user, never www-data"
    assert service["ExecStop"] == "/srv/hello/current/webstack_cgi_stop.py $MAINPID 30", "workers stop when idle"
    assert service["KillMode"] == "control-group" and service["TimeoutStopSec"] == 35
    assert "ExecReload" not in service
    socket = yaml.safe_load(read(rendered, "cgi_default", "socket.yml"))
    assert (socket["ListenStream"], socket["SocketGroup"], socket["SocketMode"]) == ("/run/hello.sock", "www-data", "0660")


def test_the_cgi_script_serves_one_request_with_the_apps_env(rendered, tmp_path):
    """The rendered script run as fcgiwrap runs it: CGI variables and the body on stdin, the
    answer on stdout. The app's variables come from the env file (systemd's quoting) where the
    request has none."""
    import os
    import subprocess

    spec = importlib.util.spec_from_file_location("filters_for_cgi", ROOT / "plugins/filter/webstack.py")
    filters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(filters)
    awkward = "two\nlines \"q\" $HOME `id` back\\slash"
    env_file = tmp_path / "env"
    inject = 'x"\nEVIL=1'
    env_file.write_text(f"# managed\nAPP_SECRET={filters.systemd_env_value(awkward)}\n"
                        f"INJECT={filters.systemd_env_value(inject)}\nREQUEST_METHOD=\"PUT\"\n")
    source = read(rendered, "cgi_default", "webstack_cgi.py").replace('"/srv/hello/shared/env"', repr(str(env_file)))
    (tmp_path / "webstack_cgi.py").write_text(source)
    (tmp_path / "webstack_serve.py").write_text((ROLES / "app_server/files/webstack_serve.py").read_text())
    (tmp_path / "webstack_wsgi.py").write_text(
        "import json, os, sys\n"
        "def application(environ, start_response):\n"
        "    body = json.dumps({k: os.environ.get(k) for k in ('APP_SECRET', 'INJECT', 'EVIL', 'WEBSTACK_SERVER')}\n"
        "                      | {'method': environ['REQUEST_METHOD'], 'path': environ['PATH_INFO'],\n"
        "                         'script': environ['SCRIPT_NAME'], 'body': environ['wsgi.input'].read(5).decode()}).encode()\n"
        "    start_response('201 Created', [('Content-Type', 'application/json')])\n"
        "    return [body]\n")
    request = {"PATH": "/usr/bin:/bin", "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/pre", "PATH_INFO": "/x",
               "CONTENT_LENGTH": "5", "SERVER_NAME": "hello.test", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "GATEWAY_INTERFACE": "CGI/1.1"}
    done = subprocess.run([sys.executable, str(tmp_path / "webstack_cgi.py")], input=b"a=1&b", capture_output=True,
                          env=request, cwd=tmp_path, timeout=30, check=True)
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 201 Created"), done.stdout
    seen = json.loads(body)
    assert seen["APP_SECRET"] == awkward and seen["INJECT"] == inject and seen["EVIL"] is None
    assert (seen["method"], seen["path"], seen["script"], seen["body"]) == ("POST", "/x", "/pre", "a=1&b")
    assert seen["WEBSTACK_SERVER"] == "cgi"
    assert not (tmp_path / "__pycache__").exists(), "no bytecode written into the release"


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if v[0] == "nginx"])
def test_nginx_files_are_well_formed_and_managed(rendered, case):
    for name in NGINX_FILES:
        text = read(rendered, case, name)
        assert text.startswith("#"), f"{name} lacks the ansible_managed header"
        nginx_statements(text)


def test_nginx_conf_defaults(rendered):
    conf = read(rendered, "nginx_default", "nginx.conf")
    assert re.search(r"^user www-data;", conf, re.M)
    assert "worker_processes auto;" in conf
    assert "worker_connections 1024;" in conf
    assert "worker_rlimit_nofile 2048;" in conf
    assert "server_tokens off;" in conf
    assert "gzip on;" in conf and "image/svg+xml" in conf
    assert "include /etc/nginx/sites-enabled/*.conf;" in conf


def test_nginx_conf_options(rendered):
    conf = read(rendered, "nginx_tcp_keepalive", "nginx.conf")
    assert "worker_rlimit_nofile 8192;" in conf, "rlimit follows 2 x worker_connections"
    assert "server_tokens on;" in conf
    assert "gzip off;" in conf and "gzip_types" not in conf
    assert "    map_hash_bucket_size 128;" in conf


def test_unix_site_proxies_and_serves_static(rendered):
    site = read(rendered, "nginx_default", "site.conf")
    assert "server unix:/run/hello.sock fail_timeout=0;" in site
    assert "keepalive" not in site and "proxy_http_version" not in site
    assert "proxy_pass http://hello_app;" in site
    assert "server_name localhost hello.test;" in site
    assert "listen 80;" in site and "[::]" not in site
    static = re.search(r"location /static/ \{(.*?)\}", site, re.S).group(1)
    assert "alias /srv/hello/current/src/hello/static/;" in static
    assert "expires 7d;" in static
    assert "Cache-Control" not in static, "expires already sends Cache-Control"


def test_every_block_that_adds_headers_repeats_the_security_headers(rendered):
    for case in ("nginx_default", "nginx_tcp_keepalive"):
        site = nginx_statements(read(rendered, case, "site.conf"))
        for block in re.findall(r"location [^{]+\{([^}]*)\}", site):
            if "add_header" in block:
                assert "webstack-security-headers.conf" in block, block


def test_tcp_site_keepalive_needs_all_three(rendered):
    site = read(rendered, "nginx_tcp_keepalive", "site.conf")
    assert "keepalive 16;" in site
    assert "proxy_http_version 1.1;" in site
    assert 'proxy_set_header Connection "";' in site
    assert "listen 8080;" in site and "listen [::]:8080;" in site
    assert "proxy_read_timeout 5s;" in site and "client_max_body_size 1m;" in site
    assert "location /static/" not in site


def test_default_deny_covers_every_site_port(rendered):
    deny = read(rendered, "nginx_tcp_keepalive", "default-deny.conf")
    assert "listen 80 default_server;" in deny and "listen 8080 default_server;" in deny
    assert "listen [::]:8080 default_server;" in deny
    assert deny.count("return 444;") == 2
    assert "[::]" not in read(rendered, "nginx_default", "default-deny.conf")


def test_security_headers_are_always_sent(rendered):
    headers = read(rendered, "nginx_default", "security-headers.conf")
    assert 'add_header X-Content-Type-Options "nosniff" always;' in headers
    csp = re.search(r'add_header Content-Security-Policy "([^"]+)" always;', headers).group(1)
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    custom = read(rendered, "nginx_tcp_keepalive", "security-headers.conf")
    assert [line for line in custom.splitlines() if line.startswith("add_header")] == [
        'add_header X-Frame-Options "DENY" always;'
    ]


def load_gunicorn(path):
    """Load a rendered config the way gunicorn does: run it, keep the names it knows."""
    cfg = Config()
    for name, value in runpy.run_path(str(path)).items():
        if name in cfg.settings:
            cfg.set(name, value)
    return cfg


def test_gunicorn_sync_config(rendered):
    cfg = load_gunicorn(rendered / "gunicorn_sync" / "gunicorn.conf.py")
    assert cfg.workers == 5
    assert cfg.worker_class_str == "sync"
    assert cfg.bind == ["unix:/run/hello.sock"]
    assert cfg.wsgi_app == "hello:create_app()"
    assert cfg.forwarded_allow_ips == ["*"], "only nginx can open the socket"
    assert cfg.control_socket_disable is True
    assert cfg.accesslog is None, "nginx logs every request; no second log by default"
    assert "WEBSTACK_RELEASE_ID=abc123" in cfg.raw_env
    assert "threads =" not in read(rendered, "gunicorn_sync", "gunicorn.conf.py")
    assert cfg.preload_app is True, "a master that says it is ready serves at once (the hand-over)"


def test_gunicorn_gthread_tcp_config(rendered):
    cfg = load_gunicorn(rendered / "gunicorn_gthread_tcp" / "gunicorn.conf.py")
    assert cfg.worker_class_str == "gthread" and cfg.threads == 8 and cfg.workers == 3
    assert cfg.bind == ["0.0.0.0:8000"]
    assert cfg.forwarded_allow_ips == ["127.0.0.1", "::1"]
    assert cfg.control_socket == "/run/hello-gunicorn/gunicorn.ctl"
    assert cfg.control_socket_disable is False
    assert cfg.preload_app is True and cfg.limit_request_line == 8190
    assert cfg.graceful_timeout == 50
    assert cfg.accesslog == "/var/log/hello/access.log", "the app's access_log overrides the role's"
    assert "WEBSTACK_WORKER_CLASS=gthread" in cfg.raw_env


def test_gunicorn_gevent_config(rendered):
    cfg = load_gunicorn(rendered / "gunicorn_gevent" / "gunicorn.conf.py")
    assert cfg.worker_class_str == "gevent"
    assert cfg.accesslog is None
    assert cfg.preload_app is False, "gevent must patch before the app imports"


@pytest.mark.parametrize("case", ["gunicorn_sync", "gunicorn_gthread_tcp", "gunicorn_gevent"])
def test_gunicorn_unit_spec(rendered, case):
    service = yaml.safe_load(read(rendered, case, "service.yml"))
    cfg = load_gunicorn(rendered / case / "gunicorn.conf.py")
    assert service["Type"] == "notify" and service["KillMode"] == "mixed"
    assert service["TimeoutStopSec"] > cfg.graceful_timeout
    assert service["ExecStart"] == "/srv/hello/current/venv/bin/gunicorn --config /srv/hello/current/gunicorn.conf.py"
    assert service["User"] == "hello" and service["EnvironmentFile"] == "/srv/hello/shared/env"
    if case == "gunicorn_gthread_tcp":  # the only case with the control socket on
        assert service["RuntimeDirectory"] == "hello-gunicorn", "never the socket's directory"
    else:
        assert "RuntimeDirectory" not in service, "nothing to keep there without the control socket"


def test_gunicorn_socket_spec(rendered):
    unix = yaml.safe_load(read(rendered, "gunicorn_sync", "socket.yml"))
    assert unix["ListenStream"] == "/run/hello.sock"
    assert (unix["SocketUser"], unix["SocketGroup"], unix["SocketMode"]) == ("root", "www-data", "0660")
    tcp = yaml.safe_load(read(rendered, "gunicorn_gthread_tcp", "socket.yml"))
    assert tcp["ListenStream"] == "0.0.0.0:8000" and "SocketGroup" not in tcp
    assert tcp["FreeBind"] is True and "FreeBind" not in unix


@pytest.mark.parametrize("case", ["uwsgi_default", "flup_fastcgi", "flup_scgi_tcp"])
def test_tcp_sockets_bind_before_their_address_is_up(rendered, case):
    spec = yaml.safe_load(read(rendered, case, "socket.yml"))
    assert spec.get("FreeBind", False) is (not spec["ListenStream"].startswith("/"))


def unit_lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_unit_with_socket(rendered):
    lines = unit_lines(read(rendered, "unit_socket", "service"))
    assert "Requires=hello.socket" in lines and "After=hello.socket" in lines
    assert "After=network.target" in lines
    assert "Environment=A=1" in lines and "Environment=B=2" in lines
    assert "PrivateUsers=yes" in lines and "NoNewPrivileges=yes" in lines
    assert "ProtectHome=read-only" in lines and "ProtectHome=yes" not in lines
    assert not any(line.startswith("ProtectSystem=") for line in lines), "null removes the key"
    assert "SystemCallFilter=@system-service" in lines
    assert "CapabilityBoundingSet=" in lines
    assert lines.index("[Service]") < lines.index("ExecStart=/bin/true") < lines.index("[Install]")
    keys = [line.split("=", 1)[0] for line in lines if "=" in line]
    repeated = {k for k in keys if keys.count(k) > 1} - {"Environment", "After", "SystemCallFilter"}
    assert not repeated, f"keys rendered twice: {repeated}"
    socket = unit_lines(read(rendered, "unit_socket", "socket"))
    assert "ListenStream=/run/hello.sock" in socket and "SocketMode=0660" in socket
    assert "WantedBy=sockets.target" in socket


def test_the_hand_over_unit_runs_the_named_release_on_the_service_socket(rendered):
    lines = unit_lines(read(rendered, "unit_handover", "handover"))
    assert "Sockets=hello.socket" in lines, "the socket unit's own listening fds"
    assert "Requires=hello.socket" in lines and "After=hello.socket" in lines
    assert "ExecStart=/srv/hello/releases/%i/venv/bin/gunicorn --config /srv/hello/releases/%i/gunicorn.conf.py" in lines
    assert "WorkingDirectory=/srv/hello/releases/%i/src" in lines
    assert "Environment=HOME_PAGE=/srv/hello/currently" in lines, "only paths under current move"
    assert "ExecReload=/bin/kill -s HUP $MAINPID" in lines and "Type=notify" in lines
    assert "RuntimeDirectoryPreserve=yes" in lines, "stopping it must not remove the service's runtime directory"
    assert "NoNewPrivileges=yes" in lines and "ProtectSystem=strict" in lines, "the same sandbox"
    assert "[Install]" not in lines, "only python_app starts it, never boot"
    service = unit_lines(read(rendered, "unit_handover", "service"))
    assert "ExecStart=/srv/hello/current/venv/bin/gunicorn --config /srv/hello/current/gunicorn.conf.py" in service
    assert not any(line.startswith("Sockets=") for line in service)


def test_unit_without_socket(rendered):
    lines = unit_lines(read(rendered, "unit_plain", "service"))
    assert not any(line.startswith("Requires=") for line in lines)
    assert "Restart=always" in lines and "ProtectSystem=strict" in lines


@pytest.mark.parametrize(
    ("case", "directive", "params", "timeout"),
    [
        ("nginx_uwsgi", "uwsgi_pass uw_app;", "webstack-uwsgi-params.conf", "uwsgi_read_timeout"),
        ("nginx_fastcgi_tcp", "fastcgi_pass fc_app;", "webstack-fastcgi-params.conf", "fastcgi_read_timeout"),
        ("nginx_scgi", "scgi_pass sc_app;", "webstack-scgi-params.conf", "scgi_read_timeout"),
    ],
)
def test_each_protocol_gets_its_pass_params_and_timeout(rendered, case, directive, params, timeout):
    site = nginx_statements(read(rendered, case, "site.conf"))
    assert directive in site
    assert f"include /etc/nginx/snippets/{params};" in site
    assert f"{timeout} 60s;" in site
    assert "proxy_" not in site


def test_fastcgi_keepalive_keeps_the_connection(rendered):
    site = read(rendered, "nginx_fastcgi_tcp", "site.conf")
    assert "keepalive 4;" in site and "fastcgi_keep_conn on;" in site
    assert "fastcgi_keep_conn" not in read(rendered, "nginx_scgi", "site.conf")


def params(text, directive):
    return dict(re.findall(rf"^{directive} (\S+) (.+);$", text, re.M))


@pytest.mark.parametrize(("case", "directive"), [
    ("nginx_uwsgi", "uwsgi_param"), ("nginx_fastcgi_tcp", "fastcgi_param"), ("nginx_scgi", "scgi_param"),
])
def test_an_app_at_the_root_gets_the_whole_path_as_path_info(rendered, case, directive):
    site = params(read(rendered, case, "site.conf").replace("        ", ""), directive)
    assert site["SCRIPT_NAME"] == '""'
    assert site["PATH_INFO"] == "$document_uri"
    assert site["HTTP_X_FORWARDED_PREFIX"] == '""', "the client cannot claim a prefix"


@pytest.mark.parametrize(("name", "directive"), [
    ("uwsgi-params.conf", "uwsgi_param"), ("fastcgi-params.conf", "fastcgi_param"), ("scgi-params.conf", "scgi_param"),
])
def test_params_snippets_leave_script_name_and_path_info_to_the_site(rendered, name, directive):
    found = params(read(rendered, "nginx_default", name), directive)
    assert "SCRIPT_NAME" not in found and "PATH_INFO" not in found
    assert "include /etc/nginx/uwsgi_params;" not in read(rendered, "nginx_default", name), "Debian's sets PATH_INFO"


def test_fastcgi_params_hide_the_version(rendered):
    assert params(read(rendered, "nginx_default", "fastcgi-params.conf"), "fastcgi_param")["SERVER_SOFTWARE"] == "nginx"


def location(site, prefix):
    return re.search(rf"\n    location {re.escape(prefix)} \{{(.*?)\n    \}}", site, re.S).group(1)


def test_apps_under_prefixes_share_one_server(rendered):
    site = nginx_statements(read(rendered, "nginx_prefixed", "site.conf"))
    assert site.count("server {") == 1 and site.count("server_name ") == 1
    for name in ("hello", "blog-uw", "wiki", "forum", "api"):
        assert f"upstream {name}_app {{" in site
    root = location(site, "/")
    assert "proxy_pass http://hello_app;" in root and "SCRIPT_NAME" not in root
    assert 'proxy_set_header X-Forwarded-Prefix "";' in root
    blog = location(site, "/blog/")
    assert "uwsgi_pass blog-uw_app;" in blog
    assert 'uwsgi_param SCRIPT_NAME "/blog";' in blog
    assert "uwsgi_param PATH_INFO $webstack_blog_uw_path_info;" in blog
    assert 'uwsgi_param HTTP_X_FORWARDED_PREFIX "/blog";' in blog
    assert "fastcgi_param PATH_INFO $webstack_wiki_path_info;" in location(site, "/wiki/v1.0/")
    assert "scgi_param SCRIPT_NAME \"/forum\";" in location(site, "/forum/")
    api = location(site, "/api/")
    assert "proxy_set_header SCRIPT_NAME /api;" in api and 'proxy_set_header X-Forwarded-Prefix "/api";' in api
    assert "proxy_http_version 1.1;" in api and "keepalive 8;" in site
    assert "alias /srv/blog-uw/current/src/static/;" in location(site, "/blog/static/")
    assert "No app at the root" not in read(rendered, "nginx_prefixed", "site.conf"), "no catch-all 404 at the root"


@pytest.mark.parametrize(("prefix", "uri", "path_info"), [
    ("/blog/", "/blog/", "/"), ("/blog/", "/blog/2024/hello", "/2024/hello"), ("/wiki/v1.0/", "/wiki/v1.0/a.b", "/a.b"),
])
def test_the_path_info_map_strips_exactly_the_prefix(rendered, prefix, uri, path_info):
    site = read(rendered, "nginx_prefixed", "site.conf")
    name = {"/blog/": "blog_uw", "/wiki/v1.0/": "wiki"}[prefix]
    block = re.search(rf"map \$uri \$webstack_{name}_path_info \{{(.*?)\}}", site, re.S).group(1)
    pattern, value = re.search(r'"~(.*)" (\S+);', block).groups()
    match = re.match(pattern.replace("(?<", "(?P<"), uri)
    assert match and match.group(value.lstrip("$")) == path_info
    assert not re.match(pattern.replace("(?<", "(?P<"), "/other" + uri)
    assert "default $uri;" in block


def test_a_server_without_a_root_app_answers_404_there(rendered):
    site = nginx_statements(read(rendered, "nginx_no_root", "site.conf"))
    assert "return 404;" in location(site, "/")
    assert 'scgi_param SCRIPT_NAME "/app";' in location(site, "/app/")


@pytest.mark.parametrize(("name", "directive"), [
    ("uwsgi-params.conf", "uwsgi_param"), ("fastcgi-params.conf", "fastcgi_param"), ("scgi-params.conf", "scgi_param"),
])
def test_non_http_protocols_forward_what_nginx_saw(rendered, name, directive):
    found = params(read(rendered, "nginx_default", name), directive)
    assert found["HTTP_X_FORWARDED_FOR"] == "$proxy_add_x_forwarded_for"
    assert found["HTTP_X_FORWARDED_PROTO"] == "$scheme"


def ini_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("#", ";"))]


def test_uwsgi_ini_defaults(rendered):
    lines = ini_lines(read(rendered, "uwsgi_default", "uwsgi.ini"))
    assert lines[0] == "[uwsgi]"
    for line in ("master = true", "need-app = true", "die-on-term = true", "strict = true",
                 "processes = 5", "buffer-size = 32768", "listen = 1024", "harakiri = 30", "max-requests = 0",
                 "wsgi-file = /srv/hello/releases/abc123/webstack_wsgi.py",
                 "virtualenv = /srv/hello/releases/abc123/venv", "chdir = /srv/hello/releases/abc123/src",
                 "socket = /run/hello.sock",
                 "env = WEBSTACK_RELEASE_ID=abc123", "env = WEBSTACK_SERVER=uwsgi",
                 "disable-logging = true",
                 # A stop lets workers finish their request (die-on-term alone kills them mid-request).
                 "hook-master-start = unix_signal:15 gracefully_kill_them_all"):
        assert line in lines, line
    assert not any(line.startswith("threads") for line in lines)
    # The systemd socket, named so that a graceful reload finds it again; no HTTP listener.
    assert [line for line in lines if line.startswith(("socket", "http"))] == ["socket = /run/hello.sock"]


def test_uwsgi_ini_overrides_and_extra_options(rendered):
    lines = ini_lines(read(rendered, "uwsgi_threads", "uwsgi.ini"))
    assert "processes = 2" in lines and "threads = 4" in lines
    assert not any(line.startswith("harakiri") for line in lines)
    assert "route = ^/a break:403" in lines and "route = ^/b break:404" in lines
    assert "memory-report = true" in lines and "stats = /run/x.stats" in lines
    assert "env = WEBSTACK_WORKER_CLASS=prefork+threads" in lines
    assert not any(line.startswith("disable-logging") for line in lines), "the app's log_requests turns it back on"


def test_uwsgi_unit_spec(rendered):
    service = yaml.safe_load(read(rendered, "uwsgi_default", "service.yml"))
    assert service["Type"] == "notify"
    assert service["ExecStart"] == "/srv/hello/current/venv/bin/uwsgi --ini /srv/hello/current/uwsgi.ini"
    assert service["ExecReload"] == "/bin/kill -s HUP $MAINPID"
    assert service["TimeoutStopSec"] == 40
    socket = yaml.safe_load(read(rendered, "uwsgi_default", "socket.yml"))
    assert (socket["SocketGroup"], socket["SocketMode"]) == ("www-data", "0660")


@pytest.mark.parametrize(("case", "module"), [("flup_fastcgi", "fcgi_fork"), ("flup_scgi_tcp", "scgi_fork")])
def test_flup_runner_compiles_and_uses_the_prefork_server(rendered, case, module):
    source = read(rendered, case, "webstack_flup.py")
    compile(source, case, "exec")
    assert f"from flup.server.{module} import WSGIServer" in source
    assert "socket.socket(fileno=SD_LISTEN_FDS_START)" in source
    assert "umask=0o117" in source


def test_flup_runner_settings(rendered):
    unix = read(rendered, "flup_fastcgi", "webstack_flup.py")
    assert 'bind = "/run/hello.sock"' in unix
    assert "maxChildren=8," in unix and "maxSpare=3," in unix and "minSpare=1," in unix
    tcp = read(rendered, "flup_scgi_tcp", "webstack_flup.py")
    assert '"127.0.0.1:9001".rsplit(":", 1)' in tcp and "maxChildren=2," in tcp
    assert 'WEBSTACK_SERVER="flup-scgi"' in tcp
    service = yaml.safe_load(read(rendered, "flup_fastcgi", "service.yml"))
    assert service["ExecStart"] == "/srv/hello/current/webstack_flup.py"
    assert service["Type"] == "notify", "ready once the app is loaded, for the hand-over"
    assert unix.startswith("#!/srv/hello/releases/abc123/venv/bin/python\n"), "the release's own interpreter"
    assert "ExecReload" not in service, "flup has no graceful reload"


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if v[0] == "nginx"])
def test_the_upstream_never_gets_the_raw_host_header(rendered, case):
    """$http_host is whatever the client sent ("localhost:evil.example"); $host is the matched name."""
    for name in NGINX_FILES:
        assert "$http_host" not in nginx_statements(read(rendered, case, name)), f"{case}/{name} passes the raw Host"
    proxy = read(rendered, case, "proxy-params.conf")
    assert "proxy_set_header Host $host;" in proxy and "proxy_set_header X-Forwarded-Host $host;" in proxy
    for name, directive in (("uwsgi-params.conf", "uwsgi_param"), ("fastcgi-params.conf", "fastcgi_param"),
                            ("scgi-params.conf", "scgi_param")):
        found = params(read(rendered, case, name), directive)
        assert found["HTTP_HOST"] == found["HTTP_X_FORWARDED_HOST"] == "$host", name


def upstream_block(text, name):
    return re.search(r"upstream %s_app \{(.*?)\}" % name, text, re.S).group(1)


def test_one_server_is_never_marked_unavailable_and_is_not_retried(rendered):
    text = nginx_statements(read(rendered, "nginx_default", "site.conf"))
    assert re.findall(r"^\s*server (.*);", upstream_block(text, "hello"), re.M) == ["unix:/run/hello.sock fail_timeout=0"]
    assert "next_upstream" not in text


def test_many_servers_get_passive_health_and_a_bounded_next_upstream(rendered):
    text = nginx_statements(read(rendered, "nginx_tcp_keepalive", "site.conf"))
    servers = re.findall(r"^\s*server (.*);", upstream_block(text, "api"), re.M)
    assert servers == ["10.0.0.5:8000 max_fails=1 fail_timeout=10s", "10.0.0.6:8000 max_fails=1 fail_timeout=10s"]
    assert "proxy_next_upstream error timeout http_502 http_503;" in text
    assert "proxy_next_upstream_tries 2;" in text
    assert "non_idempotent" not in text, "nginx must never resend a POST it already sent"


def test_a_drained_server_is_down_and_uwsgi_retries_without_http_502(rendered):
    text = nginx_statements(read(rendered, "nginx_drained", "site.conf"))
    servers = re.findall(r"^\s*server (.*);", upstream_block(text, "uwd"), re.M)
    assert servers == ["10.0.0.5:8001 max_fails=2 fail_timeout=5s", "10.0.0.6:8001 max_fails=2 fail_timeout=5s down",
                       "10.0.0.7:8001 max_fails=2 fail_timeout=5s"]
    assert "uwsgi_next_upstream error timeout http_503;" in text  # uwsgi_next_upstream has no http_502
    assert "uwsgi_next_upstream_tries 3;" in text


def test_pg_hba_lets_each_database_in_from_its_clients_only(rendered):
    hba = [line.split() for line in read(rendered, "postgresql_tiers", "pg_hba.conf").splitlines()
           if line.strip() and not line.startswith("#")]
    assert hba == [
        ["local", "all", "postgres", "peer"],
        ["local", "all", "all", "peer"],
        ["host", "hello", "hello", "127.0.0.1/32", "scram-sha-256"],
        ["host", "hello", "hello", "::1/128", "scram-sha-256"],
        ["host", "hello", "hello", "10.0.0.11/32", "scram-sha-256"],
        ["host", "hello", "hello", "fd00::12/128", "scram-sha-256"],
        ["host", "shop", "shop_rw", "127.0.0.1/32", "scram-sha-256"],
        ["host", "shop", "shop_rw", "::1/128", "scram-sha-256"],
        ["host", "shop", "shop_rw", "10.0.1.0/24", "scram-sha-256"],
        ["host", "all", "backup", "10.0.2.5/32", "scram-sha-256"],
    ], "an absent database gets no line; nothing is open to all"


def test_the_postgresql_drop_in_quotes_strings_only(rendered):
    conf = read(rendered, "postgresql_tiers", "webstack.conf")
    assert "listen_addresses = 'localhost,10.0.0.30'" in conf
    assert "port = 5433" in conf and "password_encryption = 'scram-sha-256'" in conf
    assert "max_connections = 200\n" in conf
    assert "log_line_prefix = '%m [%p] it''s'" in conf


def test_the_firewall_accepts_each_port_from_its_sources_then_drops(rendered):
    nft = read(rendered, "firewall_tiers", "firewall.nft")
    rules = [line.strip() for line in nft.splitlines() if "dport" in line or "iifname" in line]
    assert rules == [
        'iifname "lo" accept',
        "tcp dport 8001 ip saddr { 10.0.0.2, 10.0.1.0/24 } accept",
        "tcp dport 8001 ip6 saddr { fd00::2 } accept",
        "tcp dport 8001 counter drop",
        "tcp dport 5432 ip saddr { 10.0.0.11 } accept",
        "tcp dport 5432 counter drop",
    ]
    # Replaced whole in one transaction: declared (so delete cannot fail), deleted, defined.
    assert nft.index("table inet webstack\n") < nft.index("delete table inet webstack") < nft.index("table inet webstack {")
    assert "policy accept;" in nft, "the role only drops what its rules name"
    unit = read(rendered, "firewall_tiers", "webstack-firewall.service")
    assert "ExecReload=/usr/sbin/nft -f /etc/webstack/firewall.nft" in unit
    assert "ExecStop=/usr/sbin/nft delete table inet webstack" in unit


# Where each rendered nginx file lives on the host, for an `nginx -T`-style dump.
NGINX_PATHS = {
    "nginx.conf": "/etc/nginx/nginx.conf",
    "security-headers.conf": "/etc/nginx/snippets/webstack-security-headers.conf",
    "proxy-params.conf": "/etc/nginx/snippets/webstack-proxy-params.conf",
    "uwsgi-params.conf": "/etc/nginx/snippets/webstack-uwsgi-params.conf",
    "fastcgi-params.conf": "/etc/nginx/snippets/webstack-fastcgi-params.conf",
    "scgi-params.conf": "/etc/nginx/snippets/webstack-scgi-params.conf",
    "default-deny.conf": "/etc/nginx/sites-enabled/000-default-deny.conf",
    "site.conf": "/etc/nginx/sites-enabled/site.conf",
}


def nginx_dump(rendered, case):
    """The case's files as `nginx -T` prints them: what gixy reads with every include resolved."""
    site_name = CASES[case][2]["site"]["name"]
    paths = {**NGINX_PATHS, "tls.conf": f"/etc/nginx/snippets/webstack-tls-{site_name}.conf"}
    return "".join(f"# configuration file {path}:\n{read(rendered, case, name)}\n"
                   for name, path in paths.items() if (rendered / case / name).exists())


# The findings a case asks for by turning a hardening default off.
GIXY_EXPECTED = {
    "nginx_tcp_keepalive": ["version_disclosure"],  # nginx_server_tokens: true
    "nginx_tls_126": ["hsts_header"],  # nginx_tls_hsts_max_age: 0
}


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if v[0] == "nginx"])
def test_gixy_finds_nothing(rendered, case, tmp_path):
    """gixy-ng, the nginx security linter, on every rendered configuration: nothing but what the
    case asked for."""
    dump = tmp_path / "nginx-T.conf"
    dump.write_text(nginx_dump(rendered, case))
    report = run([str(pathlib.Path(sys.executable).parent / "gixy"), "--format", "json", str(dump)], check=False)
    findings = json.loads(report.stdout or "[]")
    unexpected = [f for f in findings if f["plugin"] not in GIXY_EXPECTED.get(case, [])]
    assert unexpected == [], json.dumps(unexpected, indent=1)
    assert sorted({f["plugin"] for f in findings}) == sorted(GIXY_EXPECTED.get(case, [])), "the linter sees them"


def server_blocks(text):
    """The server { } blocks of a site file, as lists of their statements (nested blocks inline)."""
    blocks, depth, current = [], 0, None
    for line in nginx_statements(text).splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if depth == 0 and stripped == "server {":
            current = []
        elif current is not None:
            if depth == 1 and stripped == "}":
                blocks.append(current)
                current = None
            else:
                current.append(stripped)
        depth += stripped.count("{") - stripped.count("}")
    return blocks


def test_tls_site_on_nginx_1_22(rendered):
    redirect, https = server_blocks(read(rendered, "nginx_tls_122", "site.conf"))
    assert "listen 80;" in redirect and "listen [::]:80;" in redirect
    assert "return 301 https://$host$request_uri;" in redirect
    assert not any(line.startswith(("proxy_pass", "alias")) for line in redirect), "plain HTTP serves nothing"
    assert "listen 443 ssl http2;" in https and "listen [::]:443 ssl http2;" in https, "the pre-1.25.1 form"
    assert "http2 on;" not in https
    assert "include /etc/nginx/snippets/webstack-tls-hello.conf;" in https
    hsts = 'add_header Strict-Transport-Security "max-age=63072000" always;'
    assert https.count(hsts) == 2, "in the server and again in the static location, which adds headers"
    tls = nginx_statements(read(rendered, "nginx_tls_122", "tls.conf"))
    assert "ssl_certificate /etc/nginx/tls/hello/fullchain.pem;" in tls
    assert "ssl_certificate_key /etc/nginx/tls/hello/privkey.pem;" in tls
    assert "ssl_stapling" not in tls and "resolver" not in tls, "a self-signed certificate has no responder"
    tls = nginx_statements(read(rendered, "nginx_tls_122", "nginx.conf"))
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in tls
    assert "ssl_ecdh_curve X25519:prime256v1:secp384r1;" in tls, "OpenSSL 3.0 knows no ML-KEM group"
    assert "ssl_session_tickets off;" in tls and "ssl_prefer_server_ciphers off;" in tls
    ciphers = re.search(r"ssl_ciphers (\S+);", tls).group(1).split(":")
    assert ciphers and all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers), ciphers
    assert "dhparam" not in tls
    deny = read(rendered, "nginx_tls_122", "default-deny.conf")
    assert "listen 443 ssl default_server;" in deny and "ssl_reject_handshake on;" in deny


def test_tls_site_on_nginx_1_26(rendered):
    redirect, https = server_blocks(read(rendered, "nginx_tls_126", "site.conf"))
    assert "listen 8080;" in redirect and "return 301 https://$host:8443$request_uri;" in redirect
    assert "listen 8443 ssl;" in https and "http2 on;" in https
    assert not any("Strict-Transport-Security" in line for line in redirect + https), "max-age 0 turns it off"
    tls = nginx_statements(read(rendered, "nginx_tls_126", "tls.conf"))
    assert "ssl_certificate /etc/ssl/shop/fullchain.pem;" in tls
    assert "ssl_certificate_key /etc/ssl/private/shop.pem;" in tls
    assert "ssl_stapling on;" in tls and "ssl_stapling_verify on;" in tls
    assert "resolver 10.0.0.2 valid=300s;" in tls
    conf = nginx_statements(read(rendered, "nginx_tls_126", "nginx.conf"))
    assert "ssl_ecdh_curve ?X25519MLKEM768:X25519:prime256v1:secp384r1;" in conf
    deny = read(rendered, "nginx_tls_126", "default-deny.conf")
    assert "listen 8443 ssl default_server;" in deny and "listen 8080 default_server;" in deny


def test_acme_site_answers_challenges_over_http(rendered):
    redirect, https = server_blocks(read(rendered, "nginx_tls_acme", "site.conf"))
    assert "location ^~ /.well-known/acme-challenge/ {" in redirect
    assert "alias /var/lib/webstack-acme/challenges/;" in redirect
    assert "return 301 https://$host$request_uri;" in redirect, "every other path still redirects"
    assert not any("acme-challenge/ {" in line for line in https)
    tls = nginx_statements(read(rendered, "nginx_tls_acme", "tls.conf"))
    assert "ssl_certificate /var/lib/webstack-acme/shop/fullchain.pem;" in tls, "the renewer's copy"
    assert "ssl_certificate_key /etc/nginx/tls/shop/privkey.pem;" in tls, "the key stays root's"
    # The self-signed site beside it has no challenge location.
    assert "acme-challenge/ {" not in read(rendered, "nginx_tls_122", "site.conf")


def test_timer_unit_runs_its_service(rendered):
    timer = read(rendered, "unit_timer", "timer")
    for line in ("OnCalendar=daily", "RandomizedDelaySec=1h", "Persistent=yes", "WantedBy=timers.target"):
        assert line in timer.splitlines(), line
    service = read(rendered, "unit_timer", "service")
    assert "[Install]" not in service, "only the timer starts it"
    assert "Type=oneshot" in service.splitlines() and "NoNewPrivileges=yes" in service.splitlines()
    assert "[Install]" in read(rendered, "unit_plain", "service")


def make_certificate(path, days):
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "/dev/null", "-out", str(path), "-days", str(days), "-subj", "/CN=shop.example.org"])


@pytest.fixture
def renewer(rendered, tmp_path):
    """The rendered renewal script pointed at a scratch directory, with an acme-tiny stand-in on
    PATH that logs its arguments and prints a fresh certificate (or fails when told to)."""
    acme = tmp_path / "acme"
    (acme / "shop").mkdir(parents=True)
    (acme / "hello").mkdir()
    script = read(rendered, "nginx_tls_acme", "acme-renew.sh").replace("/var/lib/webstack-acme", str(acme))
    (tmp_path / "acme-renew").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make_certificate(tmp_path / "fresh.pem", 90)
    stub = bin_dir / "acme-tiny"
    stub.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/calls
[ -e {tmp_path}/fail ] && {{ echo "acme error" >&2; exit 1; }}
cat {tmp_path}/fresh.pem
""")
    stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return acme, tmp_path, lambda: run(["sh", str(tmp_path / "acme-renew")], check=False, env=env)


def test_the_renewer_renews_only_what_is_due(renewer):
    acme, tmp, renew = renewer
    make_certificate(acme / "shop" / "fullchain.pem", 10)
    first = renew()
    assert first.returncode == 0, first.stderr
    assert "shop: renewed" in first.stdout
    assert (acme / "shop" / "fullchain.pem").read_text() == (tmp / "fresh.pem").read_text()
    assert (acme / "renewed").exists(), "the reload step is told"
    [call] = (tmp / "calls").read_text().splitlines()
    assert f"--account-key {acme}/account.key --csr {acme}/shop/request.csr" in call
    assert f"--acme-dir {acme}/challenges" in call
    assert "--directory-url https://ca.example.org/acme/dir --contact mailto:ops@example.org" in call
    (acme / "renewed").unlink()
    second = renew()
    assert second.returncode == 0 and "shop: valid for more than 30 days, left alone" in second.stdout
    assert len((tmp / "calls").read_text().splitlines()) == 1 and not (acme / "renewed").exists()


def test_a_failed_renewal_keeps_the_certificate(renewer):
    acme, tmp, renew = renewer
    make_certificate(acme / "shop" / "fullchain.pem", 10)
    before = (acme / "shop" / "fullchain.pem").read_text()
    (tmp / "fail").touch()
    result = renew()
    assert result.returncode == 1 and "shop: could not renew" in result.stderr
    assert (acme / "shop" / "fullchain.pem").read_text() == before
    assert not (acme / "renewed").exists() and not (acme / "shop" / "fullchain.pem.new").exists()


def test_plain_sites_have_no_tls(rendered):
    site = read(rendered, "nginx_default", "site.conf")
    assert "ssl" not in site and "Strict-Transport-Security" not in site and "return 301" not in site
    assert "ssl" not in read(rendered, "nginx_default", "default-deny.conf")
    assert "ssl_" not in read(rendered, "nginx_default", "nginx.conf")


def test_limits_and_slow_client_timeouts(rendered):
    conf = nginx_statements(read(rendered, "nginx_default", "nginx.conf"))
    for line in ("client_header_timeout 10s;", "client_body_timeout 10s;", "send_timeout 10s;",
                 "client_header_buffer_size 1k;", "large_client_header_buffers 4 8k;",
                 "limit_req_status 429;", "limit_conn_status 429;", "127.0.0.0/8 1;", "::1 1;",
                 "default $binary_remote_addr;"):
        assert line in conf, line
    site = read(rendered, "nginx_default", "site.conf")
    assert "limit_req_zone $webstack_limit_key zone=hello_req:10m rate=50r/s;" in site
    assert "limit_conn_zone $webstack_limit_key zone=hello_conn:10m;" in site
    [server] = server_blocks(site)
    assert "limit_req zone=hello_req burst=100 nodelay;" in server and "limit_conn hello_conn 64;" in server
    # Per site: the request limit off, fewer connections, a longer body timeout.
    tcp = read(rendered, "nginx_tcp_keepalive", "site.conf")
    [server] = server_blocks(tcp)
    assert "limit_req" not in tcp and "limit_conn api_conn 5;" in server
    assert "client_body_timeout 30s;" in server


@pytest.mark.parametrize("case", ["nginx_default", "nginx_tls_122", "nginx_prefixed"])
def test_hidden_files_are_never_served(rendered, case):
    """A regex location outranks every prefix location, static ones included: one rule covers all."""
    servers = server_blocks(read(rendered, case, "site.conf"))
    serving = servers[-1]
    start = serving.index("location ~ /\\.(?!well-known/acme-challenge/) {")
    assert serving[start + 1] == "return 404;"
    assert not any(line.startswith("location ~") for line in serving[start + 1:]), "the only regex location"


def locations(text):
    """Each location of a site file: its match and its statements (a nested block's lines inline,
    Lua code left out)."""
    found = {}
    for block in server_blocks(text):
        current, depth = None, 0
        for line in block:
            match = re.match(r"location (.+) \{$", line)
            if current is None and match:
                current, depth = found.setdefault(match.group(1), []), 1
                continue
            if current is None:
                continue
            depth += line.count("{") - line.count("}")
            if depth == 0:
                current = None
            else:
                current.append(line)
    return found


def test_lua_checks_keep_digests_of_the_tokens_never_the_tokens(rendered):
    text = read(rendered, "nginx_access", "site.conf")
    assert "s3cret" not in text and "bearer-one" not in text
    admin = text[text.index("location /admin/ {"):text.index("location /api/private/ {")]
    digests = re.findall(r'\["([0-9a-f]{40})"\] = true', admin)
    assert digests == sorted({hashlib.sha1(t.encode()).hexdigest() for t in ("s3cret", "other-token")})
    assert "ngx.var.http_x_access_token" in admin and "ngx.HTTP_UNAUTHORIZED" in admin and "ngx.HTTP_FORBIDDEN" in admin
    bearer = text[text.index("location /api/private/ {"):text.index("location /reports/ {")]
    assert "ngx.var.http_authorization" in bearer and "[Bb]earer%s+" in bearer
    # The guarded location hands requests on exactly as the app's own location does.
    found = locations(text)
    own = [line for line in found["/"]]
    assert found["/admin/"][:2] == ["access_by_lua_block {", "}"]
    assert found["/admin/"][2:] == own


def test_auth_request_asks_the_app_in_an_internal_location(rendered):
    found = locations(read(rendered, "nginx_access", "site.conf"))
    assert found["/reports/"][0] == "auth_request /_webstack_access/hello/3;"
    check = found["= /_webstack_access/hello/3"]
    assert check[0] == "internal;"
    assert "proxy_pass http://hello_app/api/auth;" in check
    assert "proxy_pass_request_body off;" in check and 'proxy_set_header Content-Length "";' in check
    assert "proxy_set_header X-Original-URI $request_uri;" in check
    # Another app, under a prefix, over uwsgi: its path below its prefix, no request body.
    assert found["/shared/"][0] == "auth_request /_webstack_access/hello/4;"
    other = found["= /_webstack_access/hello/4"]
    assert "uwsgi_pass blog_app;" in other and "uwsgi_param PATH_INFO /check;" in other
    assert 'uwsgi_param SCRIPT_NAME "/blog";' in other and "uwsgi_pass_request_body off;" in other
    assert found["/blog/drafts/"][0] == "auth_request /_webstack_access/blog/1;"
    assert "uwsgi_pass blog_app;" in found["/blog/drafts/"]


def test_nginx_sandbox_drop_in(rendered):
    default = unit_lines(read(rendered, "nginx_default", "hardening.conf"))
    assert default[0] == "[Service]"
    for line in ("ProtectSystem=strict", "ReadWritePaths=/var/log/nginx /var/lib/nginx /run",
                 "NoNewPrivileges=yes", "MemoryDenyWriteExecute=yes", "SystemCallFilter=@system-service",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_KILL"):
        assert line in default, line
    assert not any(line.startswith("PrivateUsers") for line in default), "fails to start in many containers"
    access = unit_lines(read(rendered, "nginx_access", "hardening.conf"))
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in access), "LuaJIT writes code it runs"
    assert "ProtectHome=read-only" in access and not any(line.startswith("UMask") for line in access)


def test_the_flup_runner_tells_systemd_it_is_ready(rendered, tmp_path, monkeypatch):
    """notify_ready() sends READY=1 to $NOTIFY_SOCKET (a datagram socket here), and nothing without it."""
    import ast
    import os
    import socket

    source = read(rendered, "flup_fastcgi", "webstack_flup.py")
    tree = ast.parse(source)
    func = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "notify_ready")
    namespace = {"os": os, "socket": socket}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "webstack_flup.py", "exec"), namespace)
    setup = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "_setupSocket")
    assert any(isinstance(call, ast.Call) and getattr(call.func, "id", "") == "notify_ready" for call in ast.walk(setup))

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    namespace["notify_ready"]()  # a start by hand: no socket, no error
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        namespace["notify_ready"]()
        assert listener.recv(64) == b"READY=1"


def test_the_flup_runner_stops_at_once_on_sigterm(rendered, tmp_path):
    """systemd stops flup with SIGTERM. flup's prefork parent waits in select() with no timeout, and
    since PEP 475 a signal no longer interrupts it: without the runner's ceiling it only died at
    TimeoutStopSec's SIGKILL, 30 s into every restart, switch and rollback."""
    import re
    import signal
    import subprocess
    import sys
    import time

    sock = tmp_path / "app.sock"
    source = re.sub(r'(?m)^    bind = .*$', f"    bind = {str(sock)!r}",
                    read(rendered, "flup_fastcgi", "webstack_flup.py"), count=1)
    (tmp_path / "webstack_flup.py").write_text(source)
    (tmp_path / "webstack_wsgi.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n")
    runner = subprocess.Popen([sys.executable, str(tmp_path / "webstack_flup.py")], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert runner.poll() is None, "the runner exited before binding its socket"
            assert time.monotonic() < deadline, "the runner never bound its socket"
            time.sleep(0.1)
        time.sleep(1)  # the children are forked and idle in accept()
        runner.send_signal(signal.SIGTERM)
        started = time.monotonic()
        runner.wait(timeout=15)
        assert time.monotonic() - started < 5
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
