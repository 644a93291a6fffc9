#!/usr/bin/env bash
# ansible-test sanity, the check Galaxy and Automation Hub run on a collection, on the artifact
# `make collection` builds, unpacked under ansible_collections/pyops/webstack as ansible-test
# needs. Its venvs (--venv) install their tools from PyPI through this machine's CA bundle (a
# TLS-intercepting proxy may sit before PyPI). ansible-test bootstraps pip in each venv with a
# script from ci-files.testing.ansible.com, which is out of reach here: a stand-in runs pip from
# PyPI's own wheel instead. pslint is skipped: it needs PowerShell, which Debian does not ship.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${WEBSTACK_BIN:-.venv/bin}
# Outside the checkout: under a git work tree, ansible-test would take git's list of files, in
# which an ignored directory has none.
out=${WEBSTACK_SANITY_DIR:-/tmp/webstack-sanity}
rm -rf "$out" && mkdir -p "$out/ansible_collections/pyops/webstack" "$out/dist"
"$bin/ansible-galaxy" collection build --force --output-path "$out/dist" . >/dev/null
tar -xzf "$out"/dist/pyops-webstack-*.tar.gz -C "$out/ansible_collections/pyops/webstack"

command -v shellcheck >/dev/null 2>&1 || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null
}
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The pip version ansible-test pins for its venvs (get_venv_packages: pip='24.2').
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',/\1/p" "$("$bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -1)
cache=~/.ansible/test/cache
script="$cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$script" ]; then
  mkdir -p "$cache"
  "$bin/pip" download -q --no-deps "pip==$pip_version" -d "$cache"
  cat >"$script" <<PY
# Stands in for get-pip.py (written by webstack's tools/sanity.sh): pip $pip_version run from
# PyPI's wheel, installing what ansible-test asks for; get-pip.py's --no-setuptools and
# --no-wheel only say what not to add.
import os, runpy, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$pip_version-py3-none-any.whl"))
sys.argv = ["pip", "install", *[a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY
fi
bin=$(cd "$bin" && pwd)
cd "$out/ansible_collections/pyops/webstack"
"$bin/ansible-test" sanity --venv --python "$("$bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --skip-test pslint --color no "$@"
