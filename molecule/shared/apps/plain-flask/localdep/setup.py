"""A local package of the app, built in place by pip (`./localdep` in the requirements), as many
apps have. Its setup.py runs during the venv build: it records who ran it and tries to write
where only root could; the tests check it ran as the app's user and wrote nothing there. It also
leaves a link to a root-only file in the code: root takes the code over after the build, and must
change the link, never the file it points at."""

import os

from setuptools import setup

for probe in ("/etc/webstack-build-probe", "/srv/webstack-build-probe", "/root/webstack-build-probe"):
    try:
        with open(probe, "w") as handle:
            handle.write("written by a venv build\n")
    except OSError:
        pass
HERE = os.path.dirname(os.path.abspath(__file__))
try:
    os.symlink("/etc/webstack-link-target", os.path.join(HERE, "webstack-leak"))
except OSError:
    pass
with open(os.path.join(HERE, "localdep", "built_by.py"), "w") as handle:
    handle.write(f"UID = {os.getuid()}\n")

setup(name="localdep", version="1.0", packages=["localdep"])
