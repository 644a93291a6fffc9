#!/usr/bin/python
"""List an app's releases in build order, name the one to roll back to, and prune old ones."""

DOCUMENTATION = r"""
module: webstack_releases
short_description: List, order and prune the releases of a webstack app
description:
  - Reads C(<root>/releases/*/.webstack-release) (what each release is and when it was built) and
    C(.webstack-gate) (C(passed) or C(failed) at the health gate on this host), and C(<root>/current).
  - Orders releases by the build time they recorded, never by file times, and names the one a plain
    rollback goes back to, the newest release built before the live one that did not fail its gate.
  - With I(keep), removes what keep-N cleanup allows, and never the live release or a protected one,
    then every venv under C(<root>/venvs) that no release left links to (releases built from the same
    requirements share one).
options:
  root:
    description: The app's base directory (with C(releases/) and C(current)).
    type: path
    required: true
  keep:
    description:
      - Keep this many releases that did not fail their gate, newest by build time, the live one
        included; remove the older ones and every failed one. 0 removes nothing.
    type: int
    default: 0
  protect:
    description: Release ids never removed (the one this run replaced, say).
    type: list
    elements: str
    default: []
  release:
    description:
      - A release id to report on in I(release) (built or not), so that one call tells a deploy what
        is live and where its release stands.
    type: str
author: webstack developers (@pyops)
"""

EXAMPLES = r"""
- name: Keep the last 5 releases of hello
  pyops.webstack.webstack_releases:
    root: /srv/hello
    keep: 5
    protect: ["{{ replaced_release }}"]
"""

RETURN = r"""
releases:
  description: Complete releases, newest first, each with id, path, built_at, gate, server, live.
  type: list
  returned: always
current:
  description: The id of the live release, or an empty string.
  type: str
  returned: always
previous:
  description: The release a plain rollback goes back to, or an empty string when there is none.
  type: str
  returned: always
removed:
  description: The ids removed (or that would be, in check mode).
  type: list
  returned: always
removed_venvs:
  description: The venv directories under C(<root>/venvs) removed (or that would be), no release linking to them.
  type: list
  returned: always
incomplete:
  description: Release directories without a record (a build that never finished); left alone.
  type: list
  returned: always
live:
  description: >-
    What C(current) points at, C(path) (resolved, or an empty string when there is no link) and
    C(record) (that release's C(.webstack-release), or an empty dict).
  type: dict
  returned: always
release:
  description: >-
    For I(release), C(complete) (it has its record) and C(gate) (C(passed), C(failed) or an empty
    string); an empty dict without I(release).
  type: dict
  returned: always
"""

import json
import os
import shutil
from ansible.module_utils.basic import AnsibleModule


def read_releases(root):
    """The complete releases under root, newest first, and the ids of directories without a record."""
    releases_dir = os.path.join(root, "releases")
    current = live_path(root)
    releases, incomplete = [], []
    names = sorted(os.listdir(releases_dir)) if os.path.isdir(releases_dir) else []
    for name in names:
        path = os.path.join(releases_dir, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        record = read_record(path)
        if not record:
            incomplete.append(name)
            continue
        gate = read_gate(path)
        releases.append({
            "id": name,
            "path": path,
            "built_at": str(record.get("built_at", "")),
            "gate": gate,
            "server": record.get("server", ""),
            "live": os.path.realpath(path) == current,
        })
    return order(releases), incomplete


def live_path(root):
    """The resolved path <root>/current points at, or "" when there is no link."""
    link = os.path.join(root, "current")
    return os.path.realpath(link) if os.path.islink(link) else ""


def read_record(path):
    """A release directory's record, or {} (none, or unreadable)."""
    try:
        with open(os.path.join(path, ".webstack-release")) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def read_gate(path):
    try:
        with open(os.path.join(path, ".webstack-gate")) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def order(releases):
    """Newest first by recorded build time (releases from before the record had one come last)."""
    return sorted(releases, key=lambda release: (release["built_at"], release["id"]), reverse=True)


def previous_of(releases):
    """The newest release built before the live one that did not fail its gate ("" if none)."""
    ids = [release["id"] for release in releases]
    live = [release["id"] for release in releases if release["live"]]
    start = ids.index(live[0]) + 1 if live else 0
    for release in releases[start:]:
        if release["gate"] != "failed":
            return release["id"]
    return ""


def to_remove(releases, keep, protect):
    """What keep-N cleanup removes: failed releases, and good ones past the newest `keep`."""
    if keep <= 0:
        return []
    kept, removed = 0, []
    for release in releases:
        good = release["gate"] != "failed"
        if good and kept < keep:
            kept += 1
            continue
        if release["live"] or release["id"] in protect:
            continue
        removed.append(release["id"])
    return removed


def unused_venvs(root, gone):
    """The venvs under <root>/venvs that no release directory links to, besides those in gone."""
    venvs_dir = os.path.join(root, "venvs")
    releases_dir = os.path.join(root, "releases")
    if not os.path.isdir(venvs_dir):
        return []
    used = set()
    for name in os.listdir(releases_dir) if os.path.isdir(releases_dir) else []:
        if name not in gone:
            used.add(os.path.realpath(os.path.join(releases_dir, name, "venv")))
    return sorted(name for name in os.listdir(venvs_dir)
                  if os.path.realpath(os.path.join(venvs_dir, name)) not in used)


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "keep": {"type": "int", "default": 0},
            "protect": {"type": "list", "elements": "str", "default": []},
            "release": {"type": "str"},
        },
        supports_check_mode=True,
    )
    root, keep, protect = module.params["root"], module.params["keep"], module.params["protect"]
    if keep < 0:
        module.fail_json(msg=f"keep must be 0 or more (got {keep})")
    releases, incomplete = read_releases(root)
    live_dir = live_path(root)
    live_release = {"path": live_dir, "record": read_record(live_dir) if live_dir else {}}
    asked = {}
    if module.params["release"]:
        release_id = module.params["release"]
        if "/" in release_id or release_id in ("", ".", ".."):
            module.fail_json(msg=f"release must be a release id (got {release_id!r})")
        path = os.path.join(root, "releases", release_id)
        asked = {"complete": bool(read_record(path)), "gate": read_gate(path)}
    removed = to_remove(releases, keep, set(protect))
    if removed and not module.check_mode:
        for release_id in removed:
            shutil.rmtree(os.path.join(root, "releases", release_id))
    removed_venvs = unused_venvs(root, set(removed)) if keep > 0 else []
    if removed_venvs and not module.check_mode:
        for name in removed_venvs:
            shutil.rmtree(os.path.join(root, "venvs", name))
    remaining = [release for release in releases if release["id"] not in removed]
    live = [release["id"] for release in remaining if release["live"]]
    module.exit_json(
        changed=bool(removed or removed_venvs),
        releases=remaining,
        current=live[0] if live else "",
        previous=previous_of(remaining),
        removed=removed,
        removed_venvs=removed_venvs,
        incomplete=incomplete,
        live=live_release,
        release=asked,
    )


if __name__ == "__main__":
    main()
