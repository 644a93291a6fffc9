"""Sources resolved on the controller by python_app's source.yml: each kind becomes the directory a
release is built from (run by Ansible on localhost, as it runs delegated in a deploy)."""

import hashlib
import json
import pathlib
import subprocess
import tarfile
import zipfile

import pytest
import yaml

from webstack_testlib import ROOT, run_local_playbook

APP = ROOT / "apps" / "hello"


def app_files():
    return sorted(p for p in APP.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def make_sources(tmp_path):
    zipped = tmp_path / "hello.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in app_files():
            archive.write(path, path.relative_to(APP))
    tarred = tmp_path / "hello-1.0.tar.gz"
    with tarfile.open(tarred, "w:gz") as archive:
        archive.add(APP, arcname="hello-1.0", filter=lambda t: None if "__pycache__" in t.name else t)
    wheel = tmp_path / "hello-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: the wheel is only copied here
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(APP), str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"], ["tag", "v1"]):
        subprocess.run(git + cmd, check=True)
    (repo / "later.txt").write_text("a commit after the tag\n")
    for cmd in (["add", "-A"], ["commit", "-q", "-m", "two"]):
        subprocess.run(git + cmd, check=True)
    sha = lambda p: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    return {
        "zip": {"archive": str(zipped)},
        "tar_top_dir": {"archive": str(tarred), "checksum": sha(tarred)},
        "url": {"archive": f"file://{zipped}", "checksum": sha(zipped)},
        "wheel": {"archive": str(wheel)},
        "git_tag": {"git": f"file://{repo}", "version": "v1"},
        "bad_checksum": {"archive": str(zipped), "checksum": "sha256:" + "0" * 64},
    }


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sources")
    sources = make_sources(tmp_path)
    plays = []
    for case, source in sources.items():
        plays.append({
            "name": case, "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}",
                     "python_app_name": f"app-{case.replace('_', '-')}", "python_app_source": source,
                     "python_app_source_cache": str(tmp_path / "cache")},
            "tasks": [{"name": case, "block": [
                {"name": "resolve", "ansible.builtin.include_role": {
                    "name": "pyops.webstack.python_app", "tasks_from": "source", "public": True}},
                {"name": "record", "ansible.builtin.set_fact": {
                    "outcomes": "{{ outcomes | default({}) | combine({'%s': _python_app_resolved_source}) }}" % case}},
            ], "rescue": [{"name": "record failure", "ansible.builtin.set_fact": {
                "outcomes": "{{ outcomes | default({}) | combine({'%s': {'error': ansible_failed_result.msg}}) }}"
                            % case}}]}],
        })
    plays.append({"name": "write", "hosts": "localhost", "connection": "local", "gather_facts": False,
                  "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                  "tasks": [{"name": "write", "ansible.builtin.copy": {
                      "content": "{{ outcomes | to_json }}", "dest": str(tmp_path / "out.json"), "mode": "0644"}}]})
    playbook = tmp_path / "sources.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    run_local_playbook(playbook)
    return json.loads((tmp_path / "out.json").read_text())


def listing(directory):
    base = pathlib.Path(directory)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


EXPECTED = sorted(str(p.relative_to(APP)) for p in app_files())


@pytest.mark.parametrize("case", ["zip", "tar_top_dir", "url"])
def test_archives_unpack_to_the_app(resolved, case):
    assert listing(resolved[case]["dir"]) == EXPECTED
    assert resolved[case]["wheel"] == ""


def test_a_wheel_is_kept_to_be_installed(resolved):
    assert resolved["wheel"]["wheel"] == "hello-1.0-py3-none-any.whl"
    assert listing(resolved["wheel"]["dir"]) == ["hello-1.0-py3-none-any.whl"]


def test_git_exports_the_tagged_commit_without_git(resolved):
    exported = listing(resolved["git_tag"]["dir"])
    assert exported == EXPECTED, "the commit of the tag, not the branch's later one, and no .git"
    assert len(resolved["git_tag"]["resolved"]) == 40


def test_a_wrong_checksum_fails(resolved):
    assert "python_app_source: the archive" in resolved["bad_checksum"]["error"]
    assert "not sha256:" + "0" * 64 in resolved["bad_checksum"]["error"]


def test_the_same_archive_resolves_to_the_same_directory(resolved):
    assert resolved["zip"]["dir"].rsplit("/", 1)[1] == resolved["url"]["dir"].rsplit("/", 1)[1]
