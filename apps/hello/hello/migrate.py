"""`python -m hello.migrate`: create or update the schema (run before a release goes live)."""

import sys

from hello.db import NoDatabase, migrate


def main():
    try:
        migrate()
    except NoDatabase as error:
        print(f"hello.migrate: {error}", file=sys.stderr)
        return 2
    print("hello.migrate: schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
