"""The ways of running a WSGI app behind nginx, side by side on one host (a test of an app the
host does not run is skipped, see conftest.py)."""

import json
import pathlib
import re

import pytest
from webstack_verify import drive, http, load_during, process_env, release_dir, run_playbook, time_wait

RESULTS = pathlib.Path(__file__).resolve().parents[3] / ".cache" / "bench"

# app -> (server_name, URL prefix, server reported by the app, worker model, nginx pass directive)
APPS = {
    "hello-sync": ("sync.test", "", "gunicorn", "sync", "proxy_pass"),
    "hello-gthread": ("apps.test", "", "gunicorn", "gthread", "proxy_pass"),
    "hello-gevent": ("apps.test", "/gevent", "gunicorn", "gevent", "proxy_pass"),
    "hello-uwsgi": ("apps.test", "/uwsgi", "uwsgi", "prefork+threads", "uwsgi_pass"),
    "hello-fcgi": ("fcgi.test", "", "flup-fastcgi", "prefork", "fastcgi_pass"),
    "hello-scgi": ("apps.test", "/scgi", "flup-scgi", "prefork", "scgi_pass"),
    "hello-tornado": ("apps.test", "/tornado", "tornado", "prefork+ioloop", "proxy_pass"),
    "hello-pywsgi": ("pywsgi.test", "", "gevent", "prefork+greenlets", "proxy_pass"),
    "hello-cgi": ("apps.test", "/cgi", "cgi", "process-per-request", "fastcgi_pass"),
    "hello-spawn": ("apps.test", "/spawn", "spawn-fcgi", "process", "fastcgi_pass"),
    "hello-wsgi": ("apps.test", "/wsgi", "mod_wsgi", "daemon", "proxy_pass"),
    "hello-modpy": ("apps.test", "/modpy", "mod_python", "prefork", "proxy_pass"),
}
GREETING = {
    "hello-sync": "sync", "hello-gthread": "gthread", "hello-gevent": "gevent",
    "hello-uwsgi": "uwsgi", "hello-fcgi": "fastcgi", "hello-scgi": "scgi", "hello-tornado": "tornado",
    "hello-pywsgi": "pywsgi", "hello-cgi": "cgi", "hello-spawn": "spawn-fcgi", "hello-wsgi": "mod_wsgi", "hello-modpy": "mod_python",
}
# The apps on TCP: Apache binds its port itself; gunicorn's port is held by its socket unit,
# hello-gthread's with nginx keep-alive (the default on TCP), hello-gevent's without.
TCP_PORTS = {"hello-gthread": 8001, "hello-gevent": 8002, "hello-wsgi": 8003, "hello-modpy": 8004}
each_app = pytest.mark.parametrize("app", list(APPS))


def get(host, app, path, **kwargs):
    """A request to the app through nginx: its host name, its prefix before the path."""
    server_name, prefix = APPS[app][:2]
    return http(host, prefix + path, **{"host_header": server_name, **kwargs})


def test_systemd_never_killed_an_app_at_its_stop_timeout(host):
    """Every stop of the scenario (restarts, reloads, the server switches and back, hello-tmp's
    removal) ended the server its own way: systemd never gave up waiting and killed it. (A switch
    to Apache once sent gunicorn Apache's SIGWINCH, which it ignores, and spawn-fcgi's processes
    once slept through SIGTERM: 40 and 15 s each, then SIGKILL.)"""
    log = host.check_output("journalctl --no-pager -o cat _PID=1")
    killed = [line for line in log.splitlines() if re.match(r"hello[^:]*: State '[a-z-]+' timed out", line)]
    assert not killed, killed[:5]


@each_app
def test_index(host, app):
    response = get(host, app, "/")
    assert response["status"] == 200
    assert f"<h1>Hello from {GREETING[app]}</h1>" in response["body"]
    assert f'href="{APPS[app][1]}/static/style.css"' in response["body"], "url_for builds links under the prefix"


@each_app
def test_path_parameter(host, app):
    response = get(host, app, "/hello/ada%20lovelace")
    assert response["status"] == 200
    assert "Hello, ada lovelace!" in response["body"]
    assert f'href="{APPS[app][1]}/"' in response["body"]


@each_app
def test_post_form_body(host, app):
    response = get(host, app, "/echo", method="POST", body="a=1&b=two+words&c=%C3%A9")
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"form": {"a": "1", "b": "two words", "c": "é"}}


@each_app
def test_redirect_from_url_for(host, app):
    response = get(host, app, "/go-home")
    assert response["status"] == 302
    assert response["headers"]["location"] == APPS[app][1] + "/"


