"""The controller's half of pyops.webstack.webstack_files: each template rendered once, here, as the
template module renders it; then one call of the module writes what differs on the host."""

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pyops.webstack.plugins.plugin_utils.render import render


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", "absent", "backup", "read"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        files = []
        for entry in self._task.args.get("files") or []:
            if not isinstance(entry, dict) or "dest" not in entry:
                raise AnsibleActionFail(f"each of files must be a dict with dest (got {entry!r})")
            entry = dict(entry)
            template, extra = entry.pop("template", None), entry.pop("vars", None)
            if template is not None:
                if "content" in entry:
                    raise AnsibleActionFail(f"{entry['dest']}: content and template are exclusive")
                entry["content"] = render(self, template, entry["dest"], extra, task_vars)
            files.append(entry)
        args = {key: value for key, value in self._task.args.items() if key != "files"}
        result.update(self._execute_module(module_name="pyops.webstack.webstack_files",
                                           module_args={**args, "files": files}, task_vars=task_vars))
        return result
