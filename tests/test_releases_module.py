"""Release ordering, the rollback target and keep-N cleanup (plugins/modules/webstack_releases.py)."""

import importlib.util
import json
import os

import pytest

from webstack_testlib import ROOT, ansible_env, run

SPEC = importlib.util.spec_from_file_location("webstack_releases", ROOT / "plugins/modules/webstack_releases.py")
releases_module = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(releases_module)


def make_tree(tmp_path, releases, live):
    """releases: (id, built_at or None, gate or None); a release id with built_at False has no record."""
    for release_id, built_at, gate in releases:
        path = tmp_path / "releases" / release_id
        path.mkdir(parents=True)
        if built_at is not False:
            record = {"id": release_id, "server": "gunicorn"}
            if built_at is not None:
                record["built_at"] = built_at
            (path / ".webstack-release").write_text(json.dumps(record))
        if gate:
            (path / ".webstack-gate").write_text(gate + "\n")
    if live:
        os.symlink(tmp_path / "releases" / live, tmp_path / "current")
    return releases_module.read_releases(str(tmp_path))


def test_order_is_by_recorded_build_time_never_by_name_or_mtime(tmp_path):
    # ids sort the other way round from build times, and mtimes are all "now"
    found, incomplete = make_tree(tmp_path, [
        ("zzz", "2026-01-01T00:00:01.000000Z", "passed"),
        ("aaa", "2026-01-03T00:00:00.000000Z", "passed"),
        ("mmm", "2026-01-02T00:00:00.000000Z", "failed"),
        ("old", None, ""),
        ("half", False, None),
    ], live="aaa")
    assert [r["id"] for r in found] == ["aaa", "mmm", "zzz", "old"]
    assert incomplete == ["half"]
    assert [r["live"] for r in found] == [True, False, False, False]
    assert found[1]["gate"] == "failed" and found[3]["built_at"] == ""


def releases(*specs, live=None):
    """specs newest first: 'id' or 'id!' for a release that failed its gate."""
    return [{"id": s.rstrip("!"), "gate": "failed" if s.endswith("!") else "passed", "live": s.rstrip("!") == live}
            for s in specs]


def test_previous_skips_failed_releases_and_newer_ones():
    assert releases_module.previous_of(releases("r5", "r4!", "r3", "r2", live="r5")) == "r3"
    # after a rollback to r3, the next rollback goes further back, never forward to r5
    assert releases_module.previous_of(releases("r5", "r4!", "r3", "r2", live="r3")) == "r2"
    assert releases_module.previous_of(releases("r1", live="r1")) == ""
    assert releases_module.previous_of(releases("r2!", "r1", live=None)) == "r1"


def test_keep_n_keeps_the_newest_good_ones():
    seven = releases("r7", "r6", "r5", "r4", "r3", "r2", "r1", live="r7")
    assert releases_module.to_remove(seven, 5, set()) == ["r2", "r1"]
    assert releases_module.to_remove(seven, 0, set()) == []


def test_keep_n_never_removes_the_live_or_a_protected_release():
    rolled_back = releases("r7", "r6", "r5", "r4", "r3", "r2", "r1", live="r1")
    assert releases_module.to_remove(rolled_back, 2, {"r6"}) == ["r5", "r4", "r3", "r2"]
    assert releases_module.to_remove(releases("r2", "r1", live="r1"), 1, set()) == []


def test_failed_releases_use_no_slot_and_go():
    mixed = releases("r6!", "r5", "r4!", "r3", "r2", "r1", live="r5")
    assert releases_module.to_remove(mixed, 3, set()) == ["r6", "r4", "r1"]
    assert releases_module.to_remove(releases("r2!", "r1", live="r2"), 5, set()) == [], "the live one stays"


def run_module(tmp_path, *extra, args="keep=5 protect=r1"):
    result = run(["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "pyops.webstack.webstack_releases",
                  "-a", f"root={tmp_path} {args}", "-e",
                  "ansible_python_interpreter={{ ansible_playbook_python }}", *extra],
                 env=ansible_env(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json"))
    return json.loads(result.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_the_module_prunes_on_disk_and_not_in_check_mode(tmp_path):
    make_tree(tmp_path, [(f"r{i}", f"2026-01-0{i}T00:00:00.000000Z", "passed") for i in range(1, 8)], live="r7")
    checked = run_module(tmp_path, "--check")
    assert checked["changed"] and checked["removed"] == ["r2"]
    assert len(list((tmp_path / "releases").iterdir())) == 7, "check mode removes nothing"
    pruned = run_module(tmp_path)
    assert pruned["removed"] == ["r2"] and pruned["current"] == "r7" and pruned["previous"] == "r6"
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["r1", "r3", "r4", "r5", "r6", "r7"]
    assert not run_module(tmp_path)["changed"]


def test_venvs_go_when_no_kept_release_links_to_them(tmp_path):
    make_tree(tmp_path, [(f"r{i}", f"2026-01-0{i}T00:00:00.000000Z", "passed") for i in range(1, 8)], live="r7")
    venvs = tmp_path / "venvs"
    for name in ("old", "shared", "newest", "stray"):
        (venvs / name / "bin").mkdir(parents=True)
    # r2 goes (r1 is protected): "old" is r2's alone; r1 and r6 share "shared"; r7 has "newest";
    # "stray" (an unfinished build) is no release's; r3 still has its venv inside (a release from
    # before venvs were shared), which is left to its release.
    links = {"r1": "shared", "r2": "old", "r6": "shared", "r7": "newest"}
    for release_id, venv in links.items():
        os.symlink(venvs / venv, tmp_path / "releases" / release_id / "venv")
    (tmp_path / "releases" / "r3" / "venv").mkdir()
    assert releases_module.unused_venvs(str(tmp_path), {"r2"}) == ["old", "stray"]
    assert releases_module.unused_venvs(str(tmp_path), set()) == ["stray"]
    checked = run_module(tmp_path, "--check")
    assert checked["removed_venvs"] == ["old", "stray"] and (venvs / "old").is_dir()
    pruned = run_module(tmp_path)
    assert pruned["removed"] == ["r2"] and pruned["removed_venvs"] == ["old", "stray"]
    assert sorted(p.name for p in venvs.iterdir()) == ["newest", "shared"]
    assert (tmp_path / "releases" / "r3" / "venv").is_dir()
    assert not run_module(tmp_path)["changed"]


def test_one_call_tells_what_is_live_and_where_a_release_stands(tmp_path):
    make_tree(tmp_path, [("r1", "2026-01-01T00:00:00.000000Z", "passed"), ("r2", "2026-01-02T00:00:00.000000Z", "failed"),
                         ("half", False, None)], live="r1")
    (tmp_path / "releases" / "half" / ".webstack-gate").write_text("passed\n")
    asked = run_module(tmp_path, args="release=r2")
    assert not asked["changed"] and asked["removed"] == []
    assert asked["live"]["path"] == str(tmp_path / "releases" / "r1")
    assert asked["live"]["record"] == {"id": "r1", "server": "gunicorn", "built_at": "2026-01-01T00:00:00.000000Z"}
    assert asked["release"] == {"complete": True, "gate": "failed"}
    assert run_module(tmp_path, args="release=half")["release"] == {"complete": False, "gate": "passed"}
    assert run_module(tmp_path, args="release=new")["release"] == {"complete": False, "gate": ""}
    assert run_module(tmp_path)["release"] == {}, "no release asked, none told"
    (tmp_path / "current").unlink()
    assert run_module(tmp_path, args="release=r1")["live"] == {"path": "", "record": {}}
