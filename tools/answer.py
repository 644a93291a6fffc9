"""Print the sample app's answer fetched through nginx: the page title line and /api/info.

Usage: python tools/answer.py http://127.0.0.1:8080/ [--host localhost] [--tries N]
Exits non-zero when nginx or the app does not answer 200.
"""

import argparse
import json
import sys
import time
import urllib.request


def fetch(url, host):
    request = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, dict(response.headers), response.read().decode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    base = args.url.rstrip("/")
    for attempt in range(args.tries):
        try:
            status, headers, body = fetch(base + "/", args.host)
            _, _, info = fetch(base + "/api/info", args.host)
            break
        except OSError as error:
            if attempt == args.tries - 1:
                print(f"no answer from {base}: {error}", file=sys.stderr)
                return 1
            time.sleep(1)
    heading = next((line.strip() for line in body.splitlines() if "<h1>" in line), "")
    print(f"GET {base}/ (Host: {args.host}) -> {status}, Server: {headers.get('Server')}")
    print(f"  {heading}")
    print(f"GET {base}/api/info ->")
    print(json.dumps(json.loads(info), indent=2, sort_keys=True))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
