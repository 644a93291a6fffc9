"""Apps a newcomer brings, and secrets of every kind in verbose output. Its own file, so that it
runs after test_default.py has checked both hosts: it changes the sample app (HTTPS, an access
check, a secret)."""

import os

import pytest
from webstack_verify import http, process_env, run_playbook, scenario_host

APP = "hello"
HOSTS = ["webstack-default-debian12", "webstack-default-debian13"]


def _self_signed(name):
    """A key and a self-signed certificate for name, as PEM text (given as tls content)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem_key, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_own_apps_without_a_health_route_deploy_and_no_secret_reaches_verbose_output(host):
    """An ordinary Flask app (with a local package, built in place) and a Django project, neither
    with a health route, pass their first deploy (the default gate takes any answer below 500)
    and answer through nginx; beside them the sample app gets a secret of every kind (a
    secret_env value, a Lua access token, its TLS key as text), and site.yml and deploy.yml at
    -vvv print none of them."""
    if host.backend.get_hostname() != HOSTS[0]:
        pytest.skip("runs once, against every host")
    import secrets

    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    key, cert = _self_signed("localhost")
    secret, token = secrets.token_hex(16), secrets.token_hex(16)
    apps = [
        {"name": APP, "source": f"{project}/apps/hello", "wsgi_app": "hello:create_app()", "domains": ["localhost"],
         "static": [{"url": "/static/", "dir": "hello/static"}], "env": {"HELLO_GREETING": "Hello from webstack"},
         "gunicorn": {"worker_class": "sync"}, "secret_env": {"HELLO_API_SECRET": secret},
         "access": [{"location": "/private/", "lua": {"tokens": [token]}}],
         "tls": {"certificate_content": cert, "key_content": key}},
        {"name": "plain-flask", "source": f"{project}/molecule/shared/apps/plain-flask", "wsgi_app": "app:app",
         "domains": ["flask.test"]},
        {"name": "plain-django", "source": f"{project}/molecule/shared/apps/plain-django",
         "wsgi_app": "mysite.wsgi:application", "domains": ["django.test"]},
    ]
    key_body = [line for line in key.splitlines() if not line.startswith("-----")]
    # A root-only file the local package's setup.py links to from the code (see its docstring).
    target = scenario_host(HOSTS[1])
    target.run("install -m 0600 -o root -g root /dev/null /etc/webstack-link-target")
    # On the Debian 13 host only: nothing here differs between the two, and it builds two venvs.
    for playbook in ("site.yml", "playbooks/deploy.yml"):
        result = run_playbook(playbook, {"webstack_apps": apps}, limit=HOSTS[1], options=["-vvv"])
        assert result.returncode == 0, result.stdout[-5000:]
        output = result.stdout + result.stderr
        for shown in [secret, token, *key_body]:
            assert shown not in output, f"{playbook} -vvv printed a secret"
    for name in HOSTS[1:]:
        each = scenario_host(name)
        # Its local package built in place, as the app's user, in a sandbox that kept it out of
        # /etc, /srv and /root.
        release = each.file("/srv/plain-flask/current").linked_to
        built_by = each.check_output("%s/venv/bin/python -c 'from localdep.built_by import UID; print(UID)'", release)
        assert built_by == str(each.user("plain-flask").uid)
        for probe in ("/etc", "/srv", "/root"):
            assert not each.file(f"{probe}/webstack-build-probe").exists
        # Root took the code over without following the link the build left: the link is root's,
        # the file it points at is as it was (not the app's group, not readable by it).
        link = f"{release}/src/localdep/webstack-leak"
        assert each.file(link).is_symlink
        # (testinfra's user and group follow a link: stat the link itself)
        assert each.check_output("stat -c %%U:%%G %s", link) == "root:plain-flask"
        linked = each.file("/etc/webstack-link-target")
        assert (linked.user, linked.group, linked.mode) == ("root", "root", 0o600)
        assert http(each, "/", host_header="flask.test")["body"] == "plain flask\n"
        assert http(each, "/", host_header="django.test")["body"] == "plain django\n"
        assert process_env(each, APP)["HELLO_API_SECRET"] == secret, "the secret reached the app"
