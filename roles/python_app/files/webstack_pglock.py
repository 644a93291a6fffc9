#!/usr/bin/python3
"""Run a command while holding a PostgreSQL advisory lock, so that two deploys started at once
never run an app's pre-activation commands (migrations) at the same time.

    webstack_pglock.py --key hello [--wait 600] -- /bin/sh -c 'python -m hello.migrate'

Connects to $DATABASE_URL (the app's own, from its env file), takes the session lock
pg_advisory_lock(hashtext('webstack:pre_activate:<key>')), waits for it up to --wait seconds, runs
the command, and exits with the command's status. The lock goes with the session: if this process
dies, PostgreSQL releases it. Uses Debian's python3-psycopg2, not the app's venv.
"""

import argparse
import os
import subprocess
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--key", required=True, help="what the lock is for (the app name)")
    parser.add_argument("--wait", type=int, default=600, help="seconds to wait for the lock")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is required after --")
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("webstack_pglock: DATABASE_URL is not set in the app's env file", file=sys.stderr)
        return 2
    import psycopg2  # noqa: PLC0415 (only needed past the checks above)

    connection = psycopg2.connect(url, application_name="webstack pre_activate lock")
    connection.autocommit = True
    key = f"webstack:pre_activate:{args.key}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
        if not cursor.fetchone()[0]:
            print(f"webstack_pglock: another deploy holds {key}; waiting up to {args.wait}s",
                  file=sys.stderr, flush=True)
            cursor.execute("SET lock_timeout = %s", (f"{args.wait}s",))
            started = time.monotonic()
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            print(f"webstack_pglock: got {key} after {time.monotonic() - started:.1f}s",
                  file=sys.stderr, flush=True)
        try:
            return subprocess.run(command, check=False).returncode
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            connection.close()


if __name__ == "__main__":
    sys.exit(main())
