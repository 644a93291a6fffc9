"""The filter that decides the nginx <-> app contract, and checks webstack_apps."""

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
    assert site["upstream"] == {"protocol": "http", "servers": ["unix:" + normalized["listen"]]}
    assert site["server_names"] == ["a.test", "b.test"]
    assert site["static"] == [
        {"location": "/static/", "path": "/srv/hello/current/src/hello/static/", "expires": "7d"}
    ]


def test_custom_root_moves_static_path():
    [site] = webstack.webstack_nginx_sites([app(root="/opt/hello", static=[{"url": "/s/", "dir": "static/"}])])
    assert site["static"][0]["path"] == "/opt/hello/current/src/static/"


def test_absent_apps_are_kept_with_their_state():
    sites = webstack.webstack_nginx_sites([app(), app(name="old", state="absent")])
    assert [(s["name"], s["state"]) for s in sites] == [("hello", "present"), ("old", "absent")]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (app(name="Hello"), r"webstack_apps\[0\]\.name"),
        (app(name="9lives"), r"webstack_apps\[0\]\.name"),
        (app(server="tornado"), r"webstack_apps\[0\]\.server: must be one of gunicorn"),
        (app(wsgi_app=""), r"webstack_apps\[0\]\.wsgi_app"),
        (app(source=None), r"webstack_apps\[0\]\.source"),
        (app(domains=[]), r"webstack_apps\[0\]\.domains"),
        (app(domains="example.com"), r"webstack_apps\[0\]\.domains"),
        (app(state="gone"), r"webstack_apps\[0\]\.state"),
        (app(static=[{"url": "static", "dir": "s"}]), r"url must start and end with /"),
        (app(static=[{"url": "/s/", "dir": "/etc"}]), r"dir must be relative"),
        (app(static=[{"url": "/s/", "dir": "../x"}]), r"dir must be relative"),
        (app(static=[{"url": "/s/"}]), r"each entry needs url and dir"),
        (app(env=["A=1"]), r"webstack_apps\[0\]\.env: must be a dict"),
        (app(colour="blue"), r"webstack_apps\[0\]\.colour: unknown key"),
        ("hello", r"webstack_apps\[0\] must be a dict"),
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
    assert set(webstack.FilterModule().filters()) == {"webstack_apps", "webstack_nginx_sites"}
