"""pyops.webstack.webstack_files (plugins/action and plugins/modules): many files in one round trip,
each template rendered once on the controller exactly as the template module renders it."""

import json
import os
import stat
import textwrap

from webstack_testlib import ansible_env, run

TEMPLATE = """\
{{ ansible_managed | comment }}
# {{ title }}
{% for item in items %}
line {{ item }}
{% endfor %}
{{ extra | default('no extra') }}
"""


def play(tmp_path, tasks, *extra):
    """Run tasks in a role of tmp_path (its templates/unit.j2 is TEMPLATE) on localhost; the JSON
    callback's results of each task, by task name."""
    role = tmp_path / "roles" / "files"
    (role / "templates").mkdir(parents=True, exist_ok=True)
    (role / "tasks").mkdir(exist_ok=True)
    (role / "templates" / "unit.j2").write_text(TEMPLATE)
    (role / "tasks" / "main.yml").write_text(textwrap.dedent(tasks))
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  vars:\n    title: Hello\n    items: [1, 2]\n"
        "    out: " + str(tmp_path / "out") + "\n  roles: [files]\n")
    result = run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                  "-e", "ansible_python_interpreter={{ ansible_playbook_python }}", *extra],
                 cwd=tmp_path, env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json",
                                               ANSIBLE_ROLES_PATH=str(tmp_path / "roles")), check=False)
    assert result.returncode in (0, 2), result.stderr[-3000:]
    tasks_run = json.loads(result.stdout)["plays"][0]["tasks"]
    return {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"] for task in tasks_run}


WRITE = """\
- name: Write
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}", state: directory, mode: "0750"}
      - {dest: "{{ out }}/a.conf", template: unit.j2, mode: "0640"}
      - {dest: "{{ out }}/b.conf", template: unit.j2, mode: "0644", vars: {extra: from the entry, items: [3]}}
      - {dest: "{{ out }}/c.txt", content: "plain\\n", mode: "0600"}
    absent: ["{{ out }}/old.conf", "{{ out }}/never-there"]
    backup: true
  register: written
"""


def test_writes_what_differs_in_one_task_and_renders_as_the_template_module(tmp_path):
    out = tmp_path / "out"
    tasks = WRITE + """\
- name: The template module
  ansible.builtin.template: {src: unit.j2, dest: "{{ out }}/by-template.conf", mode: "0640"}
"""
    out.mkdir()
    (out / "old.conf").write_text("stale\n")
    (out / "a.conf").write_text("# old\n")
    first = play(tmp_path, tasks)["Write"]
    assert first["changed"]
    assert [f["dest"] for f in first["files"]] == [str(out), str(out / "a.conf"), str(out / "b.conf"), str(out / "c.txt")]
    assert [f["created"] for f in first["files"]] == [False, False, True, True]
    assert first["removed"] == [str(out / "old.conf")] and not (out / "old.conf").exists()
    # a.conf was rewritten with a backup of the old content; the new ones have none
    backup = [f for f in first["files"] if f.get("backup_file")]
    assert [f["dest"] for f in backup] == [str(out / "a.conf")]
    assert open(backup[0]["backup_file"]).read() == "# old\n"
    assert (out / "a.conf").read_bytes() == (out / "by-template.conf").read_bytes(), "rendered as template renders"
    assert (out / "a.conf").read_text().endswith("\n# Hello\nline 1\nline 2\nno extra\n")
    assert (out / "a.conf").read_text().startswith("#\n# Ansible managed"), "ansible_managed, as template gives it"
    assert (out / "b.conf").read_text().endswith("\n# Hello\nline 3\nfrom the entry\n")
    assert (out / "c.txt").read_text() == "plain\n"
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.suffix in (".conf", ".txt")
            and "~" not in p.name} == {"a.conf": 0o640, "b.conf": 0o644, "c.txt": 0o600, "by-template.conf": 0o640}
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert not [p for p in out.iterdir() if p.name.startswith(".webstack-")], "no temporary file left"

    again = play(tmp_path, tasks)["Write"]
    assert not again["changed"] and again["changed_paths"] == [] and again["removed"] == []


