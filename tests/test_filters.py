"""The filter that decides the nginx <-> app contract, and checks webstack_apps."""

import hashlib
import importlib.util
import pathlib

import pytest
from ansible.errors import AnsibleFilterError

SPEC = importlib.util.spec_from_file_location(
    "webstack_filters", pathlib.Path(__file__).resolve().parents[1] / "plugins/filter/webstack.py"
)
webstack = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(webstack)


def app(**overrides):
    base = {"name": "hello", "source": "/src/hello", "wsgi_app": "hello:create_app()"}
    base.update(overrides)
    return base


def test_defaults_are_filled_and_contract_derived():
    [normalized] = webstack.webstack_apps([app()])
    assert normalized["server"] == "gunicorn"
    assert normalized["protocol"] == "http"
    assert normalized["listen"] == "/run/hello.sock"
    assert normalized["domains"] == ["hello"]
    assert normalized["root"] == "/srv/hello"
    assert normalized["state"] == "present"
    assert normalized["static"] == [] and normalized["env"] == {} and normalized["gunicorn"] == {}


def test_the_same_listen_address_reaches_nginx():
    apps = [app(static=[{"url": "/static/", "dir": "hello/static"}], domains=["a.test", "b.test"])]
    [normalized] = webstack.webstack_apps(apps)
    [site] = webstack.webstack_nginx_sites(apps)
    assert site["upstream"] == {"protocol": "http", "servers": ["unix:" + normalized["listen"]], "keepalive": 0}
    assert site["server_names"] == ["a.test", "b.test"]
    assert site["static"] == [
        {"location": "/static/", "path": "/srv/hello/current/src/hello/static/", "expires": "7d"}
    ]


def test_custom_root_moves_static_path():
    [site] = webstack.webstack_nginx_sites([app(root="/srv/apps/hello", static=[{"url": "/s/", "dir": "static/"}])])
    assert site["static"][0]["path"] == "/srv/apps/hello/current/src/static/"


