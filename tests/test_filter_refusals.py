"""What one app's entry must never reach: an account, a unit, a directory, a database or a URL
space of another; git, pip or the network as options; a listener past nginx. Each refusal names
the field, in the filter that both tiers and python_app's own check use."""

import importlib.util
import pathlib

import pytest
from ansible.errors import AnsibleFilterError

SPEC = importlib.util.spec_from_file_location(
    "webstack_filters_refusals", pathlib.Path(__file__).resolve().parents[1] / "plugins/filter/webstack.py"
)
webstack = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(webstack)

SPLIT = {"web": ["w"], "app": ["a"], "db": [], "split": True, "db_remote": False,
         "addresses": {"w": "10.0.0.1", "a": "fd00::6"}}


def app(**overrides):
    return {"name": "hello", "source": "/src/hello", "wsgi_app": "hello:create_app()", **overrides}


def refused(apps, message, layout=None, host=None):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps(apps, layout, host)


@pytest.mark.parametrize("name", ["nginx", "ssh", "sshd", "www-data", "root", "postgres", "daemon", "nobody",
                                  "docker", "systemd-journald", "webstack-run-x", "dbus", "cron"])
def test_names_of_system_accounts_and_units_are_reserved(name):
    refused([app(name=name)], rf"webstack_apps\[0\]\.name: '{name}' is reserved")


@pytest.mark.parametrize("root", ["/etc", "/srv", "/srv/", "/srv/../etc", "/srv/./x", "/srv//x", "/opt/x", "/",
                                  "/srv/x/", "/srv/x\n"])
def test_an_app_directory_is_one_directory_below_the_base(root):
    refused([app(root=root)], r"webstack_apps\[0\]\.root: must be a directory below /srv/")


def test_an_app_cannot_take_or_nest_in_another_apps_directory():
    refused([app(name="shop"), app(root="/srv/shop")], r"webstack_apps\[1\]\.root: /srv/shop is, or is inside, "
            r"or holds the directory of webstack_apps\[0\] \(shop\)")
    refused([app(name="shop"), app(root="/srv/shop/shared")], r"webstack_apps\[1\]\.root")
    refused([app(root="/srv/apps/hello"), app(name="all", root="/srv/apps")], r"webstack_apps\[1\]\.root")
    # An absent app's directory is still its own until it is gone.
    refused([app(name="shop", state="absent"), app(root="/srv/shop")], r"webstack_apps\[1\]\.root")
    assert [a["root"] for a in webstack.webstack_apps([app(root="/srv/apps/hello"), app(name="b", root="/srv/apps/b")])] \
        == ["/srv/apps/hello", "/srv/apps/b"]


def test_an_app_cannot_take_another_apps_database_or_login_role():
    refused([app(name="shop", database=True), app(database={"user": "shop"})],
            r"webstack_apps\[1\]\.database\.user: 'shop' is already the database user of webstack_apps\[0\] \(shop\)")
    refused([app(name="shop", database=True), app(database={"name": "shop"})], r"webstack_apps\[1\]\.database\.name")
    # An absent app keeps its database and login role: still not another app's to take.
    refused([app(name="shop", database=True, state="absent"), app(database={"user": "shop"})],
            r"webstack_apps\[1\]\.database\.user")


@pytest.mark.parametrize(("field", "value"), [("name", "postgres"), ("name", "template0"), ("name", "template1"),
                                              ("user", "postgres"), ("user", "pg_monitor"), ("user", "public")])
def test_postgresqls_own_databases_and_roles_are_never_an_apps(field, value):
    refused([app(database={field: value})], rf"webstack_apps\[0\]\.database\.{field}: '{value}' is PostgreSQL's own")


def test_a_prefix_cannot_sit_inside_another_apps_prefix_or_guarded_location():
    refused([app(name="a", domains=["x.test"], prefix="/a/"), app(name="b", domains=["x.test"], prefix="/a/b/")],
            r"webstack_apps\[1\]\.prefix: /a/b/ is inside a's prefix /a/")
    guarded = app(name="main", domains=["x.test"], access=[{"location": "/admin/", "lua": {"tokens": ["t"]}}])
    refused([guarded, app(name="b", domains=["x.test"], prefix="/admin/")],
            r"webstack_apps\[1\]\.prefix: /admin/ is inside /admin/, which main guards with an access check")
    refused([guarded, app(name="b", domains=["x.test"], prefix="/admin/reports/")], r"webstack_apps\[1\]\.prefix")
    # Side by side, or under an app at the root, is fine; so is the same prefix on other domains.
    assert len(webstack.webstack_apps([guarded, app(name="b", domains=["x.test"], prefix="/blog/"),
                                       app(name="c", domains=["x.test"], prefix="/shop/"),
                                       app(name="d", domains=["y.test"], prefix="/admin/")])) == 4


