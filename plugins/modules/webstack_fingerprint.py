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
"""
