"""The playbook project works with an inventory anywhere: the apps come from group_vars/ next to
site.yml (linked from playbooks/), not from the inventory's directory."""

import pytest
import yaml

from webstack_testlib import ROOT, ansible_env, run

LOCAL_INVENTORY = {
    "all": {
        "hosts": {"outside": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "children": {"web": {"hosts": {"outside": {}}}, "app": {"hosts": {"outside": {}}}},
    }
}


def outside_inventory(tmp_path, group_vars=None):
    inventory = tmp_path / "elsewhere" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text(yaml.safe_dump(LOCAL_INVENTORY))
    for name, values in (group_vars or {}).items():
        (inventory.parent / "group_vars").mkdir(exist_ok=True)
        (inventory.parent / "group_vars" / f"{name}.yml").write_text(yaml.safe_dump(values))
    return inventory


def deploy_unknown_app(inventory):
    """deploy.yml with an app name that is not there fails naming the apps it found."""
    result = run(["ansible-playbook", "-i", str(inventory), "playbooks/deploy.yml",
                  "-e", "webstack_deploy_apps=no-such-app"], check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "'no-such-app' is not a present app" in out, out[-3000:]
    return out


def test_deploy_with_an_inventory_outside_the_checkout_finds_the_apps(tmp_path):
    apps = yaml.safe_load((ROOT / "group_vars" / "all.yml").read_text())["webstack_apps"]
    out = deploy_unknown_app(outside_inventory(tmp_path))
    assert f"(there are: {', '.join(app['name'] for app in apps)})" in out


def test_an_inventory_group_gives_its_own_apps(tmp_path):
    mine = [{"name": "mine", "source": "/srv/src/mine", "wsgi_app": "mine:app", "domains": ["mine.test"]}]
    out = deploy_unknown_app(outside_inventory(tmp_path, {"app": {"webstack_apps": mine}}))
    assert "(there are: mine)" in out


def test_site_and_every_playbook_read_the_same_group_vars():
    link = ROOT / "playbooks" / "group_vars"
    assert link.is_symlink() and link.resolve() == (ROOT / "group_vars").resolve()
    assert not (ROOT / "inventory" / "group_vars").exists(), "the apps have one home"


def test_requirements_list_every_collection_the_code_names():
    import re
    listed = {c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    named = set()
    for top in ("roles", "playbooks", "molecule", "site.yml"):
        paths = [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*.yml")
        for path in paths:
            named |= set(re.findall(r"\b((?:community|ansible)\.[a-z_]+)\.[a-z_]+\b", path.read_text()))
    named -= {"ansible.builtin", "ansible.legacy"}
    assert named, "the scan found nothing: it is broken"
    assert named <= listed, f"used but not in requirements.yml: {sorted(named - listed)}"


@pytest.mark.parametrize("inventory", ["inventory", "sandboxes/three-tier", "bench/inventory",
                                       "examples/production.yml", "examples/three-tier.yml"])
def test_the_shipped_inventories_parse_and_site_yml_finds_every_group_it_names(inventory):
    """Each inventory has the web and app groups, and site.yml parses against it (--list-hosts
    loads every play and import, as --syntax-check does). Its plays name web, app and db: an
    inventory without one of them made every run warn "Could not match supplied host pattern" (an
    empty group is enough)."""
    graph = run(["ansible-inventory", "-i", str(ROOT / inventory), "--graph"]).stdout
    assert "@web:" in graph and "@app:" in graph
    result = run(["ansible-playbook", "-i", str(ROOT / inventory), "site.yml", "--list-hosts"])
    assert "play #1" in result.stdout, result.stdout
    assert "Could not match supplied host pattern" not in result.stderr, result.stderr


def test_the_three_tier_example_gives_every_web_host_every_app_host():
    """The filter, fed the example's groups and addresses, lists app1..app3 in the upstream."""
    from test_filters import webstack

    inventory = yaml.safe_load((ROOT / "examples" / "three-tier.yml").read_text())["all"]["children"]
    groups = {name: list(group["hosts"]) for name, group in inventory.items()}
    hostvars = {host: values for group in inventory.values() for host, values in group["hosts"].items()}
    layout = webstack.webstack_layout(groups, hostvars)
    # The keys templated on the db group, as Ansible would give them for this inventory.
    apps = [{**app, "database": True, "pip_packages": [], "pre_activate": []}
            for app in yaml.safe_load((ROOT / "group_vars" / "all.yml").read_text())["webstack_apps"]]
    [site] = webstack.webstack_nginx_sites(apps, layout)
    assert site["upstream"]["servers"] == ["10.0.1.11:8001", "10.0.1.12:8001", "10.0.1.13:8001"]


@pytest.mark.parametrize("value, expected", [(None, False), ("", False), ("1", True), ("false", False)])
def test_the_sandbox_playbook_reads_webstack_privileged_without_a_deprecation(tmp_path, value, expected):
    """make demo and make bench start their containers with playbooks/sandbox.yml: WEBSTACK_PRIVILEGED
    unset or empty is false. ('' | bool is deprecated in ansible-core 2.19, an error from 2.23.)"""
    [play] = yaml.safe_load((ROOT / "playbooks" / "sandbox.yml").read_text())
    variables = tmp_path / "vars.yml"
    variables.write_text(yaml.safe_dump({"webstack_sandbox_privileged": play["vars"]["webstack_sandbox_privileged"]}))
    env = ansible_env()
    env.pop("WEBSTACK_PRIVILEGED", None)
    if value is not None:
        env["WEBSTACK_PRIVILEGED"] = value
    result = run(["ansible", "localhost", "-m", "ansible.builtin.debug", "-a", "var=webstack_sandbox_privileged",
                  "-e", f"@{variables}"], env=env)
    assert f'webstack_sandbox_privileged: {str(expected).lower()}' in result.stdout.lower(), result.stdout
    assert "DEPRECATION" not in result.stdout + result.stderr, result.stderr
