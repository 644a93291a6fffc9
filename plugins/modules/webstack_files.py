#!/usr/bin/python
"""Write many files and directories in one round trip, only those that differ."""

DOCUMENTATION = r"""
module: webstack_files
short_description: Write the files and directories a role manages, in one round trip
description:
  - Makes each entry of I(files) as it should be, in order, and removes each path of I(absent) that
    exists, in one call to the host instead of a task (and a round trip) per file.
  - A file is written only when its content, mode, owner or group differ; content is replaced
    atomically (a temporary file in the same directory, renamed over the old one), a link or other
    non-file at its path is replaced. A directory is made (its parent must exist) or given its mode,
    owner and group.
  - Its action plugin renders I(files[].template) on the controller, once, from the role's
    C(templates/) with the task's variables and the entry's own I(vars), as the template module does.
  - Supports check mode and diff mode (the content before and after of each changed file).
options:
  files:
    description: The files and directories, in order (a directory before the files in it).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: The absolute path.
        type: path
        required: true
      state:
        description: C(file) or C(directory).
        type: str
        choices: [file, directory]
        default: file
      content:
        description: The file's content (the action plugin fills it from I(template)).
        type: str
      template:
        description: A template of the role (C(templates/)), rendered on the controller into I(content).
        type: str
      vars:
        description: Variables for I(template) besides the task's.
        type: dict
      mode:
        description: Octal mode, such as C(0644).
        type: str
        required: true
      force:
        description: False leaves a file that exists as it is (a secret made once, say).
        type: bool
        default: true
      owner:
        description: The owner's name.
        type: str
        default: root
      group:
        description: The group's name.
        type: str
        default: root
  absent:
    description: Files or links to remove where they exist (never a directory).
    type: list
    elements: path
    default: []
  backup:
    description: Keep a copy of each file it rewrites (its C(backup_file) in the result).
    type: bool
    default: false
  read:
    description:
      - Files to read back after the writes, in the same round trip (generated secrets, say; use
        C(no_log)). Each comes back in I(read) with its content, or none where there is no file.
    type: list
    elements: path
    default: []
author: webstack developers (@pyops)
"""

EXAMPLES = r"""
- name: Write the units of hello
  pyops.webstack.webstack_files:
    files:
      - {dest: /etc/systemd/system/hello.service, template: service.j2, mode: "0644"}
      - {dest: /etc/systemd/system/hello.socket, template: socket.j2, mode: "0644"}
    absent: [/etc/systemd/system/hello.timer]
  register: units
"""

RETURN = r"""
files:
  description: >-
    One entry per file or directory, in order: C(dest), C(changed), C(created) (it was not there),
    and C(backup_file) when I(backup) kept the previous content.
  type: list
  returned: always
changed_paths:
  description: The paths of the entries that changed.
  type: list
  returned: always
removed:
  description: The paths of I(absent) that were there and are removed (or would be, in check mode).
  type: list
  returned: always
read:
  description: One entry per path of I(read), in order, with C(path) and C(content) (text, or none).
  type: list
  returned: always
"""

import grp
import os
import pwd
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

# The largest file whose content diff mode shows.
DIFF_LIMIT = 128 * 1024


def ids(module, entry):
    """The entry's uid and gid. In check mode an account the play has not made yet (it would have
    before this task) is -1: whatever is there differs from it."""
    found = []
    for lookup, name in ((pwd.getpwnam, entry["owner"]), (grp.getgrnam, entry["group"])):
        try:
            found.append(lookup(name)[2])
        except KeyError:
            if not module.check_mode:
                module.fail_json(msg=f"{entry['dest']}: no such owner or group: {name}")
            found.append(-1)
    return tuple(found)


def mode_of(module, entry):
    try:
        mode = int(entry["mode"], 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg=f"{entry['dest']}: mode must be octal, such as 0644 (got {entry['mode']!r})")
    return mode


def attributes_differ(info, mode, uid, gid):
    return stat.S_IMODE(info.st_mode) != mode or info.st_uid != uid or info.st_gid != gid


