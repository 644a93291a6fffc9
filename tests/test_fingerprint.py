"""pyops.webstack.webstack_fingerprint lists what ansible.builtin.find listed for python_app before
it (so release ids stay the same), in the controller's own process, and names the release and its
venv as python_app's Jinja did."""

import importlib.util
import json
import os
import pathlib
import textwrap

import pytest

from webstack_testlib import ansible_env, run

SPEC = importlib.util.spec_from_file_location(
    "webstack_fingerprint_action", pathlib.Path(__file__).resolve().parents[1] / "plugins/action/webstack_fingerprint.py")
action = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(action)

PLAY = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Find
      ansible.builtin.find:
        paths: "{{ code }}"
        recurse: true
        hidden: false
        excludes: ["*.pyc"]
        get_checksum: true
      register: found
    - name: Fingerprint
      pyops.webstack.webstack_fingerprint:
        path: "{{ code }}"
        excludes: ["*.pyc"]
      register: printed
    - name: Missing
      pyops.webstack.webstack_fingerprint:
        path: "{{ code }}/nowhere"
      ignore_errors: true
"""


def test_it_lists_what_find_lists(tmp_path):
    code = tmp_path / "code"
    for name, content in {"app/__init__.py": "x = 1\n", "app/views.py": "y = 2\n", "app/views.pyc": "junk",
                          ".env": "SECRET=1\n", ".git/config": "[core]\n", "static/.hidden": "h",
                          "static/site.css": "body {}\n", "requirements.txt": "flask\n"}.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(content)
    os.symlink(code / "app/views.py", code / "link.py")
    os.symlink(code / "static", code / "static-link")
    (tmp_path / "play.yml").write_text(textwrap.dedent(PLAY))
    result = run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"), "-e", f"code={code}",
                  "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
                 cwd=tmp_path, env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json"),
                 check=False)
    tasks = {task["task"]["name"]: task["hosts"]["localhost"] for task in json.loads(result.stdout)["plays"][0]["tasks"]}
    found = sorted((f["path"], f["checksum"]) for f in tasks["Find"]["files"])
    printed = sorted((f["path"], f["checksum"]) for f in tasks["Fingerprint"]["files"])
    assert printed == found
    assert {os.path.relpath(path, code) for path, _ in printed} == {
        "app/__init__.py", "app/views.py", ".git/config", "static/site.css", "requirements.txt"}
    assert not tasks["Fingerprint"]["changed"]
    assert tasks["Missing"]["failed"] and "no such directory on the controller" in tasks["Missing"]["msg"]


# The Jinja python_app's "Describe the release" task worked the ids out with before the action did:
# the action must give the same ids, so a host deployed by an older version builds nothing new.
JINJA_IDS = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Describe
      pyops.webstack.webstack_fingerprint:
        path: "{{ code }}"
        excludes: ["*.pyc"]
        describe: "{{ given }}"
      register: described
    - name: Jinja
      ansible.builtin.set_fact:
        jinja: {id: "{{ _id }}", venv_id: "{{ _venv_id }}"}
      vars:
        _files: "{{ described.files }}"
        _packages: "{{ given.packages }}"
        _fingerprint: >-
          {{ (_files | map(attribute='path') | map('relpath', code)
              | zip(_files | map(attribute='checksum')) | sort | to_json)
             ~ (_packages | to_json) ~ given.requirements_file ~ given.constraints_file
             ~ given.pip_extra_args ~ given.wsgi_app }}
        _id: "{{ given.release_id or (_fingerprint | hash('sha256'))[:12] }}"
        _checksums: >-
          {{ dict(_files | map(attribute='path') | map('relpath', code) | zip(_files | map(attribute='checksum'))) }}
        _requirements: >-
          {{ (lookup('ansible.builtin.file', code ~ '/' ~ given.requirements_file, errors='ignore')
              | default('', true) if given.requirements_file else '')
             | split('\\n') | map('regex_replace', '(^|\\\\s)#.*$', '') | map('trim') | reject('equalto', '') | list }}
        _venv_code: >-
          {{ _fingerprint if (given.wheel | length > 0
             or _requirements
                | select('match', '^(-e|--editable|-r|--requirement|-c|--constraint|-f|--find-links|\\\\.|/|~|file:)')
                | list | length > 0
             or _requirements | select('search', 'file:|^[^:]*/') | list | length > 0) else '' }}
        _venv_id: >-
          {{ (_venv_code
              ~ ([given.python, given.distribution_release, _packages, given.pip_extra_args, given.requirements_file,
                  given.constraints_file, _checksums.get(given.requirements_file, ''),
                  _checksums.get(given.constraints_file, '')] | to_json)) | hash('sha256') }}
    - name: Print
      ansible.builtin.debug:
        msg: {action: "{{ {'id': described.id, 'venv_id': described.venv_id} }}", jinja: "{{ jinja }}"}
"""

