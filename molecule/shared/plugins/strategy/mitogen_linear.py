"""Mitogen's linear strategy (PyPI `mitogen`, pinned in requirements.txt), for the long scenarios.

Mitogen keeps one Python interpreter per host open and runs each module in it, instead of one
`docker exec` and interpreter start per task: an idempotent site.yml on the demo host took 20 s
instead of 50 s. The scenarios that use it set ANSIBLE_STRATEGY=mitogen_linear and
ansible_connection "docker" (the name Mitogen takes over; without Mitogen it still resolves to
community.docker.docker). The multinode scenario and `make demo` stay on plain Ansible, so
its transport (pipelining, become_user postgres through acl) is still tested as users run it.

The controller's own tasks (Molecule's create and destroy, delegate_to: localhost) stay on
Ansible's local connection: under Mitogen, an async docker_container never finished.
WEBSTACK_MITOGEN_LOCAL=1 gives it to Mitogen too, for the fast tests' localhost playbooks.
"""

import os

import ansible_mitogen.loaders
import ansible_mitogen.strategy

if not os.environ.get("WEBSTACK_MITOGEN_LOCAL"):
    ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = tuple(
        name for name in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if name != "local"
    )
Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    """The linear strategy with Mitogen's connection handling."""