def test_absent_apps_are_kept_with_their_state():
    sites = webstack.webstack_nginx_sites([app(), app(name="old", state="absent")])
    assert [(s["name"], s["state"]) for s in sites] == [("hello", "present"), ("old", "absent")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (app(name="Hello"), r"webstack_apps\[0\]\.name"),
        (app(name="9lives"), r"webstack_apps\[0\]\.name"),
        (app(server="mod_perl"), r"webstack_apps\[0\]\.server: must be one of gunicorn"),
        (app(wsgi_app=""), r"webstack_apps\[0\]\.wsgi_app"),
        (app(source=None), r"webstack_apps\[0\]\.source"),
        (app(domains=[]), r"webstack_apps\[0\]\.domains"),
        (app(domains="example.com"), r"webstack_apps\[0\]\.domains"),
        (app(state="gone"), r"webstack_apps\[0\]\.state"),
        (app(static=[{"url": "static", "dir": "s"}]), r"url must start and end with /"),
        (app(static=[{"url": "/s/", "dir": "/etc"}]), r"dir must be a directory inside the app source"),
        (app(static=[{"url": "/s/", "dir": "../x"}]), r"dir must be a directory inside the app source"),
        (app(static=[{"url": "/s/"}]), r"each entry needs url and dir"),
        (app(env=["A=1"]), r"webstack_apps\[0\]\.env: must be a dict"),
        (app(colour="blue"), r"webstack_apps\[0\]\.colour: unknown key"),
        (app(listen="8001"), r"webstack_apps\[0\]\.listen: must be host:port"),
        (app(listen="/tmp/x.sock"), r"webstack_apps\[0\]\.listen: must be host:port"),
        (app(listen="127.0.0.1:70000"), r"webstack_apps\[0\]\.listen: port out of range"),
        (app(keepalive=8), r"keepalive: only TCP listeners"),
        (app(listen="127.0.0.1:8001", keepalive=-1), r"keepalive: must be a whole number"),
        (app(listen="127.0.0.1:8001", keepalive=True), r"keepalive: must be a whole number"),
        (app(listen="127.0.0.1:8001", server="uwsgi", keepalive=4), r"the uwsgi protocol has no keep-alive"),
        (app(listen="127.0.0.1:8001", server="scgi", keepalive=4), r"the scgi protocol has no keep-alive"),
        (app(uwsgi=[]), r"webstack_apps\[0\]\.uwsgi: must be a dict"),
        ("hello", r"webstack_apps\[0\] must be a dict"),
        (app(domains=["localhost; return 200 injected"]), r"webstack_apps\[0\]\.domains: 'localhost; return 200 injected' is not a host name"),
        (app(domains=["a.test b.test"]), r"webstack_apps\[0\]\.domains: 'a.test b.test' is not a host name"),
        (app(domains=["ok.test", "x.test{"]), r"webstack_apps\[0\]\.domains: 'x.test\{'"),
        (app(domains=["~^www\\d+\\.example\\.com$"]), r"domains: .* an nginx ~regex needs domains_regex: true"),
        (app(domains=["~^a;return 200 x"], domains_regex=True), r"webstack_apps\[0\]\.domains"),
        (app(domains=["a.test"], domains_regex="yes"), r"webstack_apps\[0\]\.domains_regex: must be true or false"),
        (app(domains=["x" * 64 + ".test"]), r"webstack_apps\[0\]\.domains"),
        (app(static=[{"url": "/s/", "dir": "a;b"}]), r"webstack_apps\[0\]\.static: url and dir may hold"),
        (app(static=[{"url": "/s/", "dir": "a b"}]), r"webstack_apps\[0\]\.static: url and dir may hold"),
        (app(root="/srv/x; return 200"), r"webstack_apps\[0\]\.root: must be a directory below /srv/"),
        (app(root="srv/x"), r"webstack_apps\[0\]\.root: must be a directory below /srv/"),
        (app(env={"A B": "1"}), r"webstack_apps\[0\]\.env: 'A B' is not an environment variable name"),
        (app(env={"A": {"b": 1}}), r"webstack_apps\[0\]\.env\.A: must be a string, a number or a boolean"),
        (app(secret_env={"A": None}), r"webstack_apps\[0\]\.secret_env\.A: must be a string"),
    ],
)
def test_bad_apps_name_the_field(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps([bad])


def test_duplicate_names_are_refused():
    with pytest.raises(AnsibleFilterError, match="repeated: hello"):
        webstack.webstack_apps([app(), app()])


def test_not_a_list_is_refused():
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        webstack.webstack_apps({"name": "hello"})


def test_filters_are_registered():
    assert set(webstack.FilterModule().filters()) == {
        "webstack_apps", "webstack_nginx_sites", "webstack_bad_server_names", "systemd_env_value",
        "webstack_select_apps", "webstack_unused_server_packages", "webstack_layout",
        "webstack_databases", "webstack_unavailable_servers",
        "webstack_database_url", "webstack_firewall_rules", "webstack_python_app_vars", "nginx_features",
        "nginx_subject_alt_names", "nginx_access_problems", "nginx_certificate_path", "webstack_lead_hosts",
        "webstack_batch_apps", "webstack_python_app_problems",
        "nginx_public_sites",
    }


@pytest.mark.parametrize("name", [
    "localhost", "example.com", "www.example.com", "*.example.com", ".example.org", "_", "xn--bcher-kva.example",
    "under_score.test", "10.0.0.1", "a" * 63 + ".test",
])
def test_host_names_pass(name):
    assert webstack.bad_server_names([name]) == []
    [normalized] = webstack.webstack_apps([app(domains=[name])])
    assert normalized["domains"] == [name] and normalized["domains_regex"] is False


@pytest.mark.parametrize("name", [
    "localhost;", "a b", "a\tb", "a\nb", "a{", "a}", '"a"', "'a'", "a#b", "a$b", "a/b", "a:80", "", "*", "www.*",
    "a..b", "a.", "~^a$",
])
def test_anything_else_is_refused(name):
    assert webstack.bad_server_names([name]) == [name]


def test_a_regex_passes_only_when_asked_for():
    regex = "~^(?<sub>[a-z]+)\\.example\\.com$"
    assert webstack.bad_server_names([regex]) == [regex]
    assert webstack.bad_server_names([regex], allow_regex=True) == []
    [site] = webstack.webstack_nginx_sites([app(domains=[regex], domains_regex=True)])
    assert site["server_names"] == [regex] and site["server_names_regex"] is True
    assert webstack.bad_server_names(["~^a b$", "~a;b", "~a{2}", "~a'"], allow_regex=True) == ["~^a b$", "~a;b", "~a{2}", "~a'"]


@pytest.mark.parametrize(("value", "written"), [
    ("plain", '"plain"'),
    ("Grüß", '"Grüß"'),
    ("two\nlines", '"two\nlines"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("$HOME and `id`", '"\\$HOME and \\`id\\`"'),
    ("it's", '"it\'s"'),
    ('x"\nB=injected', '"x\\"\nB=injected"'),
    (3, '"3"'),
    (True, '"True"'),
])
def test_env_values_are_written_in_systemd_quoting(value, written):
    assert webstack.systemd_env_value(value) == written


def test_a_nul_cannot_be_written():
    with pytest.raises(AnsibleFilterError, match="NUL"):
        webstack.systemd_env_value("a\0b")


@pytest.mark.parametrize(
    ("server", "protocol"), [("gunicorn", "http"), ("uwsgi", "uwsgi"), ("fastcgi", "fastcgi"), ("scgi", "scgi")]
)
def test_one_variable_picks_the_protocol(server, protocol):
    [normalized] = webstack.webstack_apps([app(server=server)])
    [site] = webstack.webstack_nginx_sites([app(server=server)])
    assert normalized["protocol"] == site["upstream"]["protocol"] == protocol
    assert site["upstream"]["servers"] == ["unix:/run/hello.sock"]


@pytest.mark.parametrize(
    ("server", "keepalive"), [("gunicorn", 64), ("tornado", 64), ("fastcgi", 0), ("uwsgi", 0), ("scgi", 0)]
)
def test_tcp_listeners_keep_upstream_connections_where_the_protocol_can(server, keepalive):
    [site] = webstack.webstack_nginx_sites([app(server=server, listen="127.0.0.1:8001")])
    assert site["upstream"]["servers"] == ["127.0.0.1:8001"]
    assert site["upstream"]["keepalive"] == keepalive


def test_keepalive_can_be_set_or_turned_off():
    sites = webstack.webstack_nginx_sites([
        app(listen="127.0.0.1:8001", keepalive=0), app(name="two", listen="[::1]:8002", keepalive=64),
    ])
    assert [s["upstream"]["keepalive"] for s in sites] == [0, 64]
    assert sites[1]["upstream"]["servers"] == ["[::1]:8002"]


def test_several_apps_get_their_own_socket_and_site():
    sites = webstack.webstack_nginx_sites([app(name="one", domains=["one.test"]), app(name="two", domains=["two.test"])])
    assert [s["upstream"]["servers"] for s in sites] == [["unix:/run/one.sock"], ["unix:/run/two.sock"]]
    assert [s["server_names"] for s in sites] == [["one.test"], ["two.test"]]


def test_apps_on_the_same_host_names_share_one_server_under_prefixes():
    apps = [
        app(name="shop", domains=["example.test", "www.example.test"], static=[{"url": "/static/", "dir": "s"}]),
        app(name="blog", domains=["www.example.test", "example.test"], prefix="/blog", server="uwsgi",
            static=[{"url": "/static/", "dir": "blog/static"}]),
        app(name="wiki", domains=["example.test", "www.example.test"], prefix="/wiki/", server="scgi"),
        app(name="other", domains=["other.test"]),
    ]
    sites = webstack.webstack_nginx_sites(apps)
    assert [(s["name"], s["state"]) for s in sites] == [
        ("shop", "present"), ("other", "present"), ("blog", "absent"), ("wiki", "absent"),
    ]
    shop = sites[0]
    assert shop["prefix"] == "/" and shop["server_names"] == ["example.test", "www.example.test"]
    assert [(m["name"], m["prefix"], m["upstream"]["protocol"]) for m in shop["mounts"]] == [
        ("blog", "/blog/", "uwsgi"), ("wiki", "/wiki/", "scgi"),
    ]
    assert shop["mounts"][0]["static"] == [
        {"location": "/blog/static/", "path": "/srv/blog/current/src/blog/static/", "expires": "7d"}
    ]
    assert shop["static"][0]["location"] == "/static/"
    assert sites[1]["mounts"] == []


def test_a_server_of_prefixed_apps_only_is_named_after_the_first_by_name():
    sites = webstack.webstack_nginx_sites([
        app(name="zeta", domains=["x.test"], prefix="/z"), app(name="alpha", domains=["x.test"], prefix="/a"),
    ])
    assert [(s["name"], s["state"]) for s in sites] == [("alpha", "present"), ("zeta", "absent")]
    assert sites[0]["prefix"] == "/a/" and sites[0]["mounts"][0]["prefix"] == "/z/"


def test_an_absent_owner_hands_the_server_to_the_next_app():
    sites = webstack.webstack_nginx_sites([
        app(name="top", domains=["x.test"], state="absent"), app(name="sub", domains=["x.test"], prefix="/sub"),
    ])
    assert [(s["name"], s["state"]) for s in sites] == [("sub", "present"), ("top", "absent")]


@pytest.mark.parametrize(
    ("apps", "message"),
    [
        ([app(prefix="blog")], r"webstack_apps\[0\]\.prefix: must be a URL path"),
        ([app(prefix="/a b/")], r"webstack_apps\[0\]\.prefix: must be a URL path"),
        ([app(prefix="/../etc/")], r"webstack_apps\[0\]\.prefix: must be a URL path"),
        ([app(prefix=3)], r"webstack_apps\[0\]\.prefix: must be a URL path"),
        ([app(name="a", domains=["x.test"]), app(name="b", domains=["x.test"])],
         r"webstack_apps\[1\]\.prefix: / on x.test is already webstack_apps\[0\] \(a\)"),
        ([app(name="a", domains=["x.test"], prefix="/p"), app(name="b", domains=["x.test"], prefix="/p/")],
         r"webstack_apps\[1\]\.prefix: /p/ on x.test"),
        ([app(name="a", domains=["x.test", "y.test"]), app(name="b", domains=["x.test"], prefix="/b")],
         r"webstack_apps\[1\]\.domains: shares x.test with webstack_apps\[0\]"),
    ],
)
def test_bad_prefixes_and_host_names_name_the_field(apps, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_nginx_sites(apps)


def test_a_prefix_is_normalised_to_end_with_a_slash():
    [normalized] = webstack.webstack_apps([app(prefix="/blog")])
    assert normalized["prefix"] == "/blog/"
    assert webstack.webstack_apps([app()])[0]["prefix"] == "/"


def test_the_health_check_asks_for_a_host_the_app_answers_to():
    [normalized] = webstack.webstack_apps([app(domains=["*.example.com", ".example.org", "www.example.net"])])
    # status 0: any answer below 500 (an app without a health route still passes).
    assert normalized["healthcheck"] == {"path": "/healthz", "host": "example.org", "status": 0, "timeout": 10}
    [wild] = webstack.webstack_apps([app(domains=["*.example.com"])])
    assert wild["healthcheck"]["host"] == "localhost"
    [given] = webstack.webstack_apps([app(healthcheck={"path": "/-/ready", "status": 204, "timeout": 3})])
    assert given["healthcheck"] == {"path": "/-/ready", "host": "hello", "status": 204, "timeout": 3}
    assert webstack.webstack_apps([app(healthcheck={"path": ""})])[0]["healthcheck"]["path"] == ""


@pytest.mark.parametrize(("healthcheck", "message"), [
    ({"url": "/x"}, r"webstack_apps\[0\]\.healthcheck: must be a dict of host, path, status, timeout"),
    ("/healthz", r"webstack_apps\[0\]\.healthcheck: must be a dict"),
    ({"path": "healthz"}, r"healthcheck\.path: must be a URL path"),
    ({"path": "/a b"}, r"healthcheck\.path: must be a URL path"),
    ({"host": "a;b"}, r"healthcheck\.host: must be a host name"),
    ({"status": "200"}, r"healthcheck\.status: must be a whole number from 100 to 599"),
    ({"status": 99}, r"healthcheck\.status"),
    ({"timeout": 0}, r"healthcheck\.timeout"),
])
def test_bad_health_checks_name_the_field(healthcheck, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps([app(healthcheck=healthcheck)])


def test_deploy_settings_have_defaults():
    [normalized] = webstack.webstack_apps([app()])
    assert normalized["pre_activate"] == [] and normalized["keep_releases"] == 5
    [given] = webstack.webstack_apps([app(pre_activate=["flask --app hello db-upgrade"], keep_releases=2)])
    assert given["pre_activate"] == ["flask --app hello db-upgrade"] and given["keep_releases"] == 2


@pytest.mark.parametrize(("bad", "message"), [
    (app(pre_activate="migrate"), r"webstack_apps\[0\]\.pre_activate: must be a list of commands"),
    (app(pre_activate=["ok", ""]), r"webstack_apps\[0\]\.pre_activate"),
    (app(pre_activate=[["a", "b"]]), r"webstack_apps\[0\]\.pre_activate"),
    (app(keep_releases=0), r"webstack_apps\[0\]\.keep_releases: must be a whole number of releases, 1 or more"),
    (app(keep_releases="5"), r"webstack_apps\[0\]\.keep_releases"),
])
def test_bad_deploy_settings_name_the_field(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps([bad])


def test_deploy_picks_apps_by_name():
    apps = webstack.webstack_apps([app(name="a"), app(name="b"), app(name="c"), app(name="gone", state="absent")])
    assert [a["name"] for a in webstack.webstack_select_apps(apps)] == ["a", "b", "c"]
    assert [a["name"] for a in webstack.webstack_select_apps(apps, "c, a")] == ["a", "c"]
    assert [a["name"] for a in webstack.webstack_select_apps(apps, ["b"])] == ["b"]
    with pytest.raises(AnsibleFilterError, match=r"webstack_deploy_apps: 'shop' is not a present app .*there are: a, b, c"):
        webstack.webstack_select_apps(apps, "a,shop")
    with pytest.raises(AnsibleFilterError, match=r"'gone' is not a present app"):
        webstack.webstack_select_apps(apps, "gone")
    # site.yml: absent apps too, to remove them
    assert [a["name"] for a in webstack.webstack_select_apps(apps, absent=True)] == ["a", "b", "c", "gone"]
    assert [a["name"] for a in webstack.webstack_select_apps(apps, "gone,b", absent=True)] == ["b", "gone"]
    with pytest.raises(AnsibleFilterError, match=r"'shop' is not an app of webstack_apps .*there are: a, b, c, gone"):
        webstack.webstack_select_apps(apps, "shop", absent=True)


@pytest.mark.parametrize("source", [
    "/src/hello",
    {"git": "https://git.example.com/hello.git", "version": "v1.2"},
    {"git": "/srv/git/hello", "version": "0123abcd"},
    {"archive": "/tmp/hello.tar.gz"},
    {"archive": "dist/hello-1.0-py3-none-any.whl"},
    {"archive": "https://example.com/hello.zip", "checksum": "sha256:" + "a" * 64},
])
def test_sources_that_pass(source):
    assert webstack.source_problem(source) == ""
    assert webstack.webstack_apps([app(source=source)])[0]["source"] == source


@pytest.mark.parametrize(("source", "message"), [
    ({"git": "https://git.example.com/hello.git"}, r"source: a git source needs a version"),
    ({"git": "https://git.example.com/hello.git", "version": ""}, r"source: a git source needs a version"),
    ({"git": "x", "version": "main", "depth": 1}, r"source: unknown key 'depth' for a git source"),
    ({"archive": "https://example.com/hello.tar.gz"}, r"source: an archive at a URL needs a checksum"),
    ({"archive": "/tmp/hello.rar"}, r"source: archive must be a path or URL ending in"),
    ({"archive": "/tmp/a.zip", "checksum": "abc"}, r"source: checksum must look like sha256"),
    ({"archive": "/tmp/a.zip", "subdir": "x"}, r"source: unknown key 'subdir' for an archive source"),
    ({"url": "https://example.com"}, r"source: a source dict needs git or archive"),
    (["/src"], r"source: must be a directory"),
    ("", r"source: is required"),
])
def test_malformed_sources_name_the_field(source, message):
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\." + message):
        webstack.webstack_apps([app(source=source)])


# --- Tiers on many hosts: webstack_layout and the addresses it gives ---------------------------

HOSTVARS = {
    "web1": {"ansible_default_ipv4": {"address": "10.0.0.2"}},
    "db1": {"ansible_default_ipv4": {"address": "10.0.0.30"}},
    "app1": {"ansible_default_ipv4": {"address": "10.0.0.11"}},
    "app2": {"ansible_default_ipv4": {"address": "192.168.1.5"}, "webstack_private_address": "10.0.0.12"},
    "app6": {"webstack_private_address": "fd00::6"},
}


def layout(web, app_hosts, hostvars=HOSTVARS):
    return webstack.webstack_layout({"all": [], "web": web, "app": app_hosts}, hostvars)


@pytest.mark.parametrize(("web", "app_hosts", "split"), [
    (["one"], ["one"], False),          # the sandbox: one host does it all
    ([], ["one"], False),
    ([], ["app1", "app2"], False),      # no nginx here: nothing reaches the apps over the network
    (["app1", "app2"], ["app1", "app2"], False),  # whole stacks side by side, each its own
    (["web1"], ["app1"], True),
    (["web1", "app1"], ["app1"], True),  # web1's nginx reaches app1 over the network
    (["app1"], ["app1", "app2"], True),  # app1's nginx balances app1 and app2
    (["web1"], ["app1", "app2"], True),
])
def test_the_tiers_are_split_unless_one_host_is_both(web, app_hosts, split):
    assert webstack.webstack_layout({"web": web, "app": app_hosts})["split"] is split


def test_split_tiers_listen_on_each_app_hosts_private_address():
    tiers = layout(["web1"], ["app1", "app2"])
    # The variable wins over the fact; web hosts' addresses are for the app hosts' firewall.
    assert tiers["addresses"] == {"web1": "10.0.0.2", "app1": "10.0.0.11", "app2": "10.0.0.12"}
    [on_app2] = webstack.webstack_apps([app(port=8001)], tiers, "app2")
    assert on_app2["listen"] == "10.0.0.12:8001"
    assert on_app2["keepalive"] == 64
    [site] = webstack.webstack_nginx_sites([app(port=8001)], tiers)
    assert site["upstream"]["servers"] == ["10.0.0.11:8001", "10.0.0.12:8001"]


def test_an_ipv6_private_address_is_bracketed():
    [on_app6] = webstack.webstack_apps([app(port=9000, server="uwsgi")], layout(["web1"], ["app6"]), "app6")
    assert on_app6["listen"] == "[fd00::6]:9000" and on_app6["keepalive"] == 0


def test_one_host_keeps_the_unix_socket_and_ignores_the_port():
    [normalized] = webstack.webstack_apps([app(port=8001)], layout(["one"], ["one"]), "one")
    assert normalized["listen"] == "/run/hello.sock"
    assert normalized["upstream_servers"] == ["unix:/run/hello.sock"]


@pytest.mark.parametrize(("apps", "message"), [
    ([app()], r"webstack_apps\[0\]\.port: is required when the web and app hosts differ"),
    ([app(port=8001, listen="0.0.0.0:8001")], r"webstack_apps\[0\]\.listen: is per host when web and app hosts differ"),
    ([app(port=70000)], r"webstack_apps\[0\]\.port: must be a TCP port"),
    ([app(port="8001")], r"webstack_apps\[0\]\.port: must be a TCP port"),
    ([app(port=8001), app(name="shop", port=8001)], r"each app needs its own port on the app hosts, repeated: 8001"),
])
def test_split_tiers_need_a_port_per_app(apps, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps(apps, layout(["web1"], ["app1"]), "app1")


def test_spawn_fcgi_takes_the_unix_socket_only():
    """spawn-fcgi reloads by renaming a new socket over the old one: TCP cannot, so both ways of
    getting TCP are refused naming the server, and the unix socket passes."""
    [one] = webstack.webstack_apps([app(server="spawn-fcgi", spawn_fcgi={"processes": 2})])
    assert one["listen"] == "/run/hello.sock" and one["upstream_servers"] == ["unix:/run/hello.sock"]
    for given, tiers in ((app(server="spawn-fcgi", listen="127.0.0.1:9000"), None),
                         (app(server="spawn-fcgi", port=9000), layout(["web1"], ["app1"]))):
        with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.server: spawn-fcgi binds its unix socket"):
            webstack.webstack_apps([given], tiers, "app1")


def test_mod_wsgi_takes_a_tcp_port_of_1024_or_more_only():
    """mod_wsgi's Apache runs as the app's user and has no unix-socket Listen: host:port (or a
    port on split tiers) passes and gets proxy_pass with keep-alive, a unix socket or a
    privileged port is refused naming why; its Apache goes with the last app that runs it."""
    [one] = webstack.webstack_apps([app(server="mod_wsgi", listen="127.0.0.1:8090", mod_wsgi={"processes": 3})])
    assert (one["protocol"], one["listen"], one["keepalive"]) == ("http", "127.0.0.1:8090", 64)
    assert webstack.webstack_python_app_vars(one)["mod_wsgi_overrides"] == {"processes": 3}
    [split] = webstack.webstack_apps([app(server="mod_wsgi", port=8090)], layout(["web1"], ["app1"]), "app1")
    assert split["listen"].endswith(":8090")
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.listen: mod_wsgi runs an Apache .* TCP only"):
        webstack.webstack_apps([app(server="mod_wsgi")])
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.listen: .*below 1024 \(got 80\)"):
        webstack.webstack_apps([app(server="mod_wsgi", listen="127.0.0.1:80")])
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.port: .*below 1024 \(got 900\)"):
        webstack.webstack_apps([app(server="mod_wsgi", port=900)], layout(["web1"], ["app1"]), "app1")
    assert "apache2-bin" not in webstack.webstack_unused_server_packages([one])
    assert "apache2-bin" in webstack.webstack_unused_server_packages([{**one, "state": "absent"}])


def test_mod_python_is_refused_on_debian_13_naming_the_app():
    """Debian 13 has no libapache2-mod-python: site.yml and python_app stop before changing
    anything; an absent mod_python app, other servers and Debian 12 pass."""
    apps = webstack.webstack_apps([app(server="mod_python", listen="127.0.0.1:8091"),
                                   app(name="blog", domains=["blog.test"], server="mod_wsgi", listen="127.0.0.1:8092"),
                                   app(name="old", domains=["old.test"], server="mod_python", state="absent",
                                       listen="127.0.0.1:8093")])
    [problem] = webstack.webstack_unavailable_servers(apps, "13")
    assert problem.startswith("hello: server mod_python runs on Debian 12 and older only")
    assert "choose mod_wsgi" in problem
    assert webstack.webstack_unavailable_servers(apps, "12") == []
    assert (apps[0]["protocol"], apps[0]["keepalive"], apps[1]["keepalive"]) == ("http", 0, 64), "prefork: no keep-alive"
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.keepalive: mod_python serves one connection"):
        webstack.webstack_apps([app(server="mod_python", listen="127.0.0.1:8091", keepalive=4)])
    assert webstack.webstack_unavailable_servers(apps, "") == [], "no Debian version: apt will say"
    assert "apache2-bin" not in webstack.webstack_unused_server_packages(apps[:1]), "mod_python keeps Apache"
    assert "libapache2-mod-python" in webstack.webstack_unused_server_packages(apps[1:2])


def test_an_app_host_without_an_address_is_named():
    with pytest.raises(AnsibleFilterError, match=r"no private address for host app9 .*webstack_private_address"):
        layout(["web1"], ["app1", "app9"], {**HOSTVARS, "app9": {}})


def test_split_tiers_leave_static_files_to_the_app_hosts():
    apps = [app(port=8001, static=[{"url": "/static/", "dir": "hello/static"}])]
    [site] = webstack.webstack_nginx_sites(apps, layout(["web1"], ["app1"]))
    assert site["static"] == [], "the release is not on the web host"
    [site] = webstack.webstack_nginx_sites(apps, layout(["one"], ["one"]))
    assert site["static"][0]["location"] == "/static/"


# --- The database tier: database in webstack_apps, the db host, the firewall between tiers ------

def tiers(web, app_hosts, db):
    return webstack.webstack_layout({"web": web, "app": app_hosts, "db": db}, HOSTVARS)


def test_an_app_gets_a_database_named_after_it_reached_where_it_runs():
    three = tiers(["web1"], ["app1", "app2"], ["db1"])
    assert three["db_remote"] and three["addresses"]["db1"] == "10.0.0.30"
    [normalized] = webstack.webstack_apps([app(name="hello-shop", port=8001, database=True)], three, "app1")
    assert normalized["database"] == {"name": "hello_shop", "user": "hello_shop", "extensions": [],
                                      "host": "db1", "address": "10.0.0.30", "port": 5432}
    # On the db host itself the app reaches PostgreSQL on localhost.
    whole = tiers(["one"], ["one"], ["one"])
    assert not whole["db_remote"] and not whole["split"]
    [local] = webstack.webstack_apps([app(database={"name": "shop", "extensions": ["pg_trgm"]})], whole, "one")
    assert local["database"]["address"] == "127.0.0.1" and local["database"]["extensions"] == ["pg_trgm"]
    [without] = webstack.webstack_apps([app()], whole, "one")
    assert without["database"] is None


@pytest.mark.parametrize(("database", "groups", "message"), [
    (True, {"web": ["one"], "app": ["one"]}, r"webstack_apps\[0\]\.database: needs a host in the inventory group db"),
    ({"name": "Shop"}, {"app": ["one"], "db": ["one"]}, r"webstack_apps\[0\]\.database\.name: must be lowercase"),
    ({"user": "a;b"}, {"app": ["one"], "db": ["one"]}, r"webstack_apps\[0\]\.database\.user: must be lowercase"),
    ({"tables": 1}, {"app": ["one"], "db": ["one"]}, r"webstack_apps\[0\]\.database: must be true or a dict"),
    ({"extensions": "pg_trgm"}, {"app": ["one"], "db": ["one"]}, r"database\.extensions: must be a list"),
    ({"password": ""}, {"app": ["one"], "db": ["one"]}, r"database\.password: must be a non-empty string"),
])
def test_bad_databases_name_the_field(database, groups, message):
    with pytest.raises(AnsibleFilterError, match=message):
        webstack.webstack_apps([app(database=database)], webstack.webstack_layout(groups, HOSTVARS), "one")


def test_one_db_host_only():
    with pytest.raises(AnsibleFilterError, match=r"one host in group db, not 2 \(db1, db2\)"):
        webstack.webstack_layout({"app": ["app1"], "db": ["db1", "db2"]}, HOSTVARS)


def test_the_db_host_opens_each_database_to_the_other_app_hosts_only():
    apps = [app(port=8001, database=True), app(name="shop", port=8002, database={"password": "from-vault"}),
            app(name="plain", port=8003), app(name="gone", port=8004, database=True, state="absent")]
    databases = webstack.webstack_databases(apps, tiers(["web1"], ["app1", "db1"], ["db1"]))
    assert databases == [
        {"name": "hello", "user": "hello", "extensions": [], "clients": ["10.0.0.11"]},
        {"name": "shop", "user": "shop", "extensions": [], "clients": ["10.0.0.11"], "password": "from-vault"},
    ], "db1 reaches itself on localhost; an absent app keeps its data"


@pytest.mark.parametrize(("address", "password", "url"), [
    ("10.0.0.30", "abc123", "postgresql://hello:abc123@10.0.0.30:5432/hello"),
    ("fd00::30", "p@ss/w:rd", "postgresql://hello:p%40ss%2Fw%3Ard@[fd00::30]:5432/hello"),
])
def test_database_url_quotes_what_a_url_cannot_hold(address, password, url):
    database = {"name": "hello", "user": "hello", "address": address, "port": 5432}
    assert webstack.webstack_database_url(database, password) == url


def test_firewall_rules_follow_the_tiers():
    apps = [app(port=8001, database=True), app(name="shop", port=8002, server="uwsgi")]
    three = tiers(["web1"], ["app1", "app2"], ["db1"])
    assert webstack.webstack_firewall_rules(apps, three, "app1") == [
        {"name": "hello", "port": 8001, "sources": ["10.0.0.2"]},
        {"name": "shop", "port": 8002, "sources": ["10.0.0.2"]},
    ]
    assert webstack.webstack_firewall_rules(apps, three, "db1") == [
        {"name": "postgresql", "port": 5432, "sources": ["10.0.0.11", "10.0.0.12"]}]
    assert webstack.webstack_firewall_rules(apps, three, "web1") == []
    # One host does it all: unix sockets and localhost, nothing to open.
    assert webstack.webstack_firewall_rules(apps, tiers(["one"], ["one"], ["one"]), "one") == []


def test_a_rolling_batch_is_rendered_down_in_every_upstream():
    apps = [app(port=8001), app(name="shop", port=8002, server="uwsgi", domains=["shop.test"])]
    three = tiers(["web1"], ["app1", "app2"], ["db1"])
    sites = webstack.webstack_nginx_sites(apps, three, ["app2"])
    assert [site["upstream"]["down"] for site in sites] == [["10.0.0.12:8001"], ["10.0.0.12:8002"]]
    assert all("down" not in site["upstream"] for site in webstack.webstack_nginx_sites(apps, three))
    # Whole stacks on one host reach their own socket: nothing to drain there.
    [whole] = webstack.webstack_nginx_sites([app()], tiers(["one"], ["one"], []), ["one"])
    assert "down" not in whole["upstream"]
    with pytest.raises(AnsibleFilterError, match="cannot drain web1: not an app host"):
        webstack.webstack_nginx_sites(apps, three, ["web1"])


def _main_options(role):
    import yaml

    path = pathlib.Path(__file__).resolve().parents[1] / "roles" / role / "meta" / "argument_specs.yml"
    return set(yaml.safe_load(path.read_text())["argument_specs"]["main"]["options"])


def test_every_app_key_reaches_a_role_variable_that_exists():
    given = app(server="uwsgi", env={"A": "1"}, secret_env={"S": "x"}, uwsgi={"processes": 2},
                healthcheck={"path": "/up"}, pre_activate=["true"], keep_releases=3)
    [completed] = webstack.webstack_apps([given])
    result = webstack.webstack_python_app_vars(
        completed, {"DATABASE_URL": "postgresql://u:p@db/x"}, install_packages=False, rollback_to="")
    known = _main_options("python_app")
    for role in webstack.SERVER_ROLES:
        known |= _main_options(role)
    assert set(result) <= known, sorted(set(result) - known)
    assert result["python_app_server"] == "uwsgi"
    assert result["python_app_keep_releases"] == 3
    assert result["python_app_healthcheck_path"] == "/up"
    assert result["python_app_healthcheck_host"] == "hello"
    assert result["python_app_secret_env"] == {"S": "x", "DATABASE_URL": "postgresql://u:p@db/x"}
    assert result["python_app_install_packages"] is False
    assert result["uwsgi_overrides"] == {"processes": 2}
    assert result["gunicorn_overrides"] == {}
    # The one-place promise: every key of webstack_apps is used by the filter, nginx or the role.
    role_keys = set(webstack.PYTHON_APP_KEYS) | set(webstack.SERVER_ROLES) | {"healthcheck"}
    nginx_or_layout = {"domains", "domains_regex", "static", "keepalive", "prefix", "port", "database", "tls",
                       "nginx", "access"}
    assert webstack.KNOWN_KEYS == role_keys | nginx_or_layout


def test_tls_reaches_the_site_of_the_app():
    [site] = webstack.webstack_nginx_sites([app(tls=True)])
    assert site["tls"] == {}
    [site] = webstack.webstack_nginx_sites([app(tls={"certificate": "/etc/ssl/a.pem", "key": "/etc/ssl/a.key"})])
    assert site["tls"]["key"] == "/etc/ssl/a.key"
    [site] = webstack.webstack_nginx_sites([app(tls=False)])
    assert "tls" not in site


@pytest.mark.parametrize("tls", ["yes", {"cert": "/x"}, ["certificate"], {"acme": "yes"},
                                 {"acme": True, "certificate": "/a", "key": "/b"}])
def test_bad_tls_is_refused(tls):
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.tls"):
        webstack.webstack_apps([app(tls=tls)])


def test_a_refused_tls_never_shows_the_key():
    with pytest.raises(AnsibleFilterError) as refused:
        webstack.webstack_apps([app(tls={"certificate_content": "-----BEGIN CERT", "key_content": "PRIVATE-KEY-TEXT",
                                         "keyfile": "/x"})])
    assert "key_content" in str(refused.value) and "PRIVATE-KEY-TEXT" not in str(refused.value)


def test_acme_reaches_the_site_and_picks_the_certificate_path():
    [site] = webstack.webstack_nginx_sites([app(tls={"acme": True})])
    assert site["tls"] == {"acme": True}
    assert webstack.nginx_certificate_path(site, "/etc/nginx/tls", "/var/lib/acme") == "/var/lib/acme/hello/fullchain.pem"
    site["tls"] = {}
    assert webstack.nginx_certificate_path(site, "/etc/nginx/tls", "/var/lib/acme") == "/etc/nginx/tls/hello/fullchain.pem"
    site["tls"] = {"certificate": "/etc/ssl/x.pem", "key": "/etc/ssl/x.key"}
    assert webstack.nginx_certificate_path(site, "/etc/nginx/tls", "/var/lib/acme") == "/etc/ssl/x.pem"


def test_apps_of_one_server_agree_on_tls():
    apps = [app(tls=True), app(name="blog", domains=["hello"], prefix="/blog", tls={"port": 8443})]
    with pytest.raises(AnsibleFilterError, match="tls settings must agree"):
        webstack.webstack_nginx_sites(apps)
    sites = webstack.webstack_nginx_sites([app(tls=True), app(name="blog", domains=["hello"], prefix="/blog")])
    assert sites[0]["tls"] == {}


@pytest.mark.parametrize("output, expected", [
    ("nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.9 30 May 2023 (running with OpenSSL 3.0.17 1 Jul 2025)\n",
     {"version": "1.22.1", "openssl": "3.0.17", "http2_directive": False, "pq_groups": False}),
    ("nginx version: nginx/1.26.3\nbuilt with OpenSSL 3.5.1 1 Jul 2025\n",
     {"version": "1.26.3", "openssl": "3.5.1", "http2_directive": True, "pq_groups": True}),
    ("nginx version: nginx/1.25.1\nbuilt with OpenSSL 3.4.0\n",
     {"version": "1.25.1", "openssl": "3.4.0", "http2_directive": True, "pq_groups": False}),
    ("", {"version": "0", "openssl": "0", "http2_directive": False, "pq_groups": False}),
])
def test_nginx_features_come_from_nginx_v(output, expected):
    assert webstack.nginx_features(output) == expected


def test_subject_alt_names_of_server_names():
    names = ["Example.com", "*.example.com", ".example.org", "_", "~^www\\d+$", "127.0.0.1", "::1", "example.com"]
    assert webstack.nginx_subject_alt_names(names, "web1") == [
        "DNS:example.com", "DNS:*.example.com", "DNS:example.org", "IP:127.0.0.1", "IP:::1"]
    assert webstack.nginx_subject_alt_names(["_"], "web1") == ["DNS:web1"]


def test_site_settings_of_an_app_reach_its_server():
    [site] = webstack.webstack_nginx_sites([app(nginx={"limit_req_rate": 0, "client_max_body_size": "50m"})])
    assert site["limit_req_rate"] == 0 and site["client_max_body_size"] == "50m"
    with pytest.raises(AnsibleFilterError, match=r"webstack_apps\[0\]\.nginx"):
        webstack.webstack_apps([app(nginx={"server_tokens": True})])
    apps = [app(nginx={"limit_conn": 5}), app(name="blog", domains=["hello"], prefix="/blog", nginx={"limit_conn": 9})]
    with pytest.raises(AnsibleFilterError, match="nginx settings must agree"):
        webstack.webstack_nginx_sites(apps)


def test_tasks_app_hands_over_exactly_the_filters_variables():
    """playbooks/tasks/app.yml passes every variable the filter decides, each under its own name."""
    import yaml

    path = pathlib.Path(__file__).resolve().parents[1] / "playbooks" / "tasks" / "app.yml"
    [task] = [t for t in yaml.safe_load(path.read_text()) if "ansible.builtin.include_role" in t]
    handed = task["vars"]
    [completed] = webstack.webstack_apps([app()])
    decided = webstack.webstack_python_app_vars(completed, {}, install_packages=True, rollback_to="", lead_host="h")
    assert set(handed) == set(decided)
    assert all(value == f"{{{{ _webstack_app_vars.{name} }}}}" for name, value in handed.items()), handed


def test_access_checks_reach_nginx_below_the_apps_prefix():
    lua = {"location": "/admin/", "lua": {"tokens": ["t"]}}
    auth = {"location": "/api/private/", "auth_request": {"path": "/api/auth", "app": "hello"}}
    apps = [app(access=[lua]), app(name="blog", domains=["hello"], prefix="/blog", access=[auth])]
    site, blog = webstack.webstack_nginx_sites(apps)
    assert blog == {"name": "blog", "state": "absent"}, "one server for both: the site is hello's"
    assert site["access"] == [lua]
    assert site["mounts"][0]["access"] == [{**auth, "location": "/blog/api/private/"}]
    assert webstack.nginx_access_problems([site] + site["mounts"]) == []


@pytest.mark.parametrize(("access", "message"), [
    ("x", r"access: must be a list"),
    ([{"location": "/a/"}], r"access\[0\]: needs exactly one of lua and auth_request"),
    ([{"location": "/a/", "lua": {"tokens": ["t"]}, "auth_request": {"path": "/x"}}], "exactly one of"),
    ([{"location": "/", "lua": {"tokens": ["t"]}}], r"access\[0\]\.location: must be a URL path below /"),
    ([{"location": "/a b/", "lua": {"tokens": ["t"]}}], r"\.location"),
    ([{"location": "/a/;deny all", "lua": {"tokens": ["t"]}}], r"\.location"),
    ([{"location": "/a/", "lua": {"tokens": []}}], r"lua\.tokens: must be a non-empty list"),
    ([{"location": "/a/", "lua": {"tokens": "t"}}], r"lua\.tokens"),
    ([{"location": "/a/", "lua": {"tokens": [""]}}], r"lua\.tokens"),
    ([{"location": "/a/", "lua": {"tokens": ["t"], "header": "X-A\"; os.exit()"}}], r"lua\.header: must be a header name"),
    ([{"location": "/a/", "lua": {"tokens": ["t"], "secret": "x"}}], r"lua: must be a dict of header and tokens"),
    ([{"location": "/a/", "auth_request": {"path": "auth"}}], r"auth_request\.path: must be a URL path"),
    ([{"location": "/a/", "auth_request": {"path": "/auth", "app": "nope"}}], r"access\[0\]\.auth_request\.app: must be a present app"),
    ([{"location": "/a/", "where": 1, "lua": {"tokens": ["t"]}}], r"access\[0\]: must be a dict of"),
])
def test_bad_access_is_refused_without_printing_tokens(access, message):
    with pytest.raises(AnsibleFilterError, match=message) as raised:
        webstack.webstack_apps([app(access=access)])
    assert str(raised.value).startswith("webstack_apps[0].access")
    assert "'t'" not in str(raised.value)


def test_nginx_access_problems_name_the_mount_and_the_field():
    mounts = [{"name": "hello", "prefix": "/", "access": [{"location": "/a/", "lua": {"tokens": ["secret"]}}]},
              {"name": "blog", "prefix": "/blog/", "access": [{"location": "/other/", "auth_request": {"path": "/c", "app": "x"}}]}]
    problems = webstack.nginx_access_problems(mounts)
    assert problems == [
        "blog.access[0].location: must be a URL path below /blog/ (got '/other/')",
        "blog.access[0].auth_request.app: must be one of hello, blog (got 'x')",
    ]


def test_the_lead_host_is_the_first_of_the_play_that_runs_the_app():
    hostvars = {
        "a": {"webstack_apps": [{"name": "blog"}, {"name": "shop", "state": "absent"}]},
        "b": {"webstack_apps": [{"name": "shop"}, {"name": "hello"}]},
        "c": {"webstack_apps": [{"name": "hello"}, "not an app"]},
        "d": {},
    }
    assert webstack.webstack_lead_hosts(["a", "b", "c", "d"], hostvars) == {"blog": "a", "shop": "b", "hello": "b"}
    assert webstack.webstack_lead_hosts(["c", "b"], hostvars) == {"hello": "c", "shop": "b"}, "the play's order"


def test_the_batch_runs_each_app_once_in_every_hosts_own_order():
    def apps(*names):
        return {"_apps": [{"name": name} for name in names]}

    hostvars = {"a": apps("x", "y"), "b": apps("z", "y", "w"), "c": apps("y", "x"), "d": {}, "e": apps()}
    assert webstack.webstack_batch_apps(["a", "b"], hostvars, "_apps") == ["z", "x", "y", "w"]
    assert webstack.webstack_batch_apps(["b", "a"], hostvars, "_apps") == ["x", "z", "y", "w"]
    for hosts in (["a", "b"], ["b", "a"], ["a", "b", "d"]):
        order = webstack.webstack_batch_apps(hosts, hostvars, "_apps")
        for host in hosts:
            mine = [app["name"] for app in hostvars[host].get("_apps", [])]
            assert [name for name in order if name in mine] == mine, (hosts, host)
    # Orders that disagree: the first host's wins, each name still once.
    assert webstack.webstack_batch_apps(["a", "c"], hostvars, "_apps") == ["x", "y"]
    assert webstack.webstack_batch_apps(["d", "e", "a"], hostvars, "_apps") == ["x", "y"]
    assert webstack.webstack_batch_apps(["d"], hostvars, "_apps") == []


def test_a_cgi_app_gets_fastcgi_with_its_script_and_fcgiwrap_goes_with_the_last_one():
    given = [app(server="cgi"), app(name="blog", domains=["blog.test"])]
    apps = webstack.webstack_apps(given)
    assert apps[0]["protocol"] == "fastcgi"
    [site, other] = webstack.webstack_nginx_sites(given)
    assert site["upstream"]["script"] == "/srv/hello/current/webstack_cgi.py"
    assert "script" not in other["upstream"]
    apache = ["apache2-bin", "libapache2-mod-python"]
    assert webstack.webstack_unused_server_packages(apps) == [*apache, "spawn-fcgi"]
    assert webstack.webstack_unused_server_packages(apps[1:]) == [*apache[:1], "fcgiwrap", *apache[1:], "spawn-fcgi"]
    gone = webstack.webstack_apps([app(server="cgi", state="absent"), app(name="sp", server="spawn-fcgi")])
    assert webstack.webstack_unused_server_packages(gone) == [*apache[:1], "fcgiwrap", *apache[1:]]


def test_each_public_filter_has_its_own_documentation():
    """ansible-doc -t filter pyops.webstack.<name> reads plugins/filter/<name>.yml: one per filter,
    each with its own short description, options that the function takes."""
    import inspect

    import yaml

    directory = pathlib.Path(__file__).resolve().parents[1] / "plugins/filter"
    filters = webstack.FilterModule().filters()
    assert {path.stem for path in directory.glob("*.yml")} == set(filters)
    shorts = []
    for name, function in filters.items():
        doc = yaml.safe_load((directory / f"{name}.yml").read_text())["DOCUMENTATION"]
        assert doc["name"] == name
        shorts.append(doc["short_description"])
        parameters = list(inspect.signature(function).parameters)
        assert set(doc["options"]) - {"_input"} <= set(parameters[1:]), name
    assert len(set(shorts)) == len(shorts)