@pytest.mark.parametrize(("source", "message"), [
    ({"git": "--upload-pack=touch /tmp/pwn", "version": "main"}, "git must not start with -"),
    ({"git": "-u", "version": "main"}, "git must not start with -"),
    ({"git": "ext::sh -c touch% /tmp/pwn", "version": "main"}, "git must not start with -"),
    ({"git": "ext::sh", "version": "main"}, "remote helpers such as ext:: are refused"),
    ({"git": "ssh://-oProxyCommand=touch/x", "version": "main"}, "nor its host"),
    ({"git": "https://example.org/a.git\n", "version": "main"}, "control characters"),
    ({"git": "https://example.org/a.git", "version": "--upload-pack=x"}, "version must be a tag, branch or commit"),
    ({"git": "https://example.org/a.git", "version": "a..b"}, "version must be"),
    ({"git": "https://example.org/a.git", "version": "main\n"}, "version must be"),
    ({"git": "https://example.org/a.git", "version": "x.lock"}, "version must be"),
    ({"git": "https://example.org/a.git", "version": "a:b"}, "version must be"),
    ({"archive": "-x.tar.gz"}, "archive must not start with -"),
    ({"archive": "https://example.org/a b.tar.gz", "checksum": "sha256:ab"}, "archive must not start with -"),
    ({"archive": "gopher://example.org/a.tar.gz", "checksum": "sha256:ab"}, "must be http://, https:// or ftp://"),
])
def test_sources_never_reach_git_or_the_fetch_as_options(source, message):
    refused([app(source=source)], r"webstack_apps\[0\]\.source: .*" + message)


@pytest.mark.parametrize("source", [
    {"git": "https://example.org/a.git", "version": "v1.2.3"}, {"git": "git@example.org:team/a.git", "version": "main"},
    {"git": "/srv/git/a.git", "version": "feature/x"}, {"git": "file:///tmp/a", "version": "0123abcd"},
    {"git": "ssh://git@example.org:22/a.git", "version": "refs/heads/main"},
])
def test_ordinary_git_sources_pass(source):
    assert webstack.webstack_apps([app(source=source)])[0]["source"] == source


def test_cgi_listens_on_its_unix_socket_only():
    refused([app(server="cgi", listen="127.0.0.1:9000")], r"webstack_apps\[0\]\.listen: cgi runs any program")
    refused([app(server="cgi", listen="0.0.0.0:9000", listen_exposed=True)], r"webstack_apps\[0\]\.listen: cgi")
    refused([app(server="cgi", port=9000)], r"webstack_apps\[0\]\.port: cgi runs any program", SPLIT, "a")


@pytest.mark.parametrize("listen", ["0.0.0.0:9000", "10.0.0.5:9000", "[::]:9000", "example.org:9000"])
def test_a_listener_past_nginx_needs_an_explicit_opt_in(listen):
    refused([app(listen=listen)], r"webstack_apps\[0\]\.listen: .* is not a loopback address")
    [opted] = webstack.webstack_apps([app(listen=listen, listen_exposed=True)])
    assert opted["listen"] == listen and opted["listen_exposed"] is True


def test_loopback_and_split_tiers_need_no_opt_in():
    for listen in ("127.0.0.1:9000", "[::1]:9000", "localhost:9000", "127.0.0.2:9000"):
        assert webstack.webstack_apps([app(listen=listen)])[0]["listen_exposed"] is False
    [split] = webstack.webstack_apps([app(port=9000)], SPLIT, "a")
    assert split["listen"] == "[fd00::6]:9000" and split["listen_exposed"] is True
    refused([app(listen_exposed="yes")], r"webstack_apps\[0\]\.listen_exposed: must be true or false")


@pytest.mark.parametrize("entry", ["--index-url=http://evil.test/simple", "-e .", "-r /etc/shadow",
                                   "flask\n--index-url=x", "", "flask==", "not a requirement!"])
def test_pip_packages_are_requirement_specifiers_only(entry):
    refused([app(pip_packages=[entry])], r"webstack_apps\[0\]\.pip_packages: .* is not a requirement specifier")


def test_ordinary_requirement_specifiers_pass():
    packages = ["flask==3.1.3", "psycopg[binary]==3.3.9", "requests>=2,<3", "pkg @ https://example.org/pkg-1.0.whl",
                "tomli; python_version < '3.11'"]
    assert webstack.webstack_apps([app(pip_packages=packages)])[0]["pip_packages"] == packages
    refused([app(pip_packages="flask")], r"webstack_apps\[0\]\.pip_packages: must be a list")


@pytest.mark.parametrize("path", ["../../../../etc/shadow", "/etc/shadow", ".", "a/../../x", "a//b", "req.txt\n"])
def test_the_requirements_file_is_inside_the_source(path):
    refused([app(requirements_file=path)], r"webstack_apps\[0\]\.requirements_file: must be a file inside")


@pytest.mark.parametrize("directory", [".", "./", "/", "", "a/..", "a/./b"])
def test_static_files_never_serve_the_source_itself(directory):
    refused([app(static=[{"url": "/s/", "dir": directory}])], r"webstack_apps\[0\]\.static: dir must be a directory inside")


