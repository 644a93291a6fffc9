"""The database side: a visit counter in PostgreSQL, reached through DATABASE_URL.

psycopg (3) is imported only when a database is configured, so the app runs without it.
`python -m hello.migrate` creates the table; deploys run it as a pre-activation command.
"""

import os

SCHEMA = """
CREATE TABLE IF NOT EXISTS hello_visits (
    id integer PRIMARY KEY,
    count bigint NOT NULL DEFAULT 0
);
INSERT INTO hello_visits (id, count) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""


class NoDatabase(RuntimeError):
    """DATABASE_URL is not set: the app has no database."""


def connect():
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise NoDatabase("DATABASE_URL is not set")
    import psycopg  # noqa: PLC0415

    return psycopg.connect(url, connect_timeout=5, application_name="hello")


def migrate():
    with connect() as connection:
        connection.execute(SCHEMA)


def visits(increment=False):
    """The visit count, one higher first when ``increment``."""
    with connect() as connection:
        if increment:
            row = connection.execute("UPDATE hello_visits SET count = count + 1 WHERE id = 1 RETURNING count").fetchone()
        else:
            row = connection.execute("SELECT count FROM hello_visits WHERE id = 1").fetchone()
    return row[0]
