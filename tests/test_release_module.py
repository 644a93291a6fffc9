"""pyops.webstack.webstack_release (plugins/action and plugins/modules): a code release built in one
round trip, as python_app's build.yml calls it."""

import grp
import io
import json
import os
import pwd
import stat
import subprocess
import sys
import tarfile
import textwrap

import pytest

from webstack_testlib import ansible_env, run

ENTRY = "# entry of {{ python_app_release.id }} for {{ wsgi_app }}\napplication = None\n"

BUILD = """\
- name: Build
  pyops.webstack.webstack_release:
    src: "{{ code }}"
    entry_template: entry.py.j2
    path: "{{ release }}"
    venv: "{{ venv }}"
    group: "{{ group }}"
    builder: "{{ builder }}"
    static_dirs: [app/static, /app/missing/, escape]
    record: "{{ python_app_release }}"
  register: built
  ignore_errors: true

- name: Complete
  pyops.webstack.webstack_release:
    path: "{{ release }}"
    venv: "{{ venv }}"
    group: "{{ group }}"
    static_dirs: [app/static]
    record: "{{ python_app_release }}"
  when: built.complete is defined and not built.complete and complete_now | default(false) | bool
  ignore_errors: true
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners are set as root")


def project(tmp_path, built_venv=True):
    """The code (with a .pyc, a __pycache__, a script, a static directory and a link out), a venv
    whose python is this one (built when built_venv), and the role that calls the module."""
    code = tmp_path / "code"
    (code / "app" / "static" / "css").mkdir(parents=True)
    (code / "app" / "__init__.py").write_text("VALUE = 1\n")
    (code / "app" / "static" / "css" / "site.css").write_text("body {}\n")
    (code / "app" / "__pycache__").mkdir()
    (code / "app" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"x")
    (code / "old.pyc").write_bytes(b"x")
    (code / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(code / "run.sh", 0o755)
    (tmp_path / "outside").mkdir(mode=0o700)
    os.symlink(tmp_path / "outside", code / "escape")
    venv = tmp_path / "venvs" / "v1"
    (venv / "bin").mkdir(parents=True)
    os.symlink(sys.executable, venv / "bin" / "python")
    if built_venv:
        (venv / ".webstack-venv").write_text("{}\n")
    role = tmp_path / "roles" / "build"
    (role / "templates").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "templates" / "entry.py.j2").write_text(ENTRY)
    (role / "tasks" / "main.yml").write_text(BUILD)
    return code, venv


def play(tmp_path, *extra, builder="root"):
    release = tmp_path / "releases" / "abc123"
    release.parent.mkdir(exist_ok=True)
    variables = {"code": str(tmp_path / "code"), "release": str(release), "venv": str(tmp_path / "venvs" / "v1"),
                 "group": grp.getgrgid(os.getgid()).gr_name, "builder": builder, "wsgi_app": "app:make()",
                 "python_app_release": {"id": "abc123", "name": "hello"}}
    (tmp_path / "play.yml").write_text(textwrap.dedent("""\
        - hosts: localhost
          gather_facts: false
          roles: [build]
        """))
    result = run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                  "-e", json.dumps(variables), "-e", "ansible_python_interpreter={{ ansible_playbook_python }}",
                  *extra],
                 cwd=tmp_path, env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json",
                                               ANSIBLE_ROLES_PATH=str(tmp_path / "roles")), check=False)
    assert result.returncode in (0, 2), result.stderr[-3000:]
    tasks = json.loads(result.stdout)["plays"][0]["tasks"]
    return release, {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"] for task in tasks}


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_code_release_is_built_and_completed_in_one_call(tmp_path):
    project(tmp_path)
    release, results = play(tmp_path)
    built = results["Build"]
    assert built["changed"] and built["venv_ready"] and built["complete"], built
    assert results["Complete"].get("skipped"), "nothing left to complete"
    src = release / "src"
    assert mode(release) == 0o751 and os.readlink(release / "venv") == str(tmp_path / "venvs" / "v1")
    assert (src / "app" / "__init__.py").read_text() == "VALUE = 1\n"
    assert not (src / "old.pyc").exists() and not (src / "app" / "__pycache__" / "stale.cpython-311.pyc").exists()
    assert os.readlink(src / "escape") == str(tmp_path / "outside"), "a link is unpacked as a link"
    # u=rwX,g=rX,o= for the code; the static directory (and only it) readable by others, its
    # parents passable
    assert mode(src / "run.sh") == 0o750 and mode(src / "app" / "__init__.py") == 0o640
    assert mode(src / "app" / "static") == 0o755 and mode(src / "app" / "static" / "css" / "site.css") == 0o644
    assert mode(src / "app") == 0o751 and mode(src) == 0o751
    assert mode(tmp_path / "outside") == 0o700, "a static directory out of the code is left alone"
    assert sorted(built["skipped_static"]) == ["/app/missing/: not in the code", "escape: outside the code"]
    compiled = list((src / "app" / "__pycache__").glob("__init__.*.pyc"))
    assert compiled and mode(compiled[0]) == 0o640, "bytecode compiled for the app's group alone"
    assert list((release / "__pycache__").glob("webstack_wsgi.*.pyc")), "the entry point compiled too"
    assert (release / "webstack_wsgi.py").read_text().endswith("# entry of abc123 for app:make()\napplication = None\n")
    assert mode(release / "webstack_wsgi.py") == 0o640
    marker = json.loads((release / ".webstack-release").read_text())
    assert marker["id"] == "abc123" and marker["name"] == "hello" and marker["built_at"].endswith("Z")
    if os.geteuid() == 0:
        assert {os.lstat(p).st_uid for p in [release, *release.rglob("*")]} == {0}


def test_an_unfinished_build_at_the_path_is_replaced(tmp_path):
    project(tmp_path)
    release = tmp_path / "releases" / "abc123"
    (release / "src").mkdir(parents=True)
    (release / "src" / "left-over.py").write_text("x\n")
    release, results = play(tmp_path)
    assert results["Build"]["complete"] and not (release / "src" / "left-over.py").exists()


@needs_root
def test_the_code_is_the_builders_until_its_venv_is_built(tmp_path):
    code, venv = project(tmp_path, built_venv=False)
    release, results = play(tmp_path, builder="nobody")
    built = results["Build"]
    assert built["changed"] and not built["venv_ready"] and not built["complete"], built
    nobody = pwd.getpwnam("nobody").pw_uid
    assert {os.lstat(p).st_uid for p in (release / "src").rglob("*")} == {nobody}
    assert os.lstat(release / "src").st_uid == nobody and not (release / ".webstack-release").exists()
    assert not list((release / "src").rglob("__pycache__")), "not compiled before its venv is built"
    (venv / ".webstack-venv").write_text("{}\n")
    # The second call completes what the first unpacked: the code root's, compiled, marked.
    release, results = play(tmp_path, "-e", "complete_now=true", builder="nobody")
    assert results["Build"]["complete"], "a venv built by now: the first call completes it"
    assert {os.lstat(p).st_uid for p in (release / "src").rglob("*")} == {0}


@needs_root
def test_the_complete_call_finishes_an_unpacked_release(tmp_path):
    code, venv = project(tmp_path, built_venv=False)
    release, results = play(tmp_path, builder="nobody")
    assert not results["Build"]["complete"]
    # The venv build ends (venv.yml), then the release is completed without unpacking it again.
    (venv / ".webstack-venv").write_text("{}\n")
    (tmp_path / "roles" / "build" / "tasks" / "main.yml").write_text(
        BUILD.replace("- name: Build\n", "- name: Build\n  when: false\n", 1).replace(
            "built.complete is defined and not built.complete and complete_now | default(false) | bool", "true"))
    release, results = play(tmp_path)
    done = results["Complete"]
    assert done["changed"] and done["complete"], done
    assert {os.lstat(p).st_uid for p in (release / "src").rglob("*")} == {0}
    assert json.loads((release / ".webstack-release").read_text())["id"] == "abc123"


def test_a_file_with_two_names_is_shipped_as_two_files(tmp_path):
    code, _ = project(tmp_path)
    os.link(code / "app" / "__init__.py", code / "app" / "again.py")
    release, results = play(tmp_path)
    assert results["Build"]["complete"], results["Build"]
    assert (release / "src" / "app" / "again.py").read_text() == "VALUE = 1\n"


def test_check_mode_builds_nothing(tmp_path):
    project(tmp_path)
    release, results = play(tmp_path, "--check")
    assert results["Build"]["changed"] and results["Build"]["complete"]
    assert not release.exists()


def test_code_that_does_not_compile_fails_the_call(tmp_path):
    code, _ = project(tmp_path)
    (code / "app" / "broken.py").write_text("def broken(:\n")
    release, results = play(tmp_path)
    built = results["Build"]
    assert built["failed"] and "compiling the code failed" in built["msg"] and "broken.py" in built["msg"], built
    assert not (release / ".webstack-release").exists(), "no marker on a release that failed"


def test_a_missing_source_fails_on_the_controller(tmp_path):
    project(tmp_path)
    (tmp_path / "code").rename(tmp_path / "gone")
    release, results = play(tmp_path)
    assert results["Build"]["failed"] and "no such directory on the controller" in results["Build"]["msg"]
    assert not release.exists()


def test_an_archive_never_writes_through_a_link_it_made(tmp_path):
    """A name given twice, first as a link out of the code, then as a file: refused, nothing written
    outside. (The action packs a directory walk, which names nothing twice; the module checks anyway.)"""
    project(tmp_path)
    outside = tmp_path / "outside" / "target.txt"
    outside.write_text("untouched\n")
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("a")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        data = b"overwritten\n"
        item = tarfile.TarInfo("a")
        item.size = len(data)
        tar.addfile(item, io.BytesIO(data))
    release = tmp_path / "releases" / "abc123"
    release.parent.mkdir(exist_ok=True)
    args = {"ANSIBLE_MODULE_ARGS": {"path": str(release), "venv": str(tmp_path / "venvs" / "v1"),
                                    "group": grp.getgrgid(os.getgid()).gr_name, "unpack": True,
                                    "archive": str(archive)}}
    module = os.path.join(os.path.dirname(__file__), "..", "plugins", "modules", "webstack_release.py")
    done = subprocess.run([sys.executable, module], input=json.dumps(args), capture_output=True, text=True,
                          check=False)
    result = json.loads(done.stdout)
    assert result["failed"] and "twice" in result["msg"], result
    assert outside.read_text() == "untouched\n"
