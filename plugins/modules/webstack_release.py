#!/usr/bin/python
"""Build a release of an app from its code in one round trip: unpack, link, compile, mark."""

DOCUMENTATION = r"""
module: webstack_release
short_description: Build a code release of an app in one round trip
description:
  - Builds the release directory I(path) of an app in one call to the host instead of a task (and a
    round trip) per step. python_app's build calls it; it is not meant for playbooks.
  - With I(src) it unpacks. It makes I(path) (owned by C(root) and the app's I(group), mode C(0751)),
    its C(venv) link to I(venv), its C(src) directory with the code (mode C(u=rwX,g=rX,o=)) and, from
    I(entry_template), C(webstack_wsgi.py). Whatever was at I(path) is removed first, since a release
    is built only when it has no C(.webstack-release) marker, so anything there is an unfinished build.
  - The code belongs to I(builder) while the venv it links to is not built (it has no C(.webstack-venv)
    marker), so that a venv build can build the code in place, and to C(root) otherwise.
  - When the venv is built, it completes the release. The code becomes C(root)'s, readable by I(group)
    alone, and its bytecode is compiled (umask C(027)). Each of I(static_dirs) inside the code is made
    world-readable, and its parents passable. The C(.webstack-release) marker is written last, from
    I(record) and the time (C(built_at), which orders releases).
  - Its action plugin packs I(src) on the controller (without C(.pyc) files and C(__pycache__)
    directories), sends it in one transfer, and renders I(entry_template) from the role's
    C(templates/), as the template module does.
  - In check mode it changes nothing and reports a change (a release to build is always a change).
options:
  path:
    description: The release directory.
    type: path
    required: true
  group:
    description: The app's group, which reads the release.
    type: str
    required: true
  venv:
    description: The venv directory the release's C(venv) link points to.
    type: path
    required: true
  src:
    description:
      - The code's directory on the controller (the action plugin packs it). Without it, the release
        is only completed (after its venv was built).
    type: path
  entry_template:
    description: A template of the role, rendered on the controller into C(webstack_wsgi.py).
    type: str
  unpack:
    description: Set by the action plugin when I(src) is given.
    type: bool
    default: false
  archive:
    description: The packed code on the host (set by the action plugin).
    type: path
  entry:
    description: The content of C(webstack_wsgi.py) (set by the action plugin).
    type: str
  builder:
    description: The user the code belongs to while the venv builds.
    type: str
    default: root
  static_dirs:
    description: Directories of the code (relative to it) that others may read, for nginx.
    type: list
    elements: str
    default: []
  record:
    description: What the C(.webstack-release) marker records (C(built_at) is added).
    type: dict
    default: {}
author: webstack developers (@pyops)
"""

EXAMPLES = r"""
- name: Build release 0123456789ab
  pyops.webstack.webstack_release:
    src: /home/me/project/apps/hello
    entry_template: webstack_wsgi.py.j2
    path: /srv/hello/releases/0123456789ab
    venv: /srv/hello/venvs/3a039ecba3d4
    group: hello
    builder: hello
    static_dirs: [hello/static]
    record: {id: 0123456789ab, name: hello}
  register: built
"""

RETURN = r"""
venv_ready:
  description: Whether the venv was built (had its marker) when the call began.
  type: bool
  returned: always
complete:
  description: Whether the release is complete (its marker written; in check mode, would be).
  type: bool
  returned: always
skipped_static:
  description: Entries of I(static_dirs) left alone (missing, or outside the code), with the reason.
  type: list
  returned: always
"""

import datetime
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "link"}


def code_mode(mode):
    """u=rwX,g=rX,o= for a file: 0750 with any execute bit, else 0640 (a directory is 0750)."""
    return 0o750 if mode & 0o111 else 0o640


def unpack(module, archive, src, uid, gid):
    """The archive's files, directories and links under src, each uid:gid with its code mode."""
    top = os.path.realpath(src)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = [part for part in member.name.split("/") if part not in ("", ".")]
            kind = TYPES.get(member.type)
            if not parts:
                continue
            if member.name.startswith("/") or ".." in parts or kind is None:
                module.fail_json(msg=f"the code's archive holds {member.name!r}: only files, directories and "
                                     "links inside the code are unpacked")
            target = os.path.join(src, *parts)
            parent = os.path.dirname(target)
            os.makedirs(parent, mode=0o750, exist_ok=True)
            if not (os.path.realpath(parent) + "/").startswith(top + "/"):
                module.fail_json(msg=f"the code's {member.name!r} would be written through a link out of it")
            if os.path.islink(target) or (os.path.lexists(target) and kind != "dir"):
                module.fail_json(msg=f"the code's archive holds {member.name!r} twice")
            if kind == "dir":
                os.makedirs(target, mode=0o750, exist_ok=True)
                os.chmod(target, 0o750)
            elif kind == "link":
                os.symlink(member.linkname, target)
            else:
                with tar.extractfile(member) as data, open(target, "wb") as out:
                    shutil.copyfileobj(data, out)
                os.chmod(target, code_mode(member.mode))
            os.lchown(target, uid, gid)


