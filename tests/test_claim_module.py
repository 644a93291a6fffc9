"""Which of an app's account, group, directory and units the roles made (plugins/modules/webstack_claim.py):
the roles touch those and refuse every other of the same name."""

import importlib.util
import pwd
import subprocess
from types import SimpleNamespace

import pytest
import yaml

from webstack_testlib import ROOT

SPEC = importlib.util.spec_from_file_location("webstack_claim", ROOT / "plugins/modules/webstack_claim.py")
claim = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(claim)

UNITS = ["hello.service", "hello.socket", "hello-handover@.service", "hello.timer"]


def accounts(users=None, groups=None):
    """getpwnam and getgrnam over the given entries only."""
    def getpw(name):
        if name not in (users or {}):
            raise KeyError(name)
        return SimpleNamespace(pw_name=name, **users[name])

    def getgr(name):
        if name not in (groups or {}):
            raise KeyError(name)
        return SimpleNamespace(gr_name=name, **groups[name])
    return getpw, getgr


def check(tmp_path, users=None, groups=None, root=None, loaded=None, passwords=None, **app):
    getpw, getgr = accounts(users, groups)
    entry = {"name": "hello", "root": str(root or tmp_path / "srv/hello"), "units": UNITS, **app}
    return claim.check_app(entry, str(tmp_path / "units"), getpw=getpw, getgr=getgr, loaded=loaded,
                           getsp=lambda user: (passwords or {}).get(user))


def ours(root):
    return {"pw_gecos": "pyops.webstack app hello", "pw_dir": str(root), "pw_shell": "/usr/sbin/nologin", "pw_gid": 990}


def test_a_fresh_host_has_nothing_to_claim(tmp_path):
    (tmp_path / "units").mkdir()
    result = check(tmp_path)
    assert result["problems"] == []
    assert result["owned"] == {"user": False, "group": False, "root": False, "units": []}


def test_what_the_roles_marked_is_theirs(tmp_path):
    root = tmp_path / "srv/hello"
    root.mkdir(parents=True)
    (root / ".webstack-app").write_text("hello\n")
    (tmp_path / "units").mkdir()
    (tmp_path / "units/hello.service").write_text("# Ansible managed\n# pyops.webstack.systemd_unit: hello\n[Unit]\n")
    result = check(tmp_path, users={"hello": ours(root)}, groups={"hello": {"gr_gid": 990, "gr_mem": []}})
    assert result["problems"] == []
    assert result["owned"] == {"user": True, "group": True, "root": True, "units": ["hello.service"]}


def test_a_host_converged_before_the_marks_passes_by_its_shape(tmp_path):
    root = tmp_path / "srv/hello"
    (root / "releases/abc").mkdir(parents=True)
    (root / "current").symlink_to(root / "releases/abc")
    (tmp_path / "units").mkdir()
    (tmp_path / "units/hello.service").write_text(f"[Service]\nExecStart={root}/current/venv/bin/gunicorn\n")
    (tmp_path / "units/hello-handover@.service").write_text(f"[Service]\nWorkingDirectory={root}/releases/%i/src\n")
    legacy = {**ours(root), "pw_gecos": ""}
    result = check(tmp_path, users={"hello": legacy}, groups={"hello": {"gr_gid": 990, "gr_mem": []}})
    assert result["problems"] == []
    assert result["owned"]["user"] and result["owned"]["root"]
    assert result["owned"]["units"] == ["hello.service", "hello-handover@.service"]


def test_accounts_of_the_system_or_of_a_person_are_refused(tmp_path):
    (tmp_path / "units").mkdir()
    person = {"pw_gecos": "Alice", "pw_dir": "/home/hello", "pw_shell": "/bin/bash", "pw_gid": 1000}
    result = check(tmp_path, users={"hello": person}, groups={"hello": {"gr_gid": 1000, "gr_mem": []}})
    assert any("the account hello exists and was not made by pyops.webstack" in p for p in result["problems"])
    assert any("the group hello exists" in p for p in result["problems"])
    assert result["owned"]["user"] is False and result["owned"]["group"] is False
    # A system account whose home is elsewhere (www-data, root) is never the app's, even unmarked.
    system = {"pw_gecos": "", "pw_dir": "/var/www", "pw_shell": "/usr/sbin/nologin", "pw_gid": 33}
    assert check(tmp_path, users={"hello": system})["owned"]["user"] is False


def test_a_group_with_other_members_is_refused(tmp_path):
    root = tmp_path / "srv/hello"
    root.mkdir(parents=True)
    (root / ".webstack-app").write_text("hello")
    (tmp_path / "units").mkdir()
    result = check(tmp_path, users={"hello": ours(root)}, groups={"hello": {"gr_gid": 990, "gr_mem": ["alice"]}})
    assert any("the group hello exists" in p for p in result["problems"])


