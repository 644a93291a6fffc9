"""Helpers shared by the fast tests: paths of the checkout and running Ansible commands."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLES = ROOT / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())


# Mitogen's strategy with its local connection, for the big localhost-only playbooks (rendering
# every template case took 137 s with a Python start per task, 25 s under Mitogen). Not for runs
# with become: Mitogen runs sudo even where Ansible knows it is not needed (root to root).
MITOGEN = {
    "ANSIBLE_STRATEGY_PLUGINS": str(ROOT / "molecule/shared/plugins/strategy"),
    "ANSIBLE_STRATEGY": "mitogen_linear",
    "WEBSTACK_MITOGEN_LOCAL": "1",
}


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def run(cmd, cwd=ROOT, env=None, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env or ansible_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def run_local_playbook(playbook):
    """One of the big localhost-only playbooks (no become), under Mitogen."""
    return run(["ansible-playbook", "-i", "localhost,", str(playbook)], env=ansible_env(**MITOGEN))
