"""A local package of the app, built in place by pip (`./localdep` in the requirements), as many
apps have. Its setup.py runs during the venv build: it records who ran it and tries to write
where only root could; the tests check it ran as the app's user and wrote nothing there."""

import os

from setuptools import setup

for probe in ("/etc/webstack-build-probe", "/srv/webstack-build-probe", "/root/webstack-build-probe"):
    try:
        with open(probe, "w") as handle:
            handle.write("written by a venv build\n")
    except OSError:
        pass
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "localdep", "built_by.py"), "w") as handle:
    handle.write(f"UID = {os.getuid()}\n")

setup(name="localdep", version="1.0", packages=["localdep"])
