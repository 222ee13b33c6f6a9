#!/usr/bin/env python3
"""The best detection delay any silence rule can reach on the synthetic generator's 90/h probes.

An *oracle* that knows everything the generator knows except the current hour's level: the
baseline, the day multiplier (so the day is exactly at its baseline), the series' hour-to-hour
dispersion `a_h` and the minute-scale burst shape `k`. It sees the minutes of the hour before the
stop and pages at the first minute at which the exact posterior predictive probability of no
event since the last one falls below THETA (1e-6, `inbound_stopped`'s threshold): the same rule
as the monitor, with none of its estimation error. Its delays bound what `inbound_stopped` can
reach on this traffic at this threshold, whatever its model.

The probe is drawn as `crates/monitor/src/synthetic.rs` draws it: 90 events an hour in business
hours, a total dispersion uniform in [0.02, 0.15] of which 30–70 % is day-level and the rest a
Gamma multiplier redrawn every clock hour, the stop at a uniform minute of its hour; minutes are
Poisson (`smooth`) or gamma-Poisson of shape `k` (each minute's rate times its own Gamma(k, 1/k)).
The posterior of the hour's level is computed on a grid. Standard library only.

    scripts/oracle-stop-delay.py [--theta 1e-6] [--stops 1000] [--seed 1] smooth 4 2 1

With `--peak RATE` (10 for the 10/h probes) it bounds a slow channel's stop instead, over the
whole outage rather than within an hour: the probe's business-hours day as the generator
draws it (full rate 09:00–17:00 local, falling to a night floor of 3–20 % by 20:00), the stop
at a uniform local minute in 10:00–15:00, the outage 240 minutes long (the backtest's
window ends 2 h later, but events flow again from minute 240, ending the silence). The oracle
knows the day's multiplier (drawn, not 1: a quiet day is part of this bound) and the shape of
the day; each clock hour's level is unknown, learnt from that hour's minutes before the
silence. The silence begins at the last event, in whatever hour. Printed: how many stops are
paged before the outage ends, and their delays.

    scripts/oracle-stop-delay.py --peak 10 [--theta 1e-6] [--stops 1000] [--seed 1] smooth 4 2 1

With `--known-rate` it prints a bound that owes nothing to the generator: a channel at exactly
90/h (or `--peak`) whose rate is known, with nothing left to learn. Its minutes are still
Poisson or gamma-Poisson of shape `k`, so the chance of an empty minute is `(1 + m/k)^-k`, and
a silence of `t` minutes has that chance to the power `t`. Printed: the first whole minute at
which the silence is below THETA, and the threshold a page at minute 10 would need.

    scripts/oracle-stop-delay.py --known-rate [--theta 1e-6] [--peak 90] smooth 4 2 1
"""

import argparse
import math
import random

RATE = 1.5  # events a minute at 90/h
GRID = 240


def grid(shape):
    """A grid over the hour multiplier's Gamma(shape, 1/shape) prior and its log-density."""
    sd = 1.0 / math.sqrt(shape)
    lo, hi = max(1e-3, 1.0 - 7 * sd), 1.0 + 9 * sd
    xs = [lo + (hi - lo) * (i + 0.5) / GRID for i in range(GRID)]
    return xs, [(shape - 1) * math.log(x) - shape * x for x in xs]


def ln_count(n, mu, k):
    """ln P(n events in a minute of mean mu): Poisson, or negative binomial of shape k."""
    if k is None:
        return n * math.log(mu) - mu - math.lgamma(n + 1)
    return (math.lgamma(n + k) - math.lgamma(k) - math.lgamma(n + 1)
            + k * math.log(k / (k + mu)) + n * math.log(mu / (k + mu)))


def ln_empty(mu, k):
    return -mu if k is None else -k * math.log1p(mu / k)