@each_app
def test_static_file_from_nginx(host, app):
    response = get(host, app, "/static/logo.svg")
    assert response["status"] == 200
    assert response["body"].startswith("<svg")
    assert "x-app-time-ms" not in response["headers"]
    assert "x-app-time-ms" in get(host, app, "/healthz")["headers"]


@each_app
def test_reports_server_worker_model_and_venv(host, app):
    response = get(host, app, "/api/info", headers={"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Prefix": "/evil"})
    assert response["status"] == 200
    info = json.loads(response["body"])
    server_name, prefix, server, worker_class, _ = APPS[app]
    assert (info["server"], info["worker_class"]) == (server, worker_class)
    release = release_dir(host, app)
    assert info["release"] == release.rsplit("/", 1)[1]
    assert host.check_output("realpath -e %s", info["prefix"]) == host.check_output("realpath -e %s", release + "/venv")
    assert info["host"] == server_name
    # The prefix comes from nginx's location, never from the client's X-Forwarded-Prefix.
    assert info["script_root"] == prefix
    # The client's own X-Forwarded-For is never what the app trusts.
    assert info["client"] == "127.0.0.1"


@pytest.mark.parametrize("app", [app for app, spec in APPS.items() if spec[1]])
def test_a_prefix_without_its_slash_redirects_to_it(host, app):
    server_name, prefix = APPS[app][:2]
    response = http(host, prefix, host_header=server_name)
    assert response["status"] == 301
    assert response["headers"]["location"].endswith(f"{server_name}{prefix}/")


@pytest.mark.apps("hello-gthread")
def test_apps_sharing_a_host_name_share_one_server(host, apps_here):
    site = host.file("/etc/nginx/sites-enabled/hello-gthread.conf").content_string
    sharing = [app for app in ("hello-gevent", "hello-uwsgi", "hello-scgi", "hello-tornado", "hello-cgi", "hello-spawn")
               if app in apps_here]
    assert sharing, "no app shares apps.test with hello-gthread on this host"
    for app in sharing:
        assert not host.file(f"/etc/nginx/sites-enabled/{app}.conf").exists, "no site of its own"
        assert f"location {APPS[app][1]}/ {{" in site
    assert site.count("server_name apps.test;") == 1


def site_of(host, server_name):
    """The text of the one enabled site that answers server_name (named after one of its apps)."""
    [path] = host.check_output("grep -l 'server_name %s;' /etc/nginx/sites-enabled/*.conf", server_name).split()
    return host.file(path).content_string


@each_app
def test_socket_and_site(host, app):
    site = site_of(host, APPS[app][0])
    assert re.search(rf"^\s*{APPS[app][4]} (http://)?{app}_app;", site, re.M)
    assert host.service(f"{app}.service").is_running
    if app in TCP_PORTS:
        assert host.socket(f"tcp://127.0.0.1:{TCP_PORTS[app]}").is_listening
        assert not host.file(f"/run/{app}.sock").exists
        # Apache binds its port itself, as the app's user: no socket unit.
        apache = APPS[app][2].startswith("mod_")
        assert host.file(f"/etc/systemd/system/{app}.socket").exists != apache
        assert host.service(f"{app}.socket").is_running != apache
        return
    socket = host.file(f"/run/{app}.sock")
    if app == "hello-spawn":
        # spawn-fcgi's live socket is in its runtime directory (a reload renames a new one over it)
        assert socket.is_symlink and socket.linked_to == f"/run/spawn-fcgi-{app}/socket"
        socket = host.file(socket.linked_to)
    assert socket.is_socket
    assert (socket.user, socket.group, socket.mode) == ("root", "www-data", 0o660)
    # spawn-fcgi binds the socket itself: no socket unit (and none left from another server).
    assert host.service(f"{app}.socket").is_running == (app != "hello-spawn")
    assert host.file(f"/etc/systemd/system/{app}.socket").exists == (app != "hello-spawn")


def site_packages(host, app, package):
    return host.run("ls -d %s/venv/lib/python3*/site-packages/%s", release_dir(host, app), package).rc == 0


@each_app
def test_venv_holds_only_its_server(host, app):
    server = APPS[app][2]
    assert site_packages(host, app, "gunicorn") == (server == "gunicorn")
    assert site_packages(host, app, "gevent") == (app in ("hello-gevent", "hello-pywsgi")), "gevent only when chosen"
    assert site_packages(host, app, "flup") == (server.startswith("flup") or server == "spawn-fcgi")
    assert site_packages(host, app, "tornado") == (server == "tornado")
    assert (host.file(release_dir(host, app) + "/venv/bin/uwsgi").exists) == (server == "uwsgi")
    assert site_packages(host, app, "mod_wsgi") == (server == "mod_wsgi")


