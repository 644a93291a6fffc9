"""The controller's half of pyops.webstack.webstack_release: the code packed here into one archive
(no .pyc, no __pycache__), sent in one transfer, and the WSGI entry point rendered here, once; then
one call of the module builds the release on the host."""

import os
import tarfile
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pyops.webstack.plugins.plugin_utils.render import render


def pack(src):
    """A gzipped tar of directory src's tree (names relative to it) in a temporary file; its path."""
    if not os.path.isdir(src):
        raise AnsibleActionFail(f"src {src}: no such directory on the controller")
    handle, archive = tempfile.mkstemp(prefix="webstack-release-", suffix=".tar.gz")
    os.close(handle)
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for top, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in dirs + sorted(f for f in files if not f.endswith(".pyc")):
                path = os.path.join(top, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, src))
                if info is None:  # a socket: nothing to ship
                    continue
                if info.islnk():  # a second name of a file already packed: packed as a file again
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", os.path.getsize(path)
                if info.isreg():
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return archive


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(("src", "entry_template", "path", "group", "venv", "builder", "static_dirs",
                             "record"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        args = dict(self._task.args)
        src, template = args.pop("src", None), args.pop("entry_template", None)
        archive = None
        try:
            if template is not None:
                if "path" not in args:
                    raise AnsibleActionFail("path is required")
                args["entry"] = render(self, template, os.path.join(args["path"], "webstack_wsgi.py"), None,
                                       task_vars)
            if src is not None:
                args["unpack"] = True
                if not self._task.check_mode:
                    archive = pack(src)
                    remote = self._connection._shell.join_path(self._connection._shell.tmpdir, "code.tar.gz")
                    self._transfer_file(archive, remote)
                    self._fixup_perms2((self._connection._shell.tmpdir, remote))
                    args["archive"] = remote
            result.update(self._execute_module(module_name="pyops.webstack.webstack_release", module_args=args,
                                               task_vars=task_vars))
            return result
        finally:
            if archive:
                os.unlink(archive)
            self._remove_tmp_path(self._connection._shell.tmpdir)
