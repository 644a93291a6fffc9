"""After the side effect: five releases deployed, rollbacks, keep-N, a failed migration (see side_effect.yml)."""

import json
import pathlib

from webstack_verify import http
from webstack_verify import release_dir as shared_release_dir

BENCH = pathlib.Path(__file__).resolve().parents[3] / ".cache" / "bench"


def release_dir(host):
    return shared_release_dir(host, "hello")


def releases(host):
    out = host.run("ls -1 /srv/hello/releases").stdout.split()
    return {name: json.loads(host.file(f"/srv/hello/releases/{name}/.webstack-release").content_string)
            for name in out}


def test_keep_n_left_three_with_the_live_one(host):
    found = releases(host)
    live = release_dir(host).rsplit("/", 1)[1]
    assert len(found) == 3 and live in found
    # the live release is the newest by its recorded build time
    assert max(found, key=lambda name: found[name]["built_at"]) == live


def test_the_live_release_passed_its_gate_and_answers(host):
    assert host.file(release_dir(host) + "/.webstack-gate").content_string.strip() == "passed"
    info = json.loads(http(host, "/api/info")["body"])
    assert info["release"] == release_dir(host).rsplit("/", 1)[1]
    assert "Hello again from releases" in http(host, "/")["body"], "the config change is live"


def test_pre_activation_ran_in_the_new_release_as_the_app_user(host):
    release = release_dir(host)
    marker = host.file("/tmp/pre-activate-" + release.rsplit("/", 1)[1])
    assert marker.exists
    user, cwd, python, greeting = marker.content_string.strip().split(" ", 3)
    assert (user, cwd, python) == ("hello", release + "/src", release + "/venv/bin/python")
    assert greeting == "Hello again from releases", "the command read the app's env file"


def test_the_deploy_figures_were_written(host):
    figures = json.loads((BENCH / f"deploy-{host.backend.get_hostname()}.json").read_text())
    for case in ("deploy", "rollback", "config_change", "config_change_without_handover",
                 "failed_health_check"):
        assert figures[case]["failed"] == 0 and figures[case]["ok"] > 20, (case, figures[case])
    assert figures["control_hard_stop"]["failed"] > 0
    assert figures["steady"]["p99_ms"] is not None


def release_with(host, text):
    out = host.run("grep -l %s /srv/hello/releases/*/src/hello/__init__.py", text).stdout.split()
    assert len(out) == 1, out
    return out[0].split("/src/")[0]


def test_a_git_release_is_the_exported_commit(host):
    release = release_with(host, "variant 4")
    assert not host.file(release + "/src/.git").exists, "exported, not cloned"
    assert host.file(release + "/src/requirements.txt").exists


def test_an_archive_release_is_built_from_its_top_directory(host):
    release = release_with(host, "variant 5")
    assert host.file(release + "/src/hello/__init__.py").exists
    assert not host.file(release + "/src/v5").exists


def test_a_wheel_at_a_url_is_installed_into_the_release_venv(host):
    out = host.run("grep -l 'variant 6' /srv/hello/releases/*/venv/lib/python3*/site-packages/hello/__init__.py")
    found = out.stdout.split()
    assert len(found) == 1, out.stdout + out.stderr
    release = found[0].split("/venv/")[0]
    assert host.run("ls -1 %s/src", release).stdout.split() == ["hello-6-py3-none-any.whl"]
    assert host.file(release + "/.webstack-gate").content_string.strip() == "passed"


def test_no_hand_over_instance_is_left_running(host):
    units = host.run("systemctl list-units --all --plain --no-legend 'hello-handover@*'").stdout
    assert "running" not in units and "failed" not in units, units
    assert host.file("/etc/systemd/system/hello-handover@.service").contains("^Sockets=hello.socket$")


def test_releases_of_the_same_requirements_share_a_venv_and_unused_ones_go(host):
    """The git and tar.gz releases (the sample app's requirements) link one venv; the wheel's is its
    own (the wheel is installed into it). Keep-N removed every venv no kept release links to: the
    converge's was the git one's, so no other is left."""
    links = {name: host.file(f"/srv/hello/releases/{name}/venv").linked_to for name in releases(host)}
    git, archive = release_with(host, "variant 4"), release_with(host, "variant 5")
    wheel = [name for name in links if name not in (git.rsplit("/", 1)[1], archive.rsplit("/", 1)[1])]
    assert links[git.rsplit("/", 1)[1]] == links[archive.rsplit("/", 1)[1]]
    assert len(wheel) == 1 and links[wheel[0]] != links[git.rsplit("/", 1)[1]]
    venvs = host.run("ls -1 /srv/hello/venvs").stdout.split()
    assert sorted(venvs) == sorted({link.rsplit("/", 1)[1] for link in links.values()})
    for venv in venvs:
        marker = host.file(f"/srv/hello/venvs/{venv}/.webstack-venv")
        assert marker.exists and marker.user == "root"
        assert host.file(f"/srv/hello/venvs/{venv}").mode == 0o750
        assert host.file(f"/srv/hello/venvs/{venv}/pyvenv.cfg").group == "hello"
    # Root took each venv over without following its links (bin/python3 -> /usr/bin/python3, itself
    # a link, which the file module's recurse gave to the app's group); testinfra's group follows
    # links, so stat each itself.
    for path in ("/usr/bin/python3", host.check_output("realpath -e /usr/bin/python3")):
        assert host.check_output("stat -c %%U:%%G %s", path) == "root:root", path