@pytest.mark.apps("hello-uwsgi")
def test_uwsgi_build_packages_are_gone(host):
    for package in ("gcc", "python3-dev"):
        assert not host.package(package).is_installed, f"{package} was kept after building uWSGI"


@pytest.mark.apps("hello-uwsgi")
def test_uwsgi_ini(host):
    ini = host.file(release_dir(host, "hello-uwsgi") + "/uwsgi.ini").content_string
    for line in ("master = true", "need-app = true", "die-on-term = true", "buffer-size = 32768",
                 "harakiri = 30", "max-requests = 0", "disable-logging = true", "processes = 2", "threads = 2"):
        assert line in ini


def reload_under_load(host, app, action="reload", at_least=20):
    """systemctl <action> of the app's service while clients ask it through nginx: every request
    answered (and enough of them to mean something)."""
    result = load_during(host, APPS[app][0], f"systemctl {action} {app}.service", path=APPS[app][1] + "/api/info")
    assert result["ok"] > at_least
    assert result["failed"] == 0, result


def main_and_workers(host, app):
    master = int(host.run("systemctl show --property=MainPID --value %s.service", app).stdout)
    return master, {p.pid for p in host.process.filter(user=app)} - {master}


@pytest.mark.apps("hello-uwsgi")
def test_uwsgi_graceful_reload_fails_no_request(host):
    master_before, workers_before = main_and_workers(host, "hello-uwsgi")
    reload_under_load(host, "hello-uwsgi")
    master_after, workers_after = main_and_workers(host, "hello-uwsgi")
    assert master_after == master_before, "a reload keeps the master"
    assert workers_before and workers_after and not workers_before & workers_after, "workers replaced"


@pytest.mark.parametrize("app", ["hello-fcgi", "hello-scgi", "hello-gthread", "hello-tornado", "hello-pywsgi", "hello-cgi"])
def test_restart_under_load_fails_no_request(host, app):
    reload_under_load(host, app, "restart", at_least=5)


@pytest.mark.apps("hello-spawn")
def test_spawn_fcgi_reload_replaces_every_process_and_fails_no_request(host):
    """A reload (what every deploy does for spawn-fcgi): a new set takes the socket over, the old
    one finishes and exits, no request fails; each process runs as the app's user."""
    before = {p.pid for p in host.process.filter(user="hello-spawn")}
    reload_under_load(host, "hello-spawn")
    after = {p.pid for p in host.process.filter(user="hello-spawn")}
    assert len(before) == len(after) == 3 and not before & after, (before, after)
    assert [p.user for p in host.process.filter(comm="spawn-fcgi")] == [], "spawn-fcgi itself does not stay"


def daemon_processes(host, app):
    """Apache's main pid and the mod_wsgi daemon processes it runs ("(wsgi:<app>)")."""
    main = int(host.run("systemctl show --property=MainPID --value %s.service", app).stdout)
    listing = host.check_output("ps -o pid=,ppid=,args= --ppid %s", str(main))
    return main, {int(line.split()[0]) for line in listing.splitlines() if line.split()[2].startswith("(wsgi:")}


@pytest.mark.apps("hello-wsgi")
def test_mod_wsgi_reload_restarts_the_daemons_only_and_fails_no_request(host):
    """What every deploy does for mod_wsgi: the daemon processes restart on the live release
    while Apache keeps its port; no request fails. Its build packages are gone."""
    main, before = daemon_processes(host, "hello-wsgi")
    reload_under_load(host, "hello-wsgi")
    main_after, after = daemon_processes(host, "hello-wsgi")
    assert main_after == main, "Apache itself is not restarted"
    assert len(before) == len(after) == 2 and not before & after, (before, after)
    assert {p.user for p in host.process.filter(ppid=main)} == {"hello-wsgi"}
    for package in ("apache2-dev", "gcc"):
        assert not host.package(package).is_installed, f"{package} was kept after building mod_wsgi"
    assert not host.service("apache2.service").is_running


@pytest.mark.apps("hello-modpy")
def test_mod_python_reload_is_a_graceful_restart_that_fails_no_request(host):
    """mod_python's reload (every deploy): Apache restarts gracefully, its children are replaced
    (each loads the app again), no request fails."""
    main = int(host.run("systemctl show --property=MainPID --value hello-modpy.service").stdout)
    children = lambda: {p.pid for p in host.process.filter(ppid=main, comm="apache2")}  # noqa: E731
    before = children()
    reload_under_load(host, "hello-modpy")
    after = children()
    assert len(before) == len(after) == 3 and not before & after, (before, after)
    assert {p.user for p in host.process.filter(ppid=main)} == {"hello-modpy"}


