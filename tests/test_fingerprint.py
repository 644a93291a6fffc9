"""pyops.webstack.webstack_fingerprint lists what ansible.builtin.find listed for python_app before
it (so release ids stay the same), in the controller's own process."""

import json
import os
import textwrap

from webstack_testlib import ansible_env, run

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
