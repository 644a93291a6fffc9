"""Bad input to a role fails in its validate step, naming the variable, before anything is written.

One ansible-playbook run on localhost tries every case: each includes the role's validate tasks
with the case's variables inside a block, and the rescue records the message it failed with.
"""

import json

import pytest
import yaml

from webstack_testlib import run_local_playbook

SITE = {"name": "hello", "server_names": ["localhost"], "upstream": {"servers": ["unix:/run/hello.sock"]}}


def site(**overrides):
    return {**SITE, **overrides}


APP = {"python_app_name": "hello", "python_app_source": "/", "python_app_wsgi_app": "a:b"}

# case -> (role, variables, the message it must fail with, or None where it must pass)
CASES = {
    "nginx_good": ("nginx", {"nginx_sites": [site(server_names=["localhost", "*.example.com", ".example.org", "_"])]}, None),
    "nginx_injected_server_name": (
        "nginx", {"nginx_sites": [site(server_names=["localhost; return 200 injected"])]},
        'nginx_sites[hello].server_names: "localhost; return 200 injected" is not a host name'),
    "nginx_space_in_server_name": (
        "nginx", {"nginx_sites": [site(server_names=["a.test b.test"])]}, "nginx_sites[hello].server_names"),
    "nginx_brace_in_server_name": (
        "nginx", {"nginx_sites": [site(server_names=["a.test{"])]}, "nginx_sites[hello].server_names"),
    "nginx_regex_not_asked_for": (
        "nginx", {"nginx_sites": [site(server_names=["~^www\\d+\\.example\\.com$"])]},
        "an nginx ~regex needs server_names_regex: true"),
    "nginx_regex_asked_for": (
        "nginx", {"nginx_sites": [site(server_names=["~^www\\d+\\.example\\.com$"], server_names_regex=True)]}, None),
    "nginx_regex_with_semicolon": (
        "nginx", {"nginx_sites": [site(server_names=["~^a;return 200 x"], server_names_regex=True)]},
        "nginx_sites[hello].server_names"),
    "nginx_mount_is_checked_too": (
        "nginx", {"nginx_sites": [site(server_names=["ok.test", "x.test;"])]}, "nginx_sites[hello].server_names"),
    "nginx_upstream_with_semicolon": (
        "nginx", {"nginx_sites": [site(upstream={"servers": ["unix:/run/x.sock;return"]})]},
        "nginx_sites[].upstream.servers entries must be unix:/path or host:port"),
    "nginx_static_path_with_semicolon": (
        "nginx", {"nginx_sites": [site(static=[{"location": "/static/", "path": "/srv/x;/"}])]},
        "nginx_sites[].static[].path must be an absolute directory"),
    "nginx_static_location_with_space": (
        "nginx", {"nginx_sites": [site(static=[{"location": "/a b/", "path": "/srv/x/"}])]},
        "nginx_sites[].static[].location must be a URL path"),
    "nginx_bad_expires": (
        "nginx", {"nginx_sites": [site(static=[{"location": "/s/", "path": "/srv/x/", "expires": "7d; return 200"}])]},
        "nginx_sites[].static[].expires"),
    "nginx_good_expires": (
        "nginx", {"nginx_sites": [site(static=[{"location": "/s/", "path": "/srv/x/", "expires": "modified +24h"}])]},
        None),
    "nginx_tls_self_signed": ("nginx", {"nginx_sites": [site(tls={})]}, None),
    "nginx_tls_files": ("nginx", {"nginx_sites": [site(tls={"certificate": "/etc/ssl/a.pem", "key": "/etc/ssl/a.key"})]},
                        None),
    "nginx_tls_content": ("nginx", {"nginx_sites": [site(tls={"certificate_content": "-----BEGIN CERTIFICATE-----\nx",
                                                              "key_content": "\n-----BEGIN PRIVATE KEY-----\nx"})]},
                          None),
    "nginx_acme": ("nginx", {"nginx_acme_terms_agreed": True,
                             "nginx_sites": [site(server_names=["shop.example.org", "www.shop.example.org"],
                                                  tls={"acme": True})]}, None),
    "nginx_acme_terms_not_agreed": (
        "nginx", {"nginx_sites": [site(server_names=["shop.example.org"], tls={"acme": True})]},
        "need nginx_acme_terms_agreed: true"),
    "nginx_acme_wildcard": (
        "nginx", {"nginx_acme_terms_agreed": True,
                  "nginx_sites": [site(server_names=["shop.example.org", "*.example.org"], tls={"acme": True})]},
        "plain DNS names in server_names (HTTP-01 cannot prove wildcards or regexes): not *.example.org"),
    "nginx_acme_plain_http_directory": (
        "nginx", {"nginx_acme_terms_agreed": True, "nginx_acme_directory": "http://ca.test/dir",
                  "nginx_sites": [site(server_names=["shop.example.org"], tls={"acme": True})]},
        "an https:// nginx_acme_directory"),
    "nginx_acme_with_own_certificate": (
        "nginx", {"nginx_acme_terms_agreed": True,
                  "nginx_sites": [site(tls={"acme": True, "certificate": "/a", "key": "/b"})]},
        "nginx_sites[hello].tls"),
    "nginx_acme_not_boolean": (
        "nginx", {"nginx_sites": [site(tls={"acme": "yes"})]}, "nginx_sites[hello].tls"),
    "nginx_tls_certificate_without_key": (
        "nginx", {"nginx_sites": [site(tls={"certificate": "/etc/ssl/a.pem"})]}, "nginx_sites[hello].tls"),
    "nginx_tls_path_and_content": (
        "nginx", {"nginx_sites": [site(tls={"certificate": "/a", "key": "/b", "certificate_content": "-----BEGIN x",
                                            "key_content": "-----BEGIN y"})]}, "nginx_sites[hello].tls"),
    "nginx_tls_content_not_pem": (
        "nginx", {"nginx_sites": [site(tls={"certificate_content": "/etc/ssl/a.pem", "key_content": "-----BEGIN y"})]},
        "nginx_sites[hello].tls"),
    "nginx_tls_unknown_key": ("nginx", {"nginx_sites": [site(tls={"letsencrypt": True})]}, "nginx_sites[hello].tls"),
    "nginx_tls_port_of_plain_http": ("nginx", {"nginx_sites": [site(tls={"port": 80})]}, "nginx_sites[hello].tls"),
    "nginx_negative_limit": ("nginx", {"nginx_sites": [site(limit_conn=-1)]}, "nginx_sites[].limit_req_rate"),
    "nginx_limit_not_a_number": ("nginx", {"nginx_limit_req_rate": "50r/s", "nginx_sites": [SITE]},
                                 "nginx_sites[].limit_req_rate"),
    "nginx_timeout_not_a_number": ("nginx", {"nginx_sites": [site(send_timeout="10s")]},
                                   "nginx_sites[].client_header_timeout"),
    "nginx_bad_exempt": ("nginx", {"nginx_limit_exempt": ["127.0.0.1; allow all"], "nginx_sites": [SITE]},
                         "nginx_limit_exempt"),
    "nginx_bad_body_size": (
        "nginx", {"nginx_sites": [site(client_max_body_size="1m; return 200")]}, "nginx_sites[].client_max_body_size"),
    "nginx_header_value_with_quote": (
        "nginx", {"nginx_sites": [SITE], "nginx_security_headers": {"X-Test": 'a" always; return 200 "b'}},
        "nginx_security_headers: names are letters"),
    "nginx_header_value_with_backslash": (
        "nginx", {"nginx_sites": [SITE], "nginx_security_headers": {"X-Test": "a\\"}}, "nginx_security_headers"),
    "nginx_header_value_with_newline": (
        "nginx", {"nginx_sites": [SITE], "nginx_security_headers": {"X-Test": "a\nb"}}, "nginx_security_headers"),
    "nginx_header_value_csp": (
        "nginx", {"nginx_sites": [SITE], "nginx_security_headers": {"Content-Security-Policy": "default-src 'self'"}},
        None),
    "nginx_drained_server_not_a_server": (
        "nginx", {"nginx_sites": [site(upstream={"servers": ["10.0.0.5:8000", "10.0.0.6:8000"], "down": ["10.0.0.7:8000"]})]},
        "the upstream of hello marks 10.0.0.7:8000 down, which is not among its servers"),
    "nginx_drained_server": (
        "nginx", {"nginx_sites": [site(upstream={"servers": ["10.0.0.5:8000", "10.0.0.6:8000"], "down": ["10.0.0.6:8000"],
                                                 "max_fails": 3, "fail_timeout": "500ms", "next_upstream_tries": 3})]},
        None),
    "nginx_bad_fail_timeout": (
        "nginx", {"nginx_sites": [site(upstream={"servers": ["10.0.0.5:8000"], "fail_timeout": "10s; return 200"})]},
        "nginx_sites[].upstream: fail_timeout is an nginx time"),
    "nginx_negative_tries": (
        "nginx", {"nginx_sites": [site(upstream={"servers": ["10.0.0.5:8000"], "next_upstream_tries": -1})]},
        "nginx_sites[].upstream: fail_timeout is an nginx time"),
    "nginx_access_good": (
        "nginx", {"nginx_sites": [site(access=[{"location": "/admin/", "lua": {"tokens": ["tok"]}},
                                               {"location": "/r/", "auth_request": {"path": "/auth"}}])]}, None),
    "nginx_access_bad_location": (
        "nginx", {"nginx_sites": [site(access=[{"location": "/a/ { return 200; }", "lua": {"tokens": ["tok"]}}])]},
        "nginx_sites: hello.access[0].location: must be a URL path below /"),
    "nginx_access_no_tokens": (
        "nginx", {"nginx_sites": [site(access=[{"location": "/a/", "lua": {"header": "X-Key"}}])]},
        "hello.access[0].lua.tokens: must be a non-empty list of non-empty strings"),
    "nginx_hardening_dict_value": (
        "nginx", {"nginx_sites": [site()], "nginx_hardening_overrides": {"ProtectSystem": {"a": 1}}},
        "nginx_hardening, nginx_hardening_overrides: [Service] keys"),
    "nginx_hardening_line_break": (
        "nginx", {"nginx_sites": [site()], "nginx_hardening_overrides": {"ReadWritePaths": "/x\nExecStartPre=/bin/sh"}},
        "a key or value on more than one line"),
    "nginx_hardening_list_and_null": (
        "nginx", {"nginx_sites": [site()], "nginx_hardening_overrides": {"SystemCallFilter": ["@system-service", "~@mount"],
                                                                        "UMask": None}}, None),
    "python_app_generated_secret_name": (
        "python_app", {"python_app_name": "hello", "python_app_source": "/", "python_app_wsgi_app": "a:b",
                       "python_app_generated_secrets": ["SECRET_KEY", "BAD NAME"]},
        "python_app_generated_secrets: must be a list of environment variable names"),
    "python_app_env_value_dict": (
        "python_app", {"python_app_name": "hello", "python_app_source": "/", "python_app_wsgi_app": "a:b",
                       "python_app_env": {"A": {"nested": 1}}},
        "python_app_env.A: must be a string, a number or a boolean"),
    "python_app_env_value_none": (
        "python_app", {"python_app_name": "hello", "python_app_source": "/", "python_app_wsgi_app": "a:b",
                       "python_app_secret_env": {"A": None}},
        "python_app_secret_env.A: must be a string, a number or a boolean"),
    "python_app_env_value_awkward": (
        "python_app", {"python_app_name": "hello", "python_app_source": "/", "python_app_wsgi_app": "a:b",
                       "python_app_env": {"A": "line one\nB=two \"quoted\" $HOME `x` \\", "N": 3, "T": True}},
        None),
    # The role checks by the filter's rules (webstack_python_app_problems): what the filter hands
    # it on split tiers passes, what it refuses the role refuses too.
    "python_app_ipv6_split_listen": (
        "python_app", {**APP, "python_app_listen": "[fd00::6]:9000", "python_app_listen_exposed": True}, None),
    "python_app_public_listen": (
        "python_app", {**APP, "python_app_listen": "0.0.0.0:9000"},
        "python_app_listen: 0.0.0.0:9000 is not a loopback address"),
    "python_app_listen_newline": (
        "python_app", {**APP, "python_app_listen": "/run/hello.sock\nExecStartPre=/bin/touch /tmp/pwn"},
        "python_app_listen: must be host:port"),
    "python_app_cgi_tcp": (
        "python_app", {**APP, "python_app_server": "cgi", "python_app_listen": "127.0.0.1:9000"},
        "python_app_listen: cgi runs any program a client names"),
    "python_app_reserved_name": ("python_app", {**APP, "python_app_name": "nginx"}, "python_app_name: 'nginx' is reserved"),
    "python_app_root_user": ("python_app", {**APP, "python_app_user": "root"}, "python_app_user: must be an account"),
    "python_app_root_outside_base": ("python_app", {**APP, "python_app_root": "/etc"}, "python_app_root: must be a directory below /srv/"),
    "python_app_pip_option": (
        "python_app", {**APP, "python_app_pip_packages": ["--index-url=http://evil.test/simple"]},
        "python_app_pip_packages: '--index-url=http://evil.test/simple' is not a requirement specifier"),
    "python_app_requirements_outside": (
        "python_app", {**APP, "python_app_requirements_file": "../../../../etc/shadow"},
        "python_app_requirements_file: must be a file inside the app source"),
    "python_app_zero_workers": (
        "python_app", {**APP, "gunicorn_overrides": {"workers": 0}},
        "gunicorn_overrides: workers must be a whole number from 1 to 1024 (got 0)"),
    "python_app_unused_server_dict": (
        "python_app", {**APP, "uwsgi_overrides": {"processes": -3}},
        "uwsgi_overrides: processes must be a whole number from 1 to 1024 (got -3)"),
    "python_app_git_option": (
        "python_app", {**APP, "python_app_source": {"git": "--upload-pack=touch /tmp/pwn", "version": "main"}},
        "python_app_source: git must not start with -"),
}


