#!/usr/bin/env python3
"""Steady mixed load for bench/soak.sh (standard library only).

Each worker thread owns one keep-alive connection and sends, at a fixed rate, reads
(GET /api/lunch-week, GET /api/lunch-week/:id of a week it created) and writes
(POST /api/lunch-week) for schools picked round-robin. Every request is logged as one
line of JSON to --requests (time, school, kind, status; status 0 is a connection error
or timeout); every acknowledged write (a 2xx with the new id) to --writes with its school, id
and body, so the soak can check each one exists afterwards.

    soak_load.py --base http://127.0.0.1:PORT --tokens FILE --schools FILE \\
        --seconds 120 --rate 40 --workers 8 --requests R.jsonl --writes W.jsonl

Runs until --seconds have passed or a file named by --stop exists.
"""

import argparse
import http.client
import itertools
import json
import os
import random
import threading
import time
import urllib.parse


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--tokens", required=True, help="one token per line, in --schools order")
    p.add_argument("--schools", required=True, help="one database name per line")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--rate", type=float, default=40.0, help="requests per second, all workers")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--write-share", type=float, default=0.3)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--requests", required=True)
    p.add_argument("--writes", required=True)
    p.add_argument("--stop", default="")
    p.add_argument("--seed", type=int, default=16)
    return p.parse_args()


class Log:
    """Lines of JSON, written under one lock and flushed at once (the soak reads them
    while the load runs)."""

    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, record):
        line = json.dumps(record, separators=(",", ":"))
        with self.lock:
            self.file.write(line + "\n")


def worker(number, args, schools, tokens, requests_log, writes_log, deadline):
    url = urllib.parse.urlsplit(args.base)
    rng = random.Random(args.seed * 1000 + number)
    interval = args.workers / args.rate
    connection = None
    created = {school: [] for school in schools}
    # Offsets so each worker's weeks differ; weekOf is not unique, so this is only for
    # telling writes apart in the log.
    day_counter = itertools.count(number * 1_000_000)
    next_at = time.monotonic() + rng.random() * interval
    school_cycle = itertools.cycle(range(number, number + len(schools)))
    while time.monotonic() < deadline and not (args.stop and os.path.exists(args.stop)):
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        index = next(school_cycle) % len(schools)
        school, token = schools[index], tokens[index]
        headers = {"Authorization": "Bearer " + token}
        roll = rng.random()
        body = None
        if roll < args.write_share:
            kind, method, path = "write", "POST", "/api/lunch-week"
            days = next(day_counter) % 2_900_000
            week_of = time.strftime("%Y-%m-%d", time.gmtime(86400 * (days % 20000)))
            body = {"weekOf": week_of, "isPublished": bool(days % 2)}
            headers["Content-Type"] = "application/json"
        elif roll < args.write_share + 0.35 and created[school]:
            kind, method = "read_one", "GET"
            path = "/api/lunch-week/%d" % rng.choice(created[school])
        else:
            kind, method, path = "read_list", "GET", "/api/lunch-week"
        started = time.time()
        status, text = 0, ""
        try:
            if connection is None:
                connection = http.client.HTTPConnection(url.hostname, url.port, timeout=args.timeout)
            payload = json.dumps(body) if body is not None else None
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            status, text = response.status, response.read().decode("utf-8", "replace")
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            text = type(error).__name__
            if connection is not None:
                connection.close()
            connection = None
        requests_log.write({
            "t": started, "ms": round((time.time() - started) * 1000, 1), "school": school,
            "kind": kind, "status": status, "error": text[:120] if status >= 300 or status == 0 else "",
        })
        if kind == "write" and 200 <= status < 300:
            week_id = json.loads(text)["lunchWeekId"]
            created[school].append(week_id)
            writes_log.write({"t": started, "school": school, "id": week_id, "body": body})


def main():
    args = parse_args()
    with open(args.schools) as f:
        schools = [line.strip() for line in f if line.strip()]
    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    assert len(schools) == len(tokens), "one token per school"
    requests_log, writes_log = Log(args.requests), Log(args.writes)
    deadline = time.monotonic() + args.seconds
    threads = [
        threading.Thread(target=worker, args=(n, args, schools, tokens, requests_log, writes_log, deadline))
        for n in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
