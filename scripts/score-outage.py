#!/usr/bin/env python3
"""Scores a replay of a `scripts/counts-csv.py` file with an OUTAGE: for every tenant's `email`
channel, whether `inbound_stopped` paged between the outage's start and two hours after its
end, and after how many minutes, by the channel's rate in the week before (its events per hour
over weekdays 09:00–17:00 UTC). A flow paged again in that window (its alert resolved and
fired again) is counted apart; every other `inbound_stopped` page is counted as false.

    scripts/score-outage.py counts.csv alerts.jsonl DAY HH:MM MINUTES
"""

import collections
import csv
import datetime
import json
import math
import sys

BUCKETS = [(0, 10), (10, 30), (30, 90), (90, 300), (300, 10_000)]


def minute_of(text):
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) // 60


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__.split("\n\n")[1])
    counts, alerts, day, hhmm, length = sys.argv[1:]
    start0 = None
    events = collections.Counter()
    with open(counts, newline="") as f:
        for row in csv.DictReader(f):
            m = minute_of(row["minute"])
            if start0 is None:
                start0 = m - m % 1440
            events[(row["tenant"], row["channel"], m)] += int(row["count"])
    first = start0 + int(day) * 1440 + int(hhmm[:2]) * 60 + int(hhmm[3:])
    last = first + int(length) + 120
    week = range(first - first % 1440 - 7 * 1440, first - first % 1440)
    rate = collections.Counter()
    for (tenant, channel, m), n in events.items():
        if channel == "email" and m in week and (m - start0) // 1440 % 7 < 5 \
                and 540 <= m % 1440 < 1020:
            rate[tenant] += n
    rate = {t: n / (5 * 8) for t, n in rate.items()}
    paged, again, false = {}, 0, 0
    with open(alerts) as f:
        for line in f:
            a = json.loads(line)
            if a["rule"] != "inbound_stopped" or a["state"] != "firing":
                continue
            at = minute_of(a["at"])
            if a["channel"] == "email" and first <= at <= last:
                if a["tenant"] in paged:
                    again += 1
                else:
                    paged[a["tenant"]] = at - first
            else:
                false += 1
    print(f"inbound_stopped pages outside the outage: {false}; flows paged again in it: {again}")
    for lo, hi in BUCKETS:
        tenants = [t for t, r in rate.items() if lo <= r < hi]
        delays = sorted(paged[t] for t in tenants if t in paged)
        q = lambda p: delays[max(0, math.ceil(p * len(delays)) - 1)] if delays else "-"
        print(f"email at {lo}-{hi}/h: {len(delays)}/{len(tenants)} paged; delay median {q(0.5)}, "
              f"p90 {q(0.9)}, max {delays[-1] if delays else '-'} min: {delays}")


main()