GIVEN = {"release_id": "", "packages": ["gunicorn==23.0", "Grüß"], "requirements_file": "requirements.txt",
         "constraints_file": "", "pip_extra_args": "", "wsgi_app": "app:create_app()", "python": "/usr/bin/python3",
         "distribution_release": "trixie", "wheel": ""}


@pytest.mark.parametrize(("requirements", "changes"), [
    ("flask==3.1\n# a comment\n\nrequests  # inline\n", {}),
    ("flask\n-e ./lib\n", {}),
    ("flask\n./lib\n", {}),
    ("flask @ file:///srv/x.whl\n", {}),
    ("flask\n", {"wheel": "/cache/app-1.0-py3-none-any.whl"}),
    ("flask\n", {"requirements_file": "missing.txt", "constraints_file": "requirements.txt"}),
    ("flask\n", {"requirements_file": ""}),
    ("flask\n", {"release_id": "v1.2", "pip_extra_args": "--no-binary :all:"}),
])
def test_it_names_the_release_and_venv_as_the_jinja_did(tmp_path, requirements, changes):
    code = tmp_path / "code"
    for name, content in {"app/__init__.py": "x = 1\n", "B.py": "b\n", "a.py": "a\n", "app/views.pyc": "junk",
                          "requirements.txt": requirements}.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(content)
    given = {**GIVEN, **changes}
    (tmp_path / "play.yml").write_text(JINJA_IDS)
    (tmp_path / "vars.json").write_text(json.dumps({"code": str(code), "given": given}))
    result = run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                  "-e", f"@{tmp_path / 'vars.json'}", "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"],
                 cwd=tmp_path, env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json"))
    tasks = {task["task"]["name"]: task["hosts"]["localhost"] for task in json.loads(result.stdout)["plays"][0]["tasks"]}
    printed = tasks["Print"]["msg"]
    assert printed["action"] == printed["jinja"]
    assert len(printed["action"]["venv_id"]) == 64
    assert printed["action"]["id"] == (given["release_id"] or printed["action"]["id"][:12])


def test_an_inline_comment_does_not_tie_the_venv_to_the_code(tmp_path):
    """The Jinja's regex (a doubled backslash in a Jinja string) never matched an inline comment, so
    a comment naming a path tied the venv to the code: one more venv per release, needlessly."""
    def ids(requirements, code):
        top = tmp_path / f"{len(requirements)}-{code}"
        top.mkdir(exist_ok=True)
        (top / "requirements.txt").write_text(requirements)
        (top / "app.py").write_text(code)
        return action.describe(str(top), action.fingerprint(str(top), []), GIVEN)

    commented = "flask  # pinned, see docs/pins\n"
    assert ids(commented, "v1")["venv_id"] == ids(commented, "v2")["venv_id"]
    assert ids(commented, "v1")["id"] != ids(commented, "v2")["id"]
    tied = "flask\n./lib\n"
    assert ids(tied, "v1")["venv_id"] != ids(tied, "v2")["venv_id"]