def lse(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def poisson(rng, lam):
    n, p = 0, math.exp(-lam)
    s, x = p, rng.random()
    while x > s:
        n += 1
        p *= lam / n
        s += p
    return n


def one_stop(rng, k, theta):
    """One probe stopped at a random minute: (delay in minutes, the stop's minute)."""
    alpha = rng.uniform(0.02, 0.15)
    a_day = alpha * rng.uniform(0.3, 0.7)
    a_h = (1 + alpha) / (1 + a_day) - 1
    xs, prior = grid(1 / a_h)
    level = rng.gammavariate(1 / a_h, a_h)
    stop = rng.randrange(60)
    counts = []
    for _ in range(stop):
        burst = 1.0 if k is None else rng.gammavariate(k, 1.0 / k)
        counts.append(poisson(rng, RATE * level * burst))
    last = max((i for i, c in enumerate(counts) if c > 0), default=None)
    # The hour's minutes up to the last event update its level; with no event yet this hour,
    # the silence began in the previous hour, whose level says nothing of this one's (the
    # oracle knows the day), so the whole hour so far is silence.
    seen = counts[: last + 1] if last is not None else []
    post = [prior[j] + sum(ln_count(c, RATE * xs[j], k) for c in seen) for j in range(GRID)]
    begin = last + 1 if last is not None else 0
    norm_post, norm_prior = lse(post), lse(prior)
    for delay in range(1, 600):
        now = stop + delay
        ln_p0 = lse([post[j] + (min(now, 60) - begin) * ln_empty(RATE * xs[j], k)
                     for j in range(GRID)]) - norm_post
        # Every later hour has a fresh level, drawn from the prior.
        for h in range(60, now, 60):
            minutes = min(now, h + 60) - h
            ln_p0 += lse([prior[j] + minutes * ln_empty(RATE * xs[j], k)
                          for j in range(GRID)]) - norm_prior
        if ln_p0 < math.log(theta):
            return delay, stop
    return 600, stop


def day_shape(local_hour, night):
    """The generator's business-hours day (`synthetic.rs`, `day_shape`)."""
    up = min(max((local_hour - 7.0) / 2.0, 0.0), 1.0)
    down = min(max((20.0 - local_hour) / 3.0, 0.0), 1.0)
    return night + (1.0 - night) * min(up, down)


OUTAGE = 240
HISTORY = 180  # minutes simulated before the stop, to find the last event


def one_slow_stop(rng, k, theta, peak):
    """One slow probe's stop: (delay in minutes, or None if not paged before the outage ends)."""
    alpha = rng.uniform(0.02, 0.15)
    a_day = alpha * rng.uniform(0.3, 0.7)
    a_h = (1 + alpha) / (1 + a_day) - 1
    day = rng.gammavariate(1 / a_day, a_day)
    night = rng.uniform(0.03, 0.2)
    xs, prior = grid(1 / a_h)
    stop = rng.randrange(600, 900)  # local minute of the day
    first = stop - HISTORY - (stop - HISTORY) % 60  # an hour's start
    mean = {m: peak / 60 * day * day_shape(m / 60, night) for m in range(first, stop + OUTAGE)}
    counts, levels = {}, {}
    for m in range(first, stop):
        hour = m // 60
        if hour not in levels:
            levels[hour] = rng.gammavariate(1 / a_h, a_h)
        burst = 1.0 if k is None else rng.gammavariate(k, 1.0 / k)
        counts[m] = poisson(rng, mean[m] * levels[hour] * burst)
    begin = max((m for m, c in counts.items() if c > 0), default=first - 1) + 1
    # Each hour the silence touches: the posterior of its level from its minutes before the
    # silence (the prior for an hour wholly silent), its normaliser, and the log-probability
    # of its silent minutes so far at each level of the grid.
    hours = {}
    for hour in range(begin // 60, (stop + OUTAGE - 1) // 60 + 1):
        seen = [m for m in range(hour * 60, min(begin, hour * 60 + 60)) if m in counts]
        post = [prior[j] + sum(ln_count(counts[m], mean[m] * xs[j], k) for m in seen)
                for j in range(GRID)]
        hours[hour] = (post, lse(post), [0.0] * GRID)
    for m in range(begin, stop + OUTAGE):
        post, _, silent = hours[m // 60]
        for j in range(GRID):
            silent[j] += ln_empty(mean[m] * xs[j], k)
        if m < stop:
            continue
        ln_p0 = sum(lse([p + q for p, q in zip(post, silent)]) - norm
                    for post, norm, silent in hours.values() if any(silent))
        if ln_p0 < math.log(theta):
            return m + 1 - stop
    return None


def slow(args, k):
    rng = random.Random(args.seed)
    runs = [one_slow_stop(rng, k, args.theta, args.peak) for _ in range(args.stops)]
    delays = sorted(d for d in runs if d is not None)
    level = "smooth" if k is None else f"{k:g}"
    print(f"{level:>6}: theta {args.theta:g}, {args.stops} stops at {args.peak:g}/h: paged "
          f"before the outage ended {len(delays)}/{args.stops}; delays median "
          f"{quantile(delays, 0.5)}, p90 {quantile(delays, 0.9)}, max {delays[-1]}")


def known_rate(args, k):
    rate = (args.peak if args.peak is not None else 60 * RATE) / 60
    per_minute = -ln_empty(rate, k)
    first = math.ceil(math.log(1 / args.theta) / per_minute)
    level = "smooth" if k is None else f"{k:g}"
    print(f"{level:>6}: {60 * rate:g}/h known exactly: an empty minute has chance "
          f"{math.exp(-per_minute):.3f}; below theta {args.theta:g} after {first} min; "
          f"a page at minute 10 needs theta {math.exp(-10 * per_minute):.1e}")


def quantile(sorted_values, q):
    i = min(len(sorted_values), max(1, math.ceil(q * len(sorted_values))))
    return sorted_values[i - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("levels", nargs="+", help="smooth, or a gamma shape of minute counts")
    ap.add_argument("--theta", type=float, default=1e-6)
    ap.add_argument("--stops", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peak", type=float, help="a slow channel's business-hours rate (10)")
    ap.add_argument("--known-rate", action="store_true",
                    help="the bound of a channel whose rate is known exactly")
    args = ap.parse_args()
    for level in args.levels:
        k = None if level == "smooth" else float(level)
        if args.known_rate:
            known_rate(args, k)
            continue
        if args.peak is not None:
            slow(args, k)
            continue
        rng = random.Random(args.seed)
        runs = [one_stop(rng, k, args.theta) for _ in range(args.stops)]
        delays = sorted(d for d, _ in runs)
        early = sorted(d for d, s in runs if s < 5)
        print(f"{level:>6}: theta {args.theta:g}, {args.stops} stops: median "
              f"{quantile(delays, 0.5)}, p90 {quantile(delays, 0.9)}, max {delays[-1]}; "
              f"stops in an hour's first 5 minutes: median {quantile(early, 0.5)}, "
              f"max {early[-1]}")


main()
