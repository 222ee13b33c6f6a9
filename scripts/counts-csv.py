#!/usr/bin/env python3
"""Writes a per-minute counts file for `intake backtest --counts`, independently of intake's
own generator: TENANTS tenants with an `email` and a `chat` channel each, WEEKS weeks from
Monday 2026-09-07 UTC, Poisson minutes at a peak rate log-uniform in 1–1,000/h, a business
day (10 % at night, up from 08:00 to full at 10:00, down from 16:00 to 10 % at 19:00 UTC) and
weekends at 30 %. No outages: every alert in its replay is a false one.

    scripts/counts-csv.py TENANTS WEEKS [zeros|sparse] [ramp|step|step30] [SHAPE] > counts.csv

`zeros` writes every minute of every flow (the largest file a store export can give);
`sparse` only the minutes with events. `step` (default `ramp`) makes the business day an office's
hours instead: 5 % at night, full from 09:00 to 17:00 UTC sharp; `step30` from 08:30 to 17:30.
With SHAPE (e.g. 2) each minute's rate is multiplied by its own Gamma(SHAPE, 1/SHAPE):
gamma-Poisson minutes, bursty at the minute scale. With `OUTAGE="DAY HH:MM MINUTES"` in the
environment, every tenant's `email` channel carries nothing for MINUTES from HH:MM UTC on day
DAY (0 is the first Monday); `scripts/score-outage.py` scores a replay of such a file. Seeded
(7): the same arguments give the same file.
"""

import datetime
import math
import os
import random
import sys


def poisson(rng, lam):
    n, limit, p = 0, math.exp(-lam), rng.random()
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def main():
    args = sys.argv[1:]
    if len(args) not in (3, 4, 5) or args[2] not in ("zeros", "sparse") or args[3:4] not in (
        [], ["ramp"], ["step"], ["step30"]
    ):
        sys.exit(__doc__.split("\n\n")[1])
    burst = float(args[4]) if len(args) == 5 else None
    outage = range(0)
    if os.environ.get("OUTAGE"):
        day, hhmm, minutes = os.environ["OUTAGE"].split()
        first = int(day) * 1440 + int(hhmm[:2]) * 60 + int(hhmm[3:])
        outage = range(first, first + int(minutes))
    if burst is not None and not burst > 0:
        sys.exit("SHAPE must be a positive number")
    tenants, weeks, zeros = int(args[0]), int(args[1]), args[2] == "zeros"
    opens, closes = {"step": (9, 17), "step30": (8.5, 17.5)}.get("".join(args[3:4]), (None, None))
    rng = random.Random(7)
    start = datetime.datetime(2026, 9, 7, tzinfo=datetime.timezone.utc)
    peaks = [[10 ** rng.uniform(0, 3) for _ in range(2)] for _ in range(tenants)]
    out = sys.stdout
    out.write("minute,tenant,source,channel,count\n")
    for m in range(weeks * 7 * 1440):
        minute = (start + datetime.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:00Z")
        hour = (m % 1440) / 60
        if opens is not None:
            shape = 1.0 if opens <= hour < closes else 0.05
        else:
            shape = 0.1 + 0.9 * max(0.0, min(1.0, (hour - 8) / 2, (19 - hour) / 3))
        if (m // 1440) % 7 >= 5:
            shape *= 0.3
        for t in range(tenants):
            for c, channel in enumerate(("email", "chat")):
                lam = peaks[t][c] * shape / 60
                if burst is not None:
                    lam *= rng.gammavariate(burst, 1 / burst)
                n = poisson(rng, lam)
                if channel == "email" and m in outage:
                    n = 0
                if n or zeros:
                    out.write(f"{minute},tenant-{t:03},tenant-{t:03}-src,{channel},{n}\n")


main()
