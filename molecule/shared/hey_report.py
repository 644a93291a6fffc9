"""hey's text report (stdin) as JSON: requests, ok (200), failed (other statuses and errors),
requests per second, p50/p99 and the slowest latency in milliseconds."""

import json
import re
import sys


def report(text):
    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
    errors_part = text.split("Error distribution:", 1)[1] if "Error distribution:" in text else ""
    errors = sum(int(count) for count in re.findall(r"^\s*\[(\d+)\]\s", errors_part, re.M))

    def seconds(pattern):
        match = re.search(pattern, text)
        return round(float(match.group(1)) * 1000, 1) if match else None

    rate = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    ok = statuses.get(200, 0)
    return {
        "requests": sum(statuses.values()) + errors,
        "ok": ok,
        "failed": sum(statuses.values()) - ok + errors,
        "statuses": statuses,
        "errors": errors,
        "rps": float(rate.group(1)) if rate else None,
        "p50_ms": seconds(r"50%+ in ([0-9.]+) secs"),
        "p99_ms": seconds(r"99%+ in ([0-9.]+) secs"),
        "worst_ms": seconds(r"Slowest:\s+([0-9.]+) secs"),
    }


if __name__ == "__main__":
    print(json.dumps(report(sys.stdin.read())))
