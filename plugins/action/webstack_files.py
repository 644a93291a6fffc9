"""The controller's half of pyops.webstack.webstack_files: each template rendered once, here, as the
template module renders it; then one call of the module writes what differs on the host."""

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

# The variables the template module gives a template (ansible_managed, template_path, ...), by the
# function the template action itself calls.
from ansible._internal._templating import _template_vars

# The template module's defaults, so a file renders here byte for byte as it would there.
OVERRIDES = {"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", "absent", "backup"))

    def render(self, name, dest, extra, task_vars):
        try:
            source = self._find_needle("templates", name)
        except Exception as error:  # the needle's own error names where it looked
            raise AnsibleActionFail(f"template {name}: {error}") from error
        searchpath = []
        for path in [*task_vars.get("ansible_search_path", []), self._loader._basedir, os.path.dirname(source)]:
            searchpath += [os.path.join(path, "templates"), path]
        template_vars = _template_vars.generate_ansible_template_vars(
            path=name, fullpath=source, dest_path=dest, include_ansible_managed="ansible_managed" not in task_vars)
        templar = self._templar.copy_with_new_env(searchpath=searchpath,
                                                  available_variables={**task_vars, **template_vars, **(extra or {})})
        rendered = templar.template(trust_as_template(self._loader.get_text_file_contents(source)),
                                    escape_backslashes=False, overrides=OVERRIDES)
        return "" if rendered is None else rendered

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
                entry["content"] = self.render(template, entry["dest"], extra, task_vars)
            files.append(entry)
        args = {key: value for key, value in self._task.args.items() if key != "files"}
        result.update(self._execute_module(module_name="pyops.webstack.webstack_files",
                                           module_args={**args, "files": files}, task_vars=task_vars))
        return result
