#!/usr/bin/env python3
"""Staleness of the published-menu cache across replicas (bench/staleness.sh runs this).

Each of N writes changes one day's menu through replica A (PUT); right after A answers,
replica B's public week is polled (no pause between polls) until it shows the new menu. The
staleness of a write is the time from A's answer to B's first fresh answer. Before each
write, B is read once, so it holds the old menu in its cache.

usage: staleness.py A_BASE B_BASE TOKEN SLUG [WRITES]
"""

import http.client
import json
import sys
import time
from urllib.parse import urlparse


def connection(base):
    url = urlparse(base)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10)


def request(conn, method, path, headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def main():
    a_base, b_base, token, slug = sys.argv[1:5]
    writes = int(sys.argv[5]) if len(sys.argv) > 5 else 100
    a, b = connection(a_base), connection(b_base)
    public = f"/api/lunch-week-public/{slug}/2020-01-06"
    day = "/api/lunch-week/1/lunch-day/1"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    samples = []
    polls = 0
    for n in range(writes):
        request(b, "GET", public)  # B holds the current menu
        text = f"staleness probe {n} {time.time_ns()}"
        body = json.dumps({"lunchDayId": 1, "lunchWeekId": 1, "day": "2020-01-06", "menuDetails": text})
        status, _ = request(a, "PUT", day, headers, body)
        if status != 200:
            sys.exit(f"write {n}: PUT answered {status}")
        written = time.monotonic()
        needle = text.encode()
        while True:
            status, answer = request(b, "GET", public)
            polls += 1
            if status == 200 and needle in answer:
                break
            if time.monotonic() - written > 10:
                sys.exit(f"write {n}: B still stale after 10 s")
        samples.append((time.monotonic() - written) * 1000)
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]

    print(f"writes {len(samples)}, polls of B {polls}")
    print("| writes | min ms | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(samples)} | {samples[0]:.1f} | {pct(50):.1f} | {pct(90):.1f} | {pct(99):.1f} | {samples[-1]:.1f} |")


if __name__ == "__main__":
    main()