def test_mod_python_is_refused_on_debian_13_before_anything_changes(host):
    """Debian 13 has no mod_python: site.yml's app tier stops before any app changes, naming the
    app and why."""
    if host.system_info.release.split(".")[0] != "13":
        pytest.skip("Debian 13 only")
    result = run_playbook("playbooks/app.yml", {"servers_apps_not_here": []}, limit=host.backend.get_hostname())
    assert result.returncode != 0
    assert "hello-modpy: server mod_python runs on Debian 12 and older only" in result.stdout, result.stdout[-3000:]
    assert "changed=0" in result.stdout
    assert not host.user("hello-modpy").exists and not host.file("/srv/hello-modpy").exists
    assert not host.package("libapache2-mod-python").is_installed


def test_removed_app_left_nothing(host):
    for path in ("/srv/hello-tmp", "/etc/systemd/system/hello-tmp.service",
                 "/etc/systemd/system/hello-tmp.socket", "/run/hello-tmp.sock", "/run/apache-hello-tmp",
                 "/etc/nginx/sites-enabled/hello-tmp.conf"):
        assert not host.file(path).exists, path
    assert not host.user("hello-tmp").exists
    assert not host.group("hello-tmp").exists
    assert http(host, "/", host_header="tmp.test")["status"] is None


def test_nginx_config_valid(host):
    assert host.run("nginx -t").rc == 0


def upstream_block(site, app):
    match = re.search(rf"^upstream {app}_app {{\n(.*?)^}}", site, re.M | re.S)
    assert match, site
    return match.group(1)


@pytest.mark.apps("hello-gthread", "hello-gevent")
def test_upstream_keepalive_spares_time_wait(host):
    """A few thousand requests through nginx to TCP upstreams, with keep-alive (hello-gthread) and
    without (hello-gevent, keepalive: 0)."""
    requests = 3000
    figures = {"requests": requests}
    for app, keep in (("hello-gthread", True), ("hello-gevent", False)):
        port = TCP_PORTS[app]
        before = time_wait(host, port)
        assert drive(host, APPS[app][0], requests, path=APPS[app][1] + "/healthz") == requests
        figures[app] = {"port": port, "keepalive": keep, "time_wait": time_wait(host, port) - before}
    out = RESULTS / f"upstream-keepalive-{host.backend.get_hostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    assert figures["hello-gthread"]["time_wait"] < requests / 20, figures
    assert figures["hello-gevent"]["time_wait"] > requests / 2, figures
    site = host.file("/etc/nginx/sites-enabled/hello-gthread.conf").content_string
    assert "keepalive 64;" in upstream_block(site, "hello-gthread")
    assert "keepalive" not in upstream_block(site, "hello-gevent")


@each_app
def test_the_app_sees_the_matched_host_never_the_raw_header(host, app):
    """A client's "Host: name:junk" must not reach the app: nginx passes $host, not $http_host."""
    server_name = APPS[app][0]
    response = get(host, app, "/api/info", host_header=f"{server_name}:evil.example",
                   headers={"X-Forwarded-Host": "evil.example"})
    assert response["status"] == 200
    assert json.loads(response["body"])["host"] == server_name


@pytest.mark.apps("hello-sync")
def test_env_values_reach_the_app_exactly(host):
    env = process_env(host, "hello-sync")
    assert env["HELLO_AWKWARD"] == "two\nlines \"double\" 'single' back\\slash $HOME `id` Grüß"
    assert env["HELLO_INJECT"] == 'x"\nINJECTED=1'
    assert "INJECTED" not in env, "a value started a second variable"


@pytest.mark.apps("hello-cgi")
def test_cgi_runs_a_process_per_request_as_the_app_user(host):
    pids = {json.loads(get(host, "hello-cgi", "/api/info")["body"])["pid"] for _ in range(3)}
    assert len(pids) == 3, "each request is a new process"
    fcgiwrap = host.process.filter(comm="fcgiwrap")
    assert fcgiwrap and {p.user for p in fcgiwrap} == {"hello-cgi"}, "the app's own fcgiwrap, never www-data's"
    # Debian's shared one: its socket disabled (its service has no [Install]: the socket starts it).
    assert not host.service("fcgiwrap.socket").is_enabled
    for unit in ("fcgiwrap.socket", "fcgiwrap.service"):
        assert not host.service(unit).is_running, f"Debian's shared {unit}"
    assert not host.socket("unix:///run/fcgiwrap.socket").is_listening