# A looped assert fails with "One or more items failed": its items carry the messages.
MESSAGES = (
    "{{ ((ansible_failed_result.results | default([]) | selectattr('failed', 'defined') | selectattr('failed')"
    " | map(attribute='msg') | list) or [ansible_failed_result.msg | default('failed')]) | join(' | ') }}"
)


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory):
    out = tmp_path_factory.mktemp("validation")
    base = {"hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}
    # One play per case: vars_files are the play's own, so no case sees another's variables.
    plays = []
    for case, (role, variables, _) in CASES.items():
        (out / f"{case}.json").write_text(json.dumps(variables))
        plays.append({**base, "name": case, "vars_files": [str(out / f"{case}.json")], "tasks": [{
            "name": case,
            "block": [
                {"name": f"validate {case}", "ansible.builtin.include_role": {
                    "name": f"pyops.webstack.{role}", "tasks_from": "validate"}},
                {"name": f"record {case}", "ansible.builtin.set_fact": {
                    "outcomes": "{{ outcomes | default({}) | combine({'%s': None}) }}" % case}},
            ],
            "rescue": [{"name": f"record {case} failure", "ansible.builtin.set_fact": {
                "outcomes": "{{ outcomes | default({}) | combine({'%s': _messages}) }}" % case},
                "vars": {"_messages": MESSAGES}}],
        }]})
    plays.append({**base, "name": "write", "tasks": [{"name": "write", "ansible.builtin.copy": {
        "content": "{{ outcomes | to_json }}", "dest": str(out / "outcomes.json"), "mode": "0644"}}]})
    playbook = out / "validate.yml"
    playbook.write_text(yaml.safe_dump(plays, sort_keys=False))
    run_local_playbook(playbook)
    return json.loads((out / "outcomes.json").read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_validation(outcomes, case):
    expected = CASES[case][2]
    if expected is None:
        assert outcomes[case] is None, outcomes[case]
    else:
        assert outcomes[case] is not None, f"{case} passed validation"
        assert expected in outcomes[case]
