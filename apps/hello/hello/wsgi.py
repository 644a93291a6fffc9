"""WSGI entry point for servers that want a module-level callable: hello.wsgi:app."""

from hello import create_app

app = create_app()
