#!/usr/bin/env bash
# Make this checkout resolvable as the collection pyops.webstack (ansible.cfg's collections_path
# starts with .collections), so playbooks, roles and Molecule all use the same FQCNs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$top/.collections/ansible_collections/pyops"
ln -sfn ../../.. "$top/.collections/ansible_collections/pyops/webstack"