def directory(module, entry):
    """Make the directory or give it its attributes; its result entry."""
    path, mode = entry["dest"], mode_of(module, entry)
    uid, gid = ids(module, entry)
    info = os.lstat(path) if os.path.lexists(path) else None
    if info is not None and not stat.S_ISDIR(info.st_mode):
        module.fail_json(msg=f"{path}: not a directory, and the roles do not replace it by one")
    changed = info is None or attributes_differ(info, mode, uid, gid)
    if changed and not module.check_mode:
        if info is None:
            os.mkdir(path, 0o700)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return {"dest": path, "changed": changed, "created": info is None}, None


def regular(module, entry, backup):
    """Write the file where it differs; its result entry and its diff (or None)."""
    path, mode = entry["dest"], mode_of(module, entry)
    uid, gid = ids(module, entry)
    wanted = to_bytes(entry.get("content") or "", errors="surrogate_or_strict")
    info = os.lstat(path) if os.path.lexists(path) else None
    if info is not None and stat.S_ISDIR(info.st_mode):
        module.fail_json(msg=f"{path}: a directory, and the roles do not replace it by a file")
    is_file = info is not None and stat.S_ISREG(info.st_mode)
    if is_file and not entry["force"]:
        return {"dest": path, "changed": False, "created": False}, None
    before = None
    if is_file:
        with open(path, "rb") as handle:
            before = handle.read()
    content_differs = before != wanted
    changed = content_differs or attributes_differ(info, mode, uid, gid)
    result = {"dest": path, "changed": changed, "created": info is None}
    diff = None
    if content_differs and module._diff:
        old = before if before is not None and len(before) <= DIFF_LIMIT else b""
        diff = {"before_header": path if is_file else "(absent)", "after_header": path,
                "before": to_text(old, errors="surrogate_or_replace"),
                "after": to_text(wanted if len(wanted) <= DIFF_LIMIT else b"", errors="surrogate_or_replace")}
    if not changed or module.check_mode:
        return result, diff
    if not content_differs:
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return result, diff
    if backup and is_file:
        result["backup_file"] = module.backup_local(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".webstack-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(wanted)
            out.flush()
            os.fchown(out.fileno(), uid, gid)
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return result, diff


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "dest": {"type": "path", "required": True},
                "state": {"type": "str", "choices": ["file", "directory"], "default": "file"},
                "content": {"type": "str"},
                "template": {"type": "str"},
                "vars": {"type": "dict"},
                "mode": {"type": "str", "required": True},
                "force": {"type": "bool", "default": True},
                "owner": {"type": "str", "default": "root"},
                "group": {"type": "str", "default": "root"},
            }},
            "absent": {"type": "list", "elements": "path", "default": []},
            "backup": {"type": "bool", "default": False},
            "read": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    results, diffs = [], []
    for entry in module.params["files"]:
        if not os.path.isabs(entry["dest"]):
            module.fail_json(msg=f"{entry['dest']}: dest must be an absolute path")
        if entry["state"] == "file" and entry.get("template"):
            module.fail_json(msg=f"{entry['dest']}: template is rendered by the action plugin; call the module "
                                 "through pyops.webstack.webstack_files")
        if entry["state"] == "directory":
            result, diff = directory(module, entry)
        else:
            result, diff = regular(module, entry, module.params["backup"])
        results.append(result)
        if diff:
            diffs.append(diff)
    removed = []
    for path in module.params["absent"]:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            module.fail_json(msg=f"{path}: a directory; absent removes files and links only")
        removed.append(path)
        if not module.check_mode:
            os.unlink(path)
    read = []
    for path in module.params["read"]:
        content = None
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                content = to_text(handle.read(), errors="surrogate_or_replace")
        read.append({"path": path, "content": content})
    changed_paths = [result["dest"] for result in results if result["changed"]]
    module.exit_json(changed=bool(changed_paths or removed), files=results, changed_paths=changed_paths,
                     removed=removed, read=read, diff=diffs)


if __name__ == "__main__":
    main()
