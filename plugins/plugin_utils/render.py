"""A role template rendered on the controller exactly as the template module renders it: for the
action plugins that send rendered content to their module in one call (webstack_files,
webstack_release)."""

import os

from ansible.errors import AnsibleActionFail
from ansible.template import trust_as_template

# The variables the template module gives a template (ansible_managed, template_path, ...), by the
# function the template action itself calls.
from ansible._internal._templating import _template_vars

# The template module's defaults, so a file renders here byte for byte as it would there.
OVERRIDES = {"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"}


def render(action, name, dest, extra, task_vars):
    """Template `name` of the calling role's templates/ for file `dest`, with the task's variables
    and `extra`; `action` is the calling action plugin."""
    try:
        source = action._find_needle("templates", name)
    except Exception as error:  # the needle's own error names where it looked
        raise AnsibleActionFail(f"template {name}: {error}") from error
    searchpath = []
    for path in [*task_vars.get("ansible_search_path", []), action._loader._basedir, os.path.dirname(source)]:
        searchpath += [os.path.join(path, "templates"), path]
    template_vars = _template_vars.generate_ansible_template_vars(
        path=name, fullpath=source, dest_path=dest, include_ansible_managed="ansible_managed" not in task_vars)
    templar = action._templar.copy_with_new_env(searchpath=searchpath,
                                                available_variables={**task_vars, **template_vars, **(extra or {})})
    rendered = templar.template(trust_as_template(action._loader.get_text_file_contents(source)),
                                escape_backslashes=False, overrides=OVERRIDES)
    return "" if rendered is None else rendered
