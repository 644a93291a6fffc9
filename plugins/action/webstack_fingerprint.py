"""pyops.webstack.webstack_fingerprint: the regular files of a directory on the controller with their
SHA-1, read here in the controller's own process (a delegated find module would start a Python per
call). It lists what ansible.builtin.find lists with recurse, excludes and get_checksum, so release
ids stay what they were."""

import fnmatch
import hashlib
import os
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


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("path", "excludes"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        path = self._task.args.get("path")
        excludes = self._task.args.get("excludes") or []
        if not isinstance(path, str) or not os.path.isdir(path):
            raise AnsibleActionFail(f"path {path!r}: no such directory on the controller")
        if not isinstance(excludes, list) or not all(isinstance(item, str) for item in excludes):
            raise AnsibleActionFail("excludes must be a list of patterns")
        result.update(changed=False, files=fingerprint(path, excludes))
        return result
