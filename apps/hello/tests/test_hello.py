"""The sample app's own tests: run with the Flask test client, no server."""

import socket
import sys

import pytest

from hello import create_app


@pytest.fixture()
def client(monkeypatch):
    monkeypatch.setenv("WEBSTACK_RELEASE_ID", "r-test")
    monkeypatch.setenv("WEBSTACK_SERVER", "test-server")
    app = create_app({"TESTING": True})
    return app.test_client()


def test_index_renders_greeting_release_and_static_links(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<h1>Hello from webstack</h1>" in body
    assert "r-test" in body
    assert 'href="/static/style.css"' in body
    assert 'src="/static/logo.svg"' in body


def test_greeting_comes_from_environment(monkeypatch):
    monkeypatch.setenv("HELLO_GREETING", "Bonjour")
    body = create_app({"TESTING": True}).test_client().get("/").get_data(as_text=True)
    assert "<h1>Bonjour</h1>" in body


def test_path_parameter_route(client):
    response = client.get("/hello/ada")
    assert response.status_code == 200
    assert "Hello, ada!" in response.get_data(as_text=True)


def test_post_form_body_is_echoed(client):
    response = client.post("/echo", data={"a": "1", "b": "two"})
    assert response.status_code == 200
    assert response.get_json() == {"form": {"a": "1", "b": "two"}}


def test_redirect_uses_url_for(client):
    response = client.get("/go-home")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_healthz(client):
    response = client.get("/healthz")
    assert response.get_json() == {"status": "ok", "release": "r-test"}


def test_api_info_reports_release_server_and_interpreter(client):
    info = client.get("/api/info").get_json()
    assert info["release"] == "r-test"
    assert info["server"] == "test-server"
    assert info["executable"] == sys.executable
    assert info["prefix"] == sys.prefix
    assert info["hostname"] == socket.gethostname()  # which app host answered, behind nginx


def test_proxy_fix_trusts_one_hop_of_forwarded_headers(client):
    info = client.get(
        "/api/info",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "example.test",
        },
    ).get_json()
    assert info["client"] == "203.0.113.9"
    assert info["scheme"] == "https"
    assert info["host"] == "example.test"


def test_proxy_fix_can_be_disabled(monkeypatch):
    monkeypatch.setenv("HELLO_PROXY_HOPS", "0")
    app = create_app({"TESTING": True})
    info = app.test_client().get("/api/info", headers={"X-Forwarded-For": "203.0.113.9"}).get_json()
    assert info["client"] != "203.0.113.9"


def test_prefix_from_proxy_keeps_links_under_it(client):
    response = client.get("/go-home", headers={"X-Forwarded-Prefix": "/hello-app"})
    assert response.headers["Location"] == "/hello-app/"


def test_timing_header_set(client):
    assert float(client.get("/healthz").headers["X-App-Time-Ms"]) >= 0


def test_static_files_exist_in_package(client):
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/logo.svg").status_code == 200


def test_server_detected_from_loaded_modules(monkeypatch):
    monkeypatch.delenv("WEBSTACK_SERVER", raising=False)
    monkeypatch.setitem(sys.modules, "gunicorn", object())
    assert create_app().config["SERVER"] == "gunicorn"


def test_visits_without_a_database_is_503(client, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    response = client.post("/api/visits")
    assert response.status_code == 503
    assert response.get_json() == {"error": "DATABASE_URL is not set"}


def test_migrate_without_a_database_exits_2(monkeypatch, capsys):
    from hello import migrate

    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert migrate.main() == 2
    assert "DATABASE_URL is not set" in capsys.readouterr().err


def test_private_answers_whoever_reaches_it(client):
    # nginx guards it; the app itself admits anyone who gets this far.
    assert client.get("/api/private/a/b").get_json()["private"] == "a/b"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Basic abc"}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
    ({"Authorization": "Bearer s3cret"}, 204),
])
def test_auth_check_admits_only_the_token(monkeypatch, headers, status):
    monkeypatch.setenv("HELLO_AUTH_TOKEN", "s3cret")
    client = create_app({"TESTING": True}).test_client()
    assert client.get("/api/auth", headers=headers).status_code == status


def test_auth_check_admits_nothing_without_a_token(monkeypatch):
    monkeypatch.delenv("HELLO_AUTH_TOKEN", raising=False)
    client = create_app({"TESTING": True}).test_client()
    assert client.get("/api/auth", headers={"Authorization": "Bearer "}).status_code == 403


def test_secret_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "k" * 64)
    assert create_app({"TESTING": True}).secret_key == "k" * 64
