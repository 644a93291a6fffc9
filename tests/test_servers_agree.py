"""The one server table (roles/python_app/vars/main/servers.yml, which the filters read too) and
what must agree with it: python_app's argument spec, the nginx protocol table and specs, the
server roles, and the READMEs. This test names the place a new server's entry still misses."""

import importlib.util
import re

import pytest
import yaml

from webstack_testlib import ROLES, ROOT

SPEC = importlib.util.spec_from_file_location("webstack_filters_agree", ROOT / "plugins/filter/webstack.py")
webstack = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(webstack)


def load(*parts):
    return yaml.safe_load(ROOT.joinpath(*parts).read_text())


PYTHON_APP_SERVERS = load("roles/python_app/vars/main/servers.yml")["_python_app_servers"]
NGINX_PROTOCOLS = load("roles/nginx/vars/main.yml")["_nginx_protocols"]


def nginx_protocol_choices():
    spec = load("roles/nginx/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    sites = spec["nginx_sites"]["options"]
    return [sites["upstream"]["options"]["protocol"]["choices"],
            sites["mounts"]["options"]["upstream"]["options"]["protocol"]["choices"]]


def good_stop(stop):
    """A script in the release, or a signal and whom it goes to (systemctl kill --kill-whom)."""
    if set(stop) == {"script"}:
        return str(stop["script"]).endswith(".py")
    return set(stop) == {"signal", "whom"} and str(stop["signal"]).startswith("SIG") and stop["whom"] in ("main", "all")


# Each trait of a table entry and what its value must be (servers.yml explains them).
TRAITS = {
    "role": lambda v: isinstance(v, str) and v.startswith("pyops.webstack."),
    "facts": lambda v: isinstance(v, str) and v.isidentifier(),
    "protocol": lambda v: v in NGINX_PROTOCOLS,
    "script": lambda v: isinstance(v, str) and v.endswith(".py"),
    "listen": lambda v: v in ("unix", "tcp"),
    "own_socket": lambda v: v is True,
    "runtime_dir": lambda v: isinstance(v, str) and "<app>" in v,
    "keepalive": lambda v: v is False,
    "stop": lambda v: good_stop(v),
    "host_packages": lambda v: isinstance(v, list) and v and all(isinstance(p, str) for p in v),
    "last_debian": lambda v: isinstance(v, int) and v >= 12,
}


@pytest.mark.parametrize("server", list(webstack.SERVERS))
def test_each_table_entry_has_only_known_traits_with_good_values(server):
    entry = PYTHON_APP_SERVERS[server]
    assert {"role", "facts", "protocol"} <= set(entry), "every server has a role, its facts and a protocol"
    assert set(entry) <= set(TRAITS), f"unknown traits: {set(entry) - set(TRAITS)}"
    bad = [trait for trait, value in entry.items() if not TRAITS[trait](value)]
    assert not bad, {trait: entry[trait] for trait in bad}
    assert not (entry.get("own_socket") and "runtime_dir" not in entry and entry.get("listen") == "tcp"), \
        "a server that binds a port itself keeps its run files in a runtime directory python_app removes"


def test_python_app_offers_every_server_of_the_table():
    choices = load("roles/python_app/meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert choices["python_app_server"]["choices"] == [*PYTHON_APP_SERVERS, ""]


@pytest.mark.parametrize("server", list(webstack.SERVERS))
def test_each_server_speaks_one_protocol_nginx_knows(server):
    protocol = webstack.SERVERS[server]
    assert protocol in NGINX_PROTOCOLS
    for choices in nginx_protocol_choices():
        assert protocol in choices


def test_nginx_specs_name_exactly_its_protocols():
    for choices in nginx_protocol_choices():
        assert sorted(choices) == sorted(NGINX_PROTOCOLS)
    assert set(NGINX_PROTOCOLS) == set(webstack.SERVERS.values()), "a protocol no server speaks"


@pytest.mark.parametrize("server", list(webstack.SERVERS))
def test_each_server_has_a_role_built_on_app_server(server):
    entry = PYTHON_APP_SERVERS[server]
    role = entry["role"].rsplit(".", 1)[1]
    assert role in webstack.SERVER_ROLES, "its overrides are handed over by the filter"
    for part in ("tasks/packages.yml", "tasks/configure.yml", "README.md", "meta/argument_specs.yml"):
        assert (ROLES / role / part).is_file(), f"{role}: {part}"
    configure = yaml.safe_load((ROLES / role / "tasks/configure.yml").read_text())
    included = [task["ansible.builtin.include_role"]["name"] for task in configure if "ansible.builtin.include_role" in task]
    # app_server directly, or through apache (the Apache-run servers), which calls it
    assert included in (["pyops.webstack.app_server"], ["pyops.webstack.apache"])
    if included == ["pyops.webstack.apache"]:
        shared = yaml.safe_load((ROLES / "apache/tasks/main.yml").read_text())
        assert [task["ansible.builtin.include_role"]["name"] for task in shared] == ["pyops.webstack.app_server"]
    assert configure[-1]["ansible.builtin.set_fact"] == {f"{entry['facts']}_changed": "{{ app_server_changed }}"}
    assert not (ROLES / role / "templates/socket.yml.j2").exists(), "the socket unit is app_server's"


@pytest.mark.parametrize("server", list(webstack.SERVERS))
def test_each_server_is_in_the_readmes(server):
    readme = (ROOT / "README.md").read_text()
    servers = (ROOT / "docs/servers.md").read_text()
    assert re.search(rf"^\| `{server}` \| `\w+_pass`", servers, re.M), "the server table of docs/servers.md"
    assert re.search(rf"server: gunicorn\s+# .*\b{server}\b", readme), "the webstack_apps example's comment"
    assert f"`{server}`" in (ROLES / "python_app/README.md").read_text(), "python_app_server's values"


def test_the_cgi_script_and_packages_agree_with_the_roles():
    for server, script in webstack.SERVER_SCRIPTS.items():
        role = PYTHON_APP_SERVERS[server]["role"].rsplit(".", 1)[1]
        assert (ROLES / role / "templates" / f"{script}.j2").is_file()
    for server, packages in webstack.SERVER_HOST_PACKAGES.items():
        entry = PYTHON_APP_SERVERS[server]
        [task] = yaml.safe_load((ROLES / entry["role"].rsplit(".", 1)[1] / "tasks/packages.yml").read_text())
        runtime = task["ansible.builtin.set_fact"][f"{entry['facts']}_packages"]["runtime"]
        if isinstance(runtime, str):  # a role variable: its default
            defaults = load(f"roles/{entry['role'].rsplit('.', 1)[1]}/defaults/main.yml")
            runtime = defaults[runtime.strip("{} ")]
        # (the libpython a built module links stays, as uWSGI's does: other software may use it)
        assert set(packages) <= set(runtime), f"{server}: site.yml removes only what its role installs"
