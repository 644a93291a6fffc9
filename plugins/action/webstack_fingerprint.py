"""pyops.webstack.webstack_fingerprint: the regular files of a directory on the controller with their
SHA-1, read here in the controller's own process (a delegated find module would start a Python per
call). It lists what ansible.builtin.find lists with recurse, excludes and get_checksum, so release
ids stay what they were. Given describe, it also names the release and its venv, by the formulas
python_app's "Describe the release" task used to work out in Jinja (the same ids)."""

import fnmatch
import hashlib
import json
import os
import re
import stat

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def fingerprint(top, excludes):
    """[{path, checksum}] of top's regular files: not links, no basename starting with a dot (files in
    a hidden directory count, as find counts them), none matching an exclude pattern."""
    found = []
    for root, dirs, files in os.walk(top):
        for name in files + dirs:
            path = os.path.normpath(os.path.join(root, name))
            if name.startswith(".") or any(fnmatch.fnmatch(name, pattern) for pattern in excludes):
                continue
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            digest = hashlib.sha1()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 16), b""):
                    digest.update(block)
            found.append({"path": path, "checksum": digest.hexdigest()})
    return found


# A requirement line that ties the venv to the release's own code: an editable, an include, a
# local path, a link.
_CODE_REQUIREMENT = re.compile(r"^(-e|--editable|-r|--requirement|-c|--constraint|-f|--find-links|\.|/|~|file:)")
_CODE_REQUIREMENT_ANYWHERE = re.compile(r"file:|^[^:]*/")
_COMMENT = re.compile(r"(^|\s)#.*$")
DESCRIBE_KEYS = frozenset(("release_id", "packages", "requirements_file", "constraints_file", "pip_extra_args",
                           "wsgi_app", "python", "distribution_release", "wheel"))


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe(top, files, given):
    """{id, venv_id} of a release of the code at top (files: fingerprint()).

    id: given release_id, or the first 12 hex digits of the SHA-256 of the code (relative paths and
    checksums), the pip packages, the requirements and constraints file names, the pip arguments
    and the WSGI target. venv_id: the SHA-256 of what the venv is built from (Python, Debian
    release, packages, pip arguments, the two files' names and checksums), and of the code too
    when the venv depends on it (a wheel source, or a requirement naming a path, an include or
    an editable)."""
    checksums = {os.path.relpath(item["path"], top): item["checksum"] for item in files}
    packages = list(given["packages"])
    requirements_file, constraints_file = given["requirements_file"], given["constraints_file"]
    fingerprint = (json.dumps(sorted(checksums.items())) + json.dumps(packages)
                   + requirements_file + constraints_file + given["pip_extra_args"] + given["wsgi_app"])
    lines = []
    if requirements_file:
        try:
            with open(os.path.join(top, requirements_file), encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except OSError:
            pass  # no such file: no requirement ties the venv to the code
    requirements = [line for line in (_COMMENT.sub("", line).strip() for line in lines) if line]
    tied = (bool(given["wheel"]) or any(_CODE_REQUIREMENT.match(line) for line in requirements)
            or any(_CODE_REQUIREMENT_ANYWHERE.search(line) for line in requirements))
    venv_of = json.dumps([given["python"], given["distribution_release"], packages, given["pip_extra_args"],
                          requirements_file, constraints_file, checksums.get(requirements_file, ""),
                          checksums.get(constraints_file, "")])
    return {"id": given["release_id"] or _sha256(fingerprint)[:12],
            "venv_id": _sha256((fingerprint if tied else "") + venv_of)}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("path", "excludes", "describe"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        path = self._task.args.get("path")
        excludes = self._task.args.get("excludes") or []
        if not isinstance(path, str) or not os.path.isdir(path):
            raise AnsibleActionFail(f"path {path!r}: no such directory on the controller")
        if not isinstance(excludes, list) or not all(isinstance(item, str) for item in excludes):
            raise AnsibleActionFail("excludes must be a list of patterns")
        files = fingerprint(path, excludes)
        result.update(changed=False, files=files)
        given = self._task.args.get("describe")
        if given is not None:
            if not isinstance(given, dict) or set(given) != DESCRIBE_KEYS:
                raise AnsibleActionFail("describe must hold exactly " + ", ".join(sorted(DESCRIBE_KEYS)))
            result.update(describe(path, files, given))
        return result
