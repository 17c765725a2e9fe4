#!/usr/bin/env python3
"""The table of bench/soak.sh, from its work directory (kept with SOAK_KEEP_WORK=1, so a
run can be reported again):

    soak_report.py WORK SECONDS SCHOOLS RATE

Reads windows ("name start end" per line), samples ("time pid rss_kib fds"),
requests.jsonl and writes.jsonl (bench/soak_load.py) and stored ("school id week_of
published" per row found in the schools' databases). Exits 1 when a request outside
every fault window was not a 2xx or an acknowledged write is missing.
"""

import collections
import json
import sys


def main():
    work, seconds, schools, rate = sys.argv[1:5]
    windows = []
    for line in open(f"{work}/windows"):
        name, start, end = line.split()
        windows.append((name, float(start), float(end)))
    samples = [line.split() for line in open(f"{work}/samples")]
    requests = [json.loads(line) for line in open(f"{work}/requests.jsonl")]
    writes = [json.loads(line) for line in open(f"{work}/writes.jsonl")]
    stored = set()
    for line in open(f"{work}/stored"):
        school, week_id, week_of, published = line.split()
        stored.add((school, int(week_id), week_of, published == "t"))
    missing = [
        w for w in writes
        if (w["school"], w["id"], w["body"]["weekOf"], w["body"]["isPublished"]) not in stored
    ]

    def window_of(request):
        start, end = request["t"], request["t"] + request["ms"] / 1000
        return next((w for w in windows if start <= w[2] and end >= w[1]), None)

    rows = collections.OrderedDict()
    outside = {"requests": 0, "bad": collections.Counter()}
    outside_failures = []
    for request in requests:
        hit = window_of(request)
        if hit is None:
            bucket = outside
        else:
            bucket = rows.setdefault(
                (hit[0], hit[1]),
                {"requests": 0, "bad": collections.Counter(), "seconds": hit[2] - hit[1]},
            )
        bucket["requests"] += 1
        if not 200 <= request["status"] < 300:
            bucket["bad"][request["status"] or request["error"] or "error"] += 1
            if hit is None:
                outside_failures.append(request)

    def counted(counter):
        detail = ", ".join(f"{k}: {v}" for k, v in counter.most_common()) or "-"
        return sum(counter.values()), detail

    # Start: the first sample under load (10 s in), so both ends have their connections
    # open; end: the last, after the load. A restart changes the process: both pids shown.
    t0 = float(samples[0][0])
    first = next((s for s in samples if float(s[0]) >= t0 + 9), samples[0])
    last = samples[-1]
    print(f"{seconds} s, {schools} schools, {rate} requests/s: {len(requests)} requests, "
          f"{len(writes)} acknowledged writes\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| RSS under load at start / at end (KiB) | {first[2]} / {last[2]} (pid {first[1]} / {last[1]}) |")
    print(f"| open fds under load at start / at end | {first[3]} / {last[3]} |")
    for pid in dict.fromkeys(s[1] for s in samples):
        mine = [s for s in samples if s[1] == pid]
        rss = [int(s[2]) for s in mine]
        fds = [int(s[3]) for s in mine]
        print(f"| pid {pid}: {len(mine)} samples, RSS min / max (KiB), fds min / max "
              f"| {min(rss)} / {max(rss)}, {min(fds)} / {max(fds)} |")
    for (name, start), row in rows.items():
        count, detail = counted(row["bad"])
        print(f"| window {name} at +{start - t0:.0f} s ({row['seconds']:.1f} s): non-2xx "
              f"| {count} of {row['requests']} ({detail}) |")
    count, detail = counted(outside["bad"])
    print(f"| outside the windows: non-2xx | {count} of {outside['requests']} ({detail}) |")
    print(f"| acknowledged writes missing at the end | {len(missing)} of {len(writes)} |")
    if count or missing:
        print("\nFAILED: non-2xx outside the fault windows or missing writes", file=sys.stderr)
        for request in outside_failures[:10]:
            print("  outside:", request, file=sys.stderr)
        for write in missing[:10]:
            print("  missing:", write, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
