#!/usr/bin/python
"""Documentation of the pyops.webstack.webstack_fingerprint action, which runs on the controller."""

DOCUMENTATION = r"""
module: webstack_fingerprint
short_description: List a directory's files on the controller with their checksums
description:
  - Lists the regular files under I(path) on the controller, recursively, each with its SHA-1, in the
    controller's own process (no module is sent anywhere, no Python started). python_app fingerprints
    an app's code with it to name the release.
  - It lists what C(ansible.builtin.find) lists with C(recurse), C(excludes) and C(get_checksum) set.
    Links and files whose name starts with a dot are left out, but files inside a hidden
    directory are listed.
  - Given I(describe), it also names the release of that code and the venv it needs, as
    python_app does (C(id) and C(venv_id)).
  - It changes nothing, in check mode or not.
options:
  path:
    description: The directory on the controller.
    type: path
    required: true
  excludes:
    description: Basename patterns (shell-style) of files to leave out.
    type: list
    elements: str
    default: []
  describe:
    description:
      - What names a release besides its code, all keys required. C(id) is I(release_id) if it
        is not empty, else the first 12 hexadecimal digits of the SHA-256 of the files' relative
        paths and checksums, I(packages), I(requirements_file), I(constraints_file),
        I(pip_extra_args) and I(wsgi_app).
      - C(venv_id) is the SHA-256 of I(python), I(distribution_release), I(packages),
        I(pip_extra_args), and the names and checksums of the requirements and constraints files.
        The code counts too when the venv depends on it, that is when I(wheel) is not empty or a
        line of the requirements file names a path, an include, a link or an editable.
      - Keys are C(release_id), C(packages) (list), C(requirements_file), C(constraints_file),
        C(pip_extra_args), C(wsgi_app), C(python), C(distribution_release) and C(wheel), the last
        one being the wheel the source resolved to, or empty.
    type: dict
author: webstack developers (@pyops)
"""

EXAMPLES = r"""
- name: Fingerprint the code of hello
  pyops.webstack.webstack_fingerprint:
    path: apps/hello
    excludes: ["*.pyc"]
  register: code
"""

RETURN = r"""
files:
  description: Each file, in walk order, with C(path) and C(checksum) (SHA-1, hexadecimal).
  type: list
  returned: always
id:
  description: The release id.
  type: str
  returned: when I(describe) is given
venv_id:
  description: The id of the venv the release needs (SHA-256, hexadecimal).
  type: str
  returned: when I(describe) is given
"""
