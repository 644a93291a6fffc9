import pathlib
import sys

import pytest

# Shared verify helpers live in molecule/shared/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))


def pytest_configure(config):
    config.addinivalue_line("markers", "apps(*names): the test needs these apps on the host")


def scenario_apps(host):
    """Every app of molecule.yml's servers_apps, and those this host runs: all of them but
    servers_apps_not_here, or the servers_apps_here subset a host names in its host_vars."""
    variables = host.ansible.get_variables()
    every = {app["name"] for app in variables["servers_apps"]}
    here = variables.get("servers_apps_here")
    not_here = set(variables.get("servers_apps_not_here") or ())
    assert here is None or set(here) <= every, f"servers_apps_here names unknown apps: {here}"
    return every, every - not_here if here is None else set(here)


@pytest.fixture
def apps_here(host):
    return scenario_apps(host)[1]


@pytest.fixture(autouse=True)
def _skip_apps_not_here(request):
    """Skip a test whose app (its `app` or `unit` parameter, or its `apps` mark) this host does not
    run; the skip names the host and the apps. A host that runs them all never skips."""
    if "host" not in request.fixturenames:
        return
    host = request.getfixturevalue("host")
    every, here = scenario_apps(host)
    callspec = getattr(request.node, "callspec", None)
    needed = {callspec.params[key] for key in ("app", "unit") if key in callspec.params} if callspec else set()
    mark = request.node.get_closest_marker("apps")
    needed |= set(mark.args) if mark else set()
    missing = sorted((needed & every) - here)
    if missing:
        pytest.skip(f"{host.backend.get_hostname()} does not run {', '.join(missing)}")