def take(tree, gid):
    """The tree becomes root's and the group's, u=rwX,g=rX,o= (links themselves are left alone)."""
    for top, dirs, files in os.walk(tree):
        os.lchown(top, 0, gid)
        os.chmod(top, 0o750)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            path = os.path.join(top, name)
            info = os.lstat(path)
            os.lchown(path, 0, gid)
            if not stat.S_ISLNK(info.st_mode):
                os.chmod(path, code_mode(info.st_mode))


def open_to_others(src, static_dirs):
    """Each static directory inside the code readable by all, its parents up to the code passable;
    the entries left alone, with why."""
    top, skipped = os.path.realpath(src), []
    for entry in static_dirs:
        real = os.path.realpath(os.path.join(src, entry.strip("/")))
        if not os.path.exists(real):
            skipped.append(f"{entry}: not in the code")
            continue
        if not real.startswith(top + "/"):
            skipped.append(f"{entry}: outside the code")
            continue
        for walked, dirs, files in os.walk(real):
            os.chmod(walked, os.stat(walked).st_mode & 0o7777 | 0o005)
            for name in files:
                path = os.path.join(walked, name)
                info = os.lstat(path)
                if stat.S_ISREG(info.st_mode):
                    os.chmod(path, info.st_mode & 0o7777 | 0o004 | (0o001 if info.st_mode & 0o111 else 0))
        parent = real
        while parent != top:
            parent = os.path.dirname(parent)
            os.chmod(parent, os.stat(parent).st_mode & 0o7777 | 0o001)
    return skipped


def write(path, content, mode, uid, gid):
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".webstack-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(content)
            os.fchown(out.fileno(), uid, gid)
            os.fchmod(out.fileno(), mode)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def complete(module, path, gid):
    """Compile, hand the code to root, open the static directories, write the marker."""
    params, src = module.params, os.path.join(path, "src")
    targets = [src] + [p for p in [os.path.join(path, "webstack_wsgi.py")] if os.path.exists(p)]
    umask = os.umask(0o027)
    try:
        compiled = subprocess.run([os.path.join(path, "venv", "bin", "python"), "-m", "compileall", "-q", *targets],
                                  capture_output=True, text=True, check=False)
    finally:
        os.umask(umask)
    if compiled.returncode != 0:
        module.fail_json(msg="compiling the code failed: " + (compiled.stdout + compiled.stderr).strip(),
                         rc=compiled.returncode)
    take(src, gid)
    if os.path.isdir(os.path.join(path, "__pycache__")):
        take(os.path.join(path, "__pycache__"), gid)
    skipped = open_to_others(src, params["static_dirs"])
    built_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    write(os.path.join(path, ".webstack-release"),
          json.dumps({**params["record"], "built_at": built_at}, indent=4, sort_keys=True) + "\n", 0o644, 0, 0)
    return skipped


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "group": {"type": "str", "required": True},
            "venv": {"type": "path", "required": True},
            "src": {"type": "path"},
            "entry_template": {"type": "str"},
            "unpack": {"type": "bool", "default": False},
            "archive": {"type": "path"},
            "entry": {"type": "str"},
            "builder": {"type": "str", "default": "root"},
            "static_dirs": {"type": "list", "elements": "str", "default": []},
            "record": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    path, venv = params["path"], params["venv"]
    venv_ready = os.path.exists(os.path.join(venv, ".webstack-venv"))
    if params["src"] or params["entry_template"]:
        module.fail_json(msg="src and entry_template are the action plugin's: call pyops.webstack.webstack_release")
    if module.check_mode:
        module.exit_json(changed=True, venv_ready=venv_ready, complete=venv_ready, skipped_static=[])
    try:
        gid = grp.getgrnam(params["group"]).gr_gid
        uid = 0 if venv_ready else pwd.getpwnam(params["builder"]).pw_uid
    except KeyError as error:
        module.fail_json(msg=f"no such user or group: {error}")
    if params["unpack"]:
        if not params["archive"]:
            module.fail_json(msg="unpack needs the archive the action plugin sends")
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        os.mkdir(path, 0o700)
        os.chown(path, 0, gid)
        os.chmod(path, 0o751)
        os.symlink(venv, os.path.join(path, "venv"))
        os.lchown(os.path.join(path, "venv"), 0, gid)
        os.mkdir(os.path.join(path, "src"), 0o750)
        os.chown(os.path.join(path, "src"), uid, gid)
        unpack(module, params["archive"], os.path.join(path, "src"), uid, gid)
        if params["entry"] is not None:
            write(os.path.join(path, "webstack_wsgi.py"), params["entry"], 0o640, 0, gid)
    elif not os.path.isdir(os.path.join(path, "src")):
        module.fail_json(msg=f"{path}: no code unpacked to complete")
    if not venv_ready and not os.path.exists(os.path.join(venv, ".webstack-venv")):
        module.exit_json(changed=True, venv_ready=False, complete=False, skipped_static=[])
    skipped = complete(module, path, gid)
    module.exit_json(changed=True, venv_ready=venv_ready, complete=True, skipped_static=skipped)


if __name__ == "__main__":
    main()
