#!/usr/bin/python
"""Tell which of an app's account, group, directory and units the roles made, and refuse the rest."""

DOCUMENTATION = r"""
module: webstack_claim
short_description: Check that an app's names on a host are the roles' own before anything changes
description:
  - An app's name becomes a system user and group, a directory and systemd units. This module reads
    the host and reports, for each app, what of these exists and whether the roles made it, by its
    mark. It changes nothing.
  - "Marks are the user's comment C(pyops.webstack app <name>), the file C(<root>/.webstack-app)
    holding the name, and the line C(# pyops.webstack.systemd_unit: <name>) in a unit file."
  - Hosts converged before the marks existed pass by the shape the roles gave them (an app
    directory with C(releases/), a user whose home is it, units that run from it); the roles
    mark them on their next run.
  - Any other existing account, group, directory or unit of the name is a problem (an account of
    Debian or of a person, a vendor unit, an alias, a masked unit), and the roles never touch it.
options:
  apps:
    description:
      - The apps to check, each a dict of C(name), C(user), C(group) (both default to the name), C(root)
        and C(units) (unit file names; by default an app's own, C(<name>.service), C(.socket),
        C(-handover@.service) and C(.timer)).
      - With C(accounts) false, only the units are checked (systemd_unit's own check), and C(root)
        (may be empty) only recognises units written before the mark.
    type: list
    elements: dict
    required: true
  unit_dir:
    description: Where the roles write units.
    type: path
    default: /etc/systemd/system
  strict:
    description: Fail, naming every problem, when any app has one (false only reports them).
    type: bool
    default: true
author: webstack developers (@pyops)
"""

EXAMPLES = r"""
- name: Check that hello's names are free or already hello's
  pyops.webstack.webstack_claim:
    apps:
      - {name: hello, user: hello, group: hello, root: /srv/hello,
         units: [hello.service, hello.socket, hello-handover@.service, hello.timer]}
  register: claim
"""

RETURN = r"""
apps:
  description: >-
    For each app, in order: C(name), C(problems) (a list of sentences, empty when every name is free
    or the roles' own), C(owned) (C(user), C(group), C(root): true when it exists and the roles
    made it; C(units): the unit files in I(unit_dir) the roles made) and C(accounts_as_made) (true
    when the user and group are the roles' own and exactly as python_app makes them: the user's
    comment is its mark, its home the root, its shell C(/usr/sbin/nologin), its primary group the
    group, its password locked with C(!); python_app then leaves them alone).
  type: list
  returned: always
problems:
  description: Every app's problems, each naming its app.
  type: list
  returned: always
"""

import grp
import os
import pwd
import subprocess
from ansible.module_utils.basic import AnsibleModule

USER_MARK = "pyops.webstack app {name}"
UNIT_MARK = "# pyops.webstack.systemd_unit: {name}"
ROOT_MARK = ".webstack-app"
VENDOR_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system", "/usr/local/lib/systemd/system",
               "/run/systemd/system", "/run/systemd/generator", "/run/systemd/transient")
NO_SHELL = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def root_state(root, name):
    """"absent", "marked", "legacy" (the layout the roles made before marks), or "foreign"."""
    if not os.path.lexists(root):
        return "absent"
    if os.path.islink(root) or not os.path.isdir(root):
        return "foreign"
    if (_read(os.path.join(root, ROOT_MARK)) or "").strip() == name:
        return "marked"
    releases = os.path.join(root, "releases")
    if os.path.isdir(releases) and not os.path.islink(releases) and (
            os.path.isfile(os.path.join(root, "shared", "env")) or os.path.islink(os.path.join(root, "current"))):
        return "legacy"
    return "foreign"


def unit_owner(path, name, root):
    """Whether the unit file at path is the roles' unit of this app: marked, or (units written
    before the mark) one that runs from the app's directory."""
    text = _read(path)
    if text is None or os.path.islink(path):
        return False
    if UNIT_MARK.format(name=name) in text.splitlines():
        return True
    # The collection's own units (webstack-*: no app may take the name) need no root.
    return name.startswith("webstack-") or bool(root) and (f"{root}/current" in text or f"{root}/releases/" in text)