def test_a_mode_alone_is_set_in_place_and_check_mode_writes_nothing(tmp_path):
    play(tmp_path, WRITE)
    out = tmp_path / "out"
    os.chmod(out / "c.txt", 0o644)
    inode = (out / "c.txt").stat().st_ino
    fixed = play(tmp_path, WRITE)["Write"]
    assert fixed["changed_paths"] == [str(out / "c.txt")]
    assert stat.S_IMODE((out / "c.txt").stat().st_mode) == 0o600 and (out / "c.txt").stat().st_ino == inode

    checked = play(tmp_path, WRITE, "--check", "--diff", "-e", "title=Changed")["Write"]
    assert checked["changed_paths"] == [str(out / "a.conf"), str(out / "b.conf")]
    assert "# Hello\n" in (out / "a.conf").read_text(), "check mode wrote nothing"
    [diff_a, diff_b] = checked["diff"]
    assert "# Hello\n" in diff_a["before"] and "# Changed\n" in diff_a["after"]


def test_a_link_is_replaced_by_the_file_and_a_directory_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").write_text("not mine\n")
    os.symlink(tmp_path / "elsewhere", out / "a.conf")
    play(tmp_path, WRITE)
    assert not (out / "a.conf").is_symlink() and (tmp_path / "elsewhere").read_text() == "not mine\n"
    (out / "b.conf").unlink()
    (out / "b.conf").mkdir()
    refused = play(tmp_path, WRITE)["Write"]
    assert refused["failed"] and "a directory" in refused["msg"]


def test_bad_entries_fail_before_anything_is_written(tmp_path):
    bad = """\
- name: Write
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}/x.conf", content: "x", mode: "rw"}
  register: written
  ignore_errors: true
- name: Both
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}/y.conf", content: "x", template: unit.j2, mode: "0644"}
  ignore_errors: true
"""
    (tmp_path / "out").mkdir()
    results = play(tmp_path, bad)
    assert results["Write"]["failed"] and "mode must be octal" in results["Write"]["msg"]
    assert results["Both"]["failed"] and "exclusive" in results["Both"]["msg"]
    assert list((tmp_path / "out").iterdir()) == []


def test_force_false_leaves_an_existing_file_and_makes_a_missing_one(tmp_path):
    tasks = """\
- name: Secrets
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}/kept", content: "new\\n", mode: "0600", force: false}
      - {dest: "{{ out }}/made", content: "new\\n", mode: "0600", force: false}
"""
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept").write_text("old\n")
    result = play(tmp_path, tasks)["Secrets"]
    assert result["changed_paths"] == [str(out / "made")]
    assert (out / "kept").read_text() == "old\n" and (out / "made").read_text() == "new\n"


def test_an_account_not_made_yet_plans_in_check_mode_and_fails_otherwise(tmp_path):
    """--check on a bare host: the app's group is not there yet (the play would have made it)."""
    tasks = """\
- name: Layout
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}", state: directory, mode: "0750", group: webstack-no-such-group}
      - {dest: "{{ out }}/env", content: "A=1\\n", mode: "0640", group: webstack-no-such-group}
  ignore_errors: true
"""
    planned = play(tmp_path, tasks, "--check")["Layout"]
    assert planned["changed"] and not planned.get("failed") and not (tmp_path / "out").exists()
    refused = play(tmp_path, tasks)["Layout"]
    assert refused["failed"] and "no such owner or group: webstack-no-such-group" in refused["msg"]
    assert not (tmp_path / "out").exists()


def test_read_returns_each_file_after_the_writes_in_the_same_call(tmp_path):
    tasks = """\
- name: Secrets
  pyops.webstack.webstack_files:
    files:
      - {dest: "{{ out }}/made", content: "new\\n", mode: "0600", force: false}
      - {dest: "{{ out }}/kept", content: "never written", mode: "0600", force: false}
    read: ["{{ out }}/made", "{{ out }}/kept", "{{ out }}/missing"]
  no_log: true
  register: secrets
- name: Show
  ansible.builtin.debug:
    var: secrets.read
"""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept").write_text("old value")
    results = play(tmp_path, tasks)
    assert results["Secrets"]["censored"], "no_log hides the contents"
    assert results["Show"]["secrets.read"] == [
        {"path": str(tmp_path / "out/made"), "content": "new\n"},
        {"path": str(tmp_path / "out/kept"), "content": "old value"},
        {"path": str(tmp_path / "out/missing"), "content": None}]