def test_a_directory_that_is_not_an_apps_is_refused(tmp_path):
    (tmp_path / "units").mkdir()
    etc = tmp_path / "etc"
    (etc / "ssh").mkdir(parents=True)
    result = check(tmp_path, root=etc)
    assert result["owned"]["root"] is False
    assert any("was not made by pyops.webstack for hello (no .webstack-app" in p for p in result["problems"])
    other = tmp_path / "srv/shop"
    other.mkdir(parents=True)
    (other / ".webstack-app").write_text("shop")
    assert check(tmp_path, root=other)["problems"], "another app's directory is not hello's"
    link = tmp_path / "srv/link"
    link.symlink_to(etc)
    assert check(tmp_path, root=link)["problems"], "a symlink is never followed"


def test_units_the_roles_did_not_write_are_refused(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    (units / "hello.service").write_text("[Service]\nExecStart=/usr/sbin/sshd -D\n")
    (units / "hello.socket").symlink_to("/lib/systemd/system/ssh.socket")
    result = check(tmp_path, accounts=False)
    assert sum("the unit" in p and "was not made by pyops.webstack" in p for p in result["problems"]) == 2
    assert result["owned"]["units"] == []
    loaded = {"hello.timer": "/lib/systemd/system/hello.timer"}
    assert any("systemd has the unit hello.timer" in p for p in check(tmp_path, accounts=False, loaded=loaded)["problems"])


def test_systemctl_show_names_units_loaded_from_elsewhere(tmp_path):
    shown = ("Id=ssh.service\nLoadState=loaded\nFragmentPath=/lib/systemd/system/ssh.service\n\n"
             "Id=hello.socket\nLoadState=not-found\nFragmentPath=\n\n"
             "Id=mine.service\nLoadState=loaded\nFragmentPath=/etc/systemd/system/mine.service\n\n"
             "Id=gone.service\nLoadState=masked\nFragmentPath=/dev/null\n")

    def run(argv, **_):
        assert argv[:3] == ["systemctl", "show", "--property=Id,LoadState,FragmentPath"]
        assert "hello-handover@.service" not in argv, "templates are not asked"
        return subprocess.CompletedProcess(argv, 0, shown, "")
    elsewhere = claim.loaded_elsewhere(["sshd.service", "hello.socket", "mine.service", "hello-handover@.service",
                                        "gone.service"], "/etc/systemd/system", run=run)
    assert elsewhere == {"sshd.service": "/lib/systemd/system/ssh.service", "gone.service": "/dev/null"}


def test_the_real_accounts_of_this_machine_are_never_an_apps(tmp_path):
    (tmp_path / "units").mkdir()
    for name in ("root", "daemon", "nobody"):
        pwd.getpwnam(name)
        result = claim.check_app({"name": name, "root": f"/srv/{name}", "units": []}, str(tmp_path / "units"))
        assert any(f"the account {name} exists" in p for p in result["problems"]), name


def test_the_default_units_are_an_apps_own():
    assert claim.app_units("hello") == UNITS


@pytest.mark.parametrize("path", sorted((ROOT / "plugins/modules").glob("*.py")), ids=lambda p: p.name)
def test_every_module_documents_itself_in_yaml_that_parses(path):
    spec = importlib.util.spec_from_file_location(f"doc_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["module"] == path.stem and doc["short_description"]
    assert yaml.safe_load(module.EXAMPLES) and yaml.safe_load(module.RETURN)


def test_accounts_exactly_as_made_are_left_alone_and_any_drift_is_not(tmp_path):
    root = tmp_path / "srv/hello"
    root.mkdir(parents=True)
    (root / ".webstack-app").write_text("hello\n")
    (tmp_path / "units").mkdir()
    group = {"hello": {"gr_gid": 990, "gr_mem": []}}
    assert check(tmp_path, users={"hello": ours(root)}, groups=group, passwords={"hello": "!"})["accounts_as_made"]
    for drift in ({"pw_shell": "/bin/bash"}, {"pw_dir": "/home/hello"}, {"pw_gid": 100}):
        user = {**ours(root), **drift}
        result = check(tmp_path, users={"hello": user}, groups=group, passwords={"hello": "!"})
        assert not result["accounts_as_made"], drift
    for password in ("$6$hash", "", None):
        result = check(tmp_path, users={"hello": ours(root)}, groups=group, passwords={"hello": password})
        assert not result["accounts_as_made"], password
    assert not check(tmp_path, groups=group)["accounts_as_made"], "no user yet"
    assert not check(tmp_path, users={"hello": ours(root)}, passwords={"hello": "!"})["accounts_as_made"], "no group"


def test_the_shadow_file_is_read_for_the_users_field(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$x:19000:0:99999:7:::\nhello:!:19000::::::\n")
    assert claim.shadow_password("hello", str(shadow)) == "!"
    assert claim.shadow_password("nobody", str(shadow)) is None
    assert claim.shadow_password("hello", str(tmp_path / "none")) is None