def loaded_elsewhere(units, unit_dir, run=subprocess.run):
    """Units systemd has loaded from anywhere but unit_dir/<unit> (an alias, a vendor or generated
    unit, a masked one): name -> where. Template units (name@.service) are not asked."""
    asked = [unit for unit in units if "@." not in unit]
    if not asked:
        return {}
    try:
        result = run(["systemctl", "show", "--property=Id,LoadState,FragmentPath", "--", *asked],
                     capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    if result.returncode != 0:
        return {}
    elsewhere = {}
    for unit, block in zip(asked, result.stdout.strip().split("\n\n")):
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        state, fragment = values.get("LoadState", ""), values.get("FragmentPath", "")
        if state in ("", "not-found"):
            continue
        if state == "masked" or fragment != os.path.join(unit_dir, unit) or values.get("Id", unit) != unit:
            elsewhere[unit] = fragment or state
    return elsewhere


def shadow_password(user, path="/etc/shadow"):
    """The user's password field in the shadow file, or None (no entry, or unreadable)."""
    for line in (_read(path) or "").splitlines():
        fields = line.split(":")
        if len(fields) > 1 and fields[0] == user:
            return fields[1]
    return None


def as_made(name, root, account, group_entry, password):
    """Whether the account and group are exactly what python_app's layout makes of them."""
    return (account is not None and group_entry is not None and account.pw_gecos == USER_MARK.format(name=name)
            and account.pw_dir == root and account.pw_shell == "/usr/sbin/nologin"
            and account.pw_gid == group_entry.gr_gid and password == "!")


def _check_accounts(name, user, group, root, problems, owned, getpw, getgr, getsp):
    """The account, group and directory part of check_app; whether the accounts are as made."""
    where = root_state(root, name)
    if where == "foreign":
        problems.append(f"{root} exists and was not made by pyops.webstack for {name} (no {ROOT_MARK} naming it, "
                        "no releases/ of an app): the roles never use or remove it; choose another root or name")
    owned["root"] = where in ("marked", "legacy")
    try:
        account = getpw(user)
    except KeyError:
        account = None
    if account is not None:
        mark = account.pw_gecos == USER_MARK.format(name=name)
        legacy = (account.pw_gecos == "" and account.pw_dir == root and account.pw_shell in NO_SHELL
                  and owned["root"])
        owned["user"] = mark or legacy
        if not owned["user"]:
            problems.append(f"the account {user} exists and was not made by pyops.webstack for {name} (its comment "
                            f"is not '{USER_MARK.format(name=name)}'): the roles never modify it; choose another name")
    try:
        group_entry = getgr(group)
    except KeyError:
        group_entry = None
    if group_entry is not None:
        owned["group"] = (owned["user"] and account.pw_gid == group_entry.gr_gid) or (account is None and owned["root"])
        if not owned["group"] or set(group_entry.gr_mem) - {user}:
            owned["group"] = False
            problems.append(f"the group {group} exists and was not made by pyops.webstack for {name} (it is not the "
                            f"primary group of the app's user alone): the roles never modify it; choose another name")
    return (owned["user"] and owned["group"]
            and as_made(name, root, account, group_entry, getsp(user) if account is not None else None))


def app_units(name):
    """The unit files of an app (python_app's, through app_server and systemd_unit)."""
    return [f"{name}.service", f"{name}.socket", f"{name}-handover@.service", f"{name}.timer"]


def check_app(app, unit_dir, getpw=pwd.getpwnam, getgr=grp.getgrnam, loaded=None, getsp=shadow_password):
    """The problems and the owned parts of one app (see RETURN)."""
    name, root = app["name"], app.get("root", "")
    user, group = app.get("user") or name, app.get("group") or name
    problems = []
    owned = {"user": False, "group": False, "root": False, "units": []}
    made = False
    if app.get("accounts", True):
        made = _check_accounts(name, user, group, root, problems, owned, getpw, getgr, getsp)
    for unit in app.get("units", app_units(name)):
        path = os.path.join(unit_dir, unit)
        if os.path.lexists(path):
            if unit_owner(path, name, root):
                owned["units"].append(unit)
            else:
                problems.append(f"the unit {path} exists and was not made by pyops.webstack for {name} (no line "
                                f"'{UNIT_MARK.format(name=name)}'): the roles never overwrite or remove it; "
                                "choose another name")
        for vendor in VENDOR_DIRS:
            if os.path.lexists(os.path.join(vendor, unit)):
                problems.append(f"the unit {unit} is also in {vendor}: an app of that name would override a unit of the "
                                "system; choose another name")
        if unit in (loaded or {}):
            problems.append(f"systemd has the unit {unit} from {loaded[unit]}: an app of that name would take it "
                            "over; choose another name")
    return {"name": name, "problems": problems, "owned": owned, "accounts_as_made": bool(made)}


def main():
    module = AnsibleModule(
        argument_spec={"apps": {"type": "list", "elements": "dict", "required": True},
                       "unit_dir": {"type": "path", "default": "/etc/systemd/system"},
                       "strict": {"type": "bool", "default": True}},
        supports_check_mode=True,
    )
    apps = module.params["apps"]
    for app in apps:
        if not isinstance(app.get("name"), str) or not isinstance(app.get("root", ""), str) \
                or (app.get("accounts", True) and not app.get("root")):
            module.fail_json(msg=f"webstack_claim: each app needs a name and a root (got {app!r})")
    unit_dir = module.params["unit_dir"]
    units = [unit for app in apps for unit in app.get("units", app_units(app["name"]))]
    loaded = loaded_elsewhere(units, unit_dir)
    results = [check_app(app, unit_dir, loaded=loaded) for app in apps]
    problems = [f"{result['name']}: {problem}" for result in results for problem in result["problems"]]
    if problems and module.params["strict"]:
        module.fail_json(msg="Refused before anything changed: " + " | ".join(problems), apps=results,
                         problems=problems)
    module.exit_json(changed=False, apps=results, problems=problems)


if __name__ == "__main__":
    main()
