"""The repository builds as the collection pyops.webstack, and an installed copy works by FQCN."""

import json
import tarfile

import pytest
import yaml

from webstack_testlib import ROLE_NAMES, ROOT, ansible_env, run

PLAYBOOK = """
- name: Use the installed collection by FQCN
  hosts: localhost
  gather_facts: false
  vars:
    apps:
      - {name: shop, source: /srv/src/shop, wsgi_app: "shop:app", domains: [shop.test]}
  tasks:
    - name: The filters resolve from the collection
      ansible.builtin.copy:
        content: "{{ apps | pyops.webstack.webstack_nginx_sites | to_json }}"
        dest: "{{ out }}"
        mode: "0644"

- name: Every role resolves by FQCN
  hosts: web
  gather_facts: false
  roles:
    - role: pyops.webstack.nginx
    - role: pyops.webstack.python_app
    - role: pyops.webstack.gunicorn
    - role: pyops.webstack.systemd_unit
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("collection")
    (work / "ansible.cfg").write_text("[defaults]\n")  # nothing from this checkout's ansible.cfg
    run(["ansible-galaxy", "collection", "build", "--output-path", str(work), str(ROOT)])
    [tarball] = work.glob("pyops-webstack-*.tar.gz")
    collections = work / "collections"
    run(["ansible-galaxy", "collection", "install", "--offline", "-p", str(collections), str(tarball)],
        env=ansible_env(ANSIBLE_CONFIG=str(work / "ansible.cfg")))
    return work, tarball, collections


def test_tarball_holds_the_collection_and_nothing_else(installed):
    _, tarball, _ = installed
    names = set(tarfile.open(tarball).getnames())
    for role in ROLE_NAMES:
        assert f"roles/{role}/meta/argument_specs.yml" in names
        assert f"roles/{role}/tasks/main.yml" in names
    assert "plugins/filter/webstack.py" in names
    assert "meta/runtime.yml" in names and "MANIFEST.json" in names
    # tests/sanity alone ships: ansible-test (Galaxy's sanity check) reads its ignore file there.
    shipped_tests = {"tests", "tests/sanity", "tests/sanity/ignore-2.19.txt"}
    leaked = sorted(n for n in names if n.split("/")[0] in {".venv", ".collections", "molecule", "tests", ".git", ".cache"}
                    and n not in shipped_tests)
    assert not leaked, leaked
    assert "tests/sanity/ignore-2.19.txt" in names


def test_installed_collection_runs_by_fqcn(installed, tmp_path):
    work, _, collections = installed
    playbook = tmp_path / "use.yml"
    playbook.write_text(PLAYBOOK)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"web": {"hosts": {"somewhere": {}}}}))
    out = tmp_path / "sites.json"
    env = ansible_env(
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_ROLES_PATH=str(tmp_path),
    )
    run(["ansible-playbook", "-i", str(inventory), "--syntax-check", str(playbook)], cwd=tmp_path, env=env)
    run(["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", f"out={out}",
         "-e", "ansible_python_interpreter={{ ansible_playbook_python }}", "--limit", "localhost", str(playbook)],
        cwd=tmp_path, env=env)
    [site] = json.loads(out.read_text())
    assert site["upstream"]["servers"] == ["unix:/run/shop.sock"]
    assert site["server_names"] == ["shop.test"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_docs_come_from_the_argument_specs(installed, role):
    work, _, collections = installed
    env = ansible_env(ANSIBLE_CONFIG=str(work / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections))
    doc = json.loads(run(["ansible-doc", "-t", "role", "--json", f"pyops.webstack.{role}"], env=env).stdout)
    options = doc[f"pyops.webstack.{role}"]["entry_points"]["main"]["options"]
    assert f"{role}_" in " ".join(options)
