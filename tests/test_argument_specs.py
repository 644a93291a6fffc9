"""Every role variable is defaulted, specified and documented, with the same default everywhere."""

import pytest
import yaml

from webstack_testlib import ROLE_NAMES, ROLES, ROOT


def load(role, *parts):
    with open(ROLES.joinpath(role, *parts)) as handle:
        return yaml.safe_load(handle) or {}


def main_options(role):
    return load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_specified(role):
    missing = sorted(set(load(role, "defaults", "main.yml")) - set(main_options(role)))
    assert not missing, f"{role}: defaults without an argument spec: {missing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_optional_spec_has_a_default(role):
    defaults = load(role, "defaults", "main.yml")
    options = main_options(role)
    missing = sorted(n for n, o in options.items() if not o.get("required") and n not in defaults)
    assert not missing, f"{role}: optional variables without a default in defaults/main.yml: {missing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_spec_defaults_match_role_defaults(role):
    defaults = load(role, "defaults", "main.yml")
    mismatched = {
        name: (option["default"], defaults.get(name))
        for name, option in main_options(role).items()
        if "default" in option and option["default"] != defaults.get(name)
    }
    assert not mismatched, f"{role}: argument_specs default != defaults/main.yml: {mismatched}"


def _walk(options, prefix=""):
    for name, option in options.items():
        yield prefix + name, option
        yield from _walk(option.get("options", {}), prefix + name + ".")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_option_is_typed_and_described(role):
    for entry, spec in load(role, "meta", "argument_specs.yml")["argument_specs"].items():
        for name, option in _walk(spec.get("options", {})):
            assert option.get("type"), f"{role}:{entry}:{name} has no type"
            assert option.get("description"), f"{role}:{entry}:{name} has no description"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_variable_is_in_the_role_readme(role):
    readme = ROLES.joinpath(role, "README.md").read_text()
    missing = [name for name in main_options(role) if f"`{name}`" not in readme]
    assert not missing, f"{role}/README.md does not document {missing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_are_prefixed(role):
    bad = [name for name in load(role, "defaults", "main.yml") if not name.startswith(role + "_")]
    assert not bad, f"{role}: defaults without the {role}_ prefix: {bad}"


def test_the_filter_emits_only_what_the_nginx_spec_accepts():
    """site.yml hands webstack_nginx_sites' output to the nginx role: every key must be specified."""
    from test_filters import webstack

    spec = main_options("nginx")["nginx_sites"]["options"]
    apps = [
        {"name": "a", "source": "/s", "wsgi_app": "a:app", "domains": ["a.test"],
         "static": [{"url": "/static/", "dir": "s"}]},
        {"name": "b", "source": "/s", "wsgi_app": "b:app", "domains": ["a.test"], "prefix": "/b", "server": "uwsgi",
         "static": [{"url": "/static/", "dir": "s"}]},
        {"name": "c", "source": "/s", "wsgi_app": "c:app", "domains": ["~^c$"], "domains_regex": True,
         "listen": "127.0.0.1:8001"},
        {"name": "d", "source": "/s", "wsgi_app": "d:app", "state": "absent"},
    ]
    for site in webstack.webstack_nginx_sites(apps):
        assert set(site) <= set(spec), set(site) - set(spec)
        for key in ("upstream", "static", "mounts"):
            for value in (site.get(key) if isinstance(site.get(key), list) else [site.get(key)] if key in site else []):
                assert set(value) <= set(spec[key]["options"]), (key, set(value) - set(spec[key]["options"]))
        for mount in site.get("mounts", []):
            for key in ("upstream", "static"):
                for value in (mount[key] if isinstance(mount[key], list) else [mount[key]]):
                    assert set(value) <= set(spec["mounts"]["options"][key]["options"]), (key, value)


def _registered(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        if "register" in task:
            yield task["register"]
        for key in ("block", "rescue", "always"):
            yield from _registered(task.get(key))


def test_no_task_registers_over_a_role_variable():
    """A registered result outranks role vars and defaults for the rest of the play: a task that
    registers a role variable's name changes it for that role's next call on the host (app_server
    once registered _app_server_files, and its second app looped over a result dict)."""
    variables = {}
    for role in ROLE_NAMES:
        for part in ("defaults", "vars"):
            if ROLES.joinpath(role, part, "main.yml").exists():
                variables.update(dict.fromkeys(load(role, part, "main.yml"), f"{role}/{part}"))
    clashes = [f"{path.relative_to(ROLES)} registers {name} ({variables[name]})"
               for path in sorted(ROLES.glob("*/tasks/*.yml"))
               for name in _registered(yaml.safe_load(path.read_text()))
               if name in variables]
    assert not clashes, clashes


def _include_roles(data):
    """Every include_role in a playbook or task file, at any depth (plays, blocks, rescues)."""
    if isinstance(data, list):
        for item in data:
            yield from _include_roles(item)
    elif isinstance(data, dict):
        if isinstance(data.get("ansible.builtin.include_role"), dict):
            yield data["ansible.builtin.include_role"]
        for value in data.values():
            yield from _include_roles(value)


def test_a_role_calls_another_without_checking_its_spec_again():
    """A role's argument spec is checked where a user (or a playbook) calls it. A role calling another
    passes values it worked out itself from checked ones, and the check costs a task per call, on
    every app of every run (about 0.5 s each under Mitogen): role-to-role includes turn it off."""
    checked = []
    for path in sorted(ROOT.glob("roles/*/tasks/*.yml")):
        for include in _include_roles(yaml.safe_load(path.read_text())):
            checked.append(path)
            assert include.get("rolespec_validate") is False, f"{path.relative_to(ROOT)}: {include['name']}"
    assert len(checked) >= 15
    users = 0
    for path in sorted(ROOT.glob("playbooks/**/*.yml")):
        for include in _include_roles(yaml.safe_load(path.read_text())):
            users += 1
            assert "rolespec_validate" not in include, f"{path.relative_to(ROOT)}: a user's call is checked"
    assert users >= 3