@pytest.mark.parametrize(("field", "bad"), [
    ("name", {"name": "hello\n"}),
    ("domains", {"domains": ["localhost\n"]}),
    ("env", {"env": {"A\n": "1"}}),
    ("healthcheck.path", {"healthcheck": {"path": "/healthz\n"}}),
    ("healthcheck.host", {"healthcheck": {"host": "localhost\n"}}),
    ("database.name", {"database": {"name": "x\n"}}),
    ("prefix", {"prefix": "/a/\n"}),
    ("root", {"root": "/srv/x\n"}),
    ("listen", {"listen": "127.0.0.1:80\n"}),
    ("listen", {"listen": "/run/hello.sock\nExecStartPre=/bin/true"}),
    ("wsgi_app", {"wsgi_app": "hello:app\n"}),
    ("generated_secrets", {"generated_secrets": ["KEY\n"]}),
    ("static", {"static": [{"url": "/s/\n", "dir": "s"}]}),
    ("access[0].location", {"access": [{"location": "/a/\n", "lua": {"tokens": ["t"]}}]}),
])
def test_a_trailing_newline_never_passes_a_check(field, bad):
    refused([app(**bad)], r"webstack_apps\[0\]\." + field.replace("[", r"\[").replace("]", r"\]"))


@pytest.mark.parametrize(("role", "settings", "message"), [
    ("gunicorn", {"workers": 0}, "workers must be a whole number from 1 to 1024 (got 0)"),
    ("gunicorn", {"workers": -1}, "workers must be a whole number"),
    ("gunicorn", {"workers": True}, "workers must be a whole number"),
    ("gunicorn", {"workers": "4"}, "workers must be a whole number"),
    ("gunicorn", {"worker_class": "eventlet"}, "worker_class must be one of sync, gthread, gevent"),
    ("gunicorn", {"preload_app": "yes"}, "preload_app must be true or false"),
    ("gunicorn", {"access_log": "/var/log/x'); import os; ('"}, "access_log must be a string matching"),
    ("gunicorn", {"wrokers": 2}, "unknown key 'wrokers'"),
    ("uwsgi", {"processes": -3}, "processes must be a whole number from 1 to 1024 (got -3)"),
    ("uwsgi", {"buffer_size": 100}, "buffer_size must be a whole number from 4096 to 65535"),
    ("flup", {"max_children": 0}, "max_children must be"),
    ("tornado", {"processes": 0}, "processes must be"),
    ("gevent", {"connections": 0}, "connections must be"),
    ("cgi", {"timeout": 0}, "timeout must be"),
    ("spawn_fcgi", {"processes": 0}, "processes must be"),
    ("mod_wsgi", {"threads": 0}, "threads must be"),
    ("mod_python", {"processes": 0}, "processes must be"),
])
def test_every_server_dict_is_checked_with_ranges_whichever_server_runs(role, settings, message):
    # The app runs gunicorn: a dict of a server it does not use is checked all the same.
    refused([app(**{role: settings})], rf"webstack_apps\[0\]\.{role}: " + message.replace("(", r"\(").replace(")", r"\)"))


def test_the_default_gate_takes_any_answer_below_500_and_a_status_can_be_demanded():
    assert webstack.webstack_apps([app()])[0]["healthcheck"]["status"] == 0
    assert webstack.webstack_apps([app(healthcheck={"status": 200})])[0]["healthcheck"]["status"] == 200
    refused([app(healthcheck={"status": 600})], r"healthcheck\.status: must be a whole number from 100 to 599 \(or 0")


def test_the_sites_nginx_loops_over_hold_no_secret_and_render_the_same_digests():
    import hashlib
    import json

    key = "-----BEGIN PRIVATE KEY-----\nMIIsecretkeymaterial\n-----END PRIVATE KEY-----\n"
    sites = [{"name": "shop", "server_names": ["shop.test"], "tls": {"key_content": key, "certificate_content": "-----BEGIN C"},
              "access": [{"location": "/admin/", "lua": {"header": "X-Key", "tokens": ["tok-one", "tok-two", "tok-one"]}}],
              "mounts": [{"name": "api", "prefix": "/api/",
                          "access": [{"location": "/api/x/", "lua": {"tokens": ["tok-three"]}}]}]}]
    public = webstack.nginx_public_sites(sites)
    text = json.dumps(public)
    for secret in ("MIIsecretkeymaterial", "tok-one", "tok-two", "tok-three"):
        assert secret not in text
    assert public[0]["access"][0]["lua"] == {"header": "X-Key", "token_digests": sorted(
        {hashlib.sha1(t.encode()).hexdigest() for t in ("tok-one", "tok-two")})}
    assert public[0]["mounts"][0]["access"][0]["lua"]["token_digests"] == [hashlib.sha1(b"tok-three").hexdigest()]
    assert public[0]["tls"]["key_content"].startswith("-----BEGIN") and public[0]["tls"]["certificate_content"] == "-----BEGIN C"
    assert sites[0]["tls"]["key_content"] == key, "the given sites are left as they are"
    # What the checks must still refuse stays refusable: a key that is not PEM, an empty token.
    bad = webstack.nginx_public_sites([{"name": "x", "tls": {"key_content": "oops"}, "access": [{"lua": {"tokens": [""]}}]}])
    assert bad[0]["tls"]["key_content"] == "(not PEM text)" and bad[0]["access"][0]["lua"] == {"tokens": [""]}
