#!/usr/bin/env python3
"""Hostile clients against a running `intake serve`: does honest traffic keep flowing, is memory
bounded, and does it return afterwards?

One honest client sends signed Kustomer webhooks one after another on a kept-alive connection.
After `--warmup` seconds the attack starts from other loopback addresses (127.0.0.2, …): `--large`
connections each declare a body of `--body-size` bytes and send all of it but 1,000 bytes, plus
`--idle` connections that send nothing; they are held `--hold` seconds, then closed. The process's
RSS is read from /proc/<pid>/status every 0.5 s until `--after` seconds past the close (with `--quiet-after`, the honest client stops at the close too, so the
server is idle while memory is watched).

Prints one JSON object: honest requests sent / acknowledged before and during the attack, and
RSS idle, peak, at the close, and 1, 5, 10, … seconds after it. Standard library only.

    scripts/bench-hostile.py --url http://127.0.0.1:8080 --source demo-kustomer \
        --secret demo-kustomer-secret --pid "$(pgrep -f 'intake serve')"
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import time
import urllib.parse


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def kustomer_body(n):
    return json.dumps({
        "id": f"whk-hostile-{n}",
        "name": "kustomer.message.create",
        "org": "5c0d7e8f9a0b1c2d3e4f5a6b",
        "orgName": "hostile",
        "data": {
            "type": "message",
            "id": f"msg-hostile-{time.time_ns()}-{n}",
            "attributes": {"channel": "email", "direction": "in",
                           "createdAt": "2026-11-27T09:15:00.000Z"},
            "relationships": {"conversation": {"data": {"type": "conversation",
                                                         "id": f"conv-hostile-{n}"}}},
        },
        "createdAt": "2026-11-27T09:15:00.120Z",
    }).encode()


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def honest(args, host, port, stop, tally):
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    while not stop.is_set():
        body = kustomer_body(n)
        sig = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
        head = (f"POST /ingest/{args.source} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"X-Kustomer-Webhook-Event: kustomer.message.create\r\n"
                f"X-Kustomer-Webhook-Signature: {sig}\r\n\r\n")
        writer.write(head.encode() + body)
        phase = tally["phase"]
        tally[phase]["sent"] += 1
        try:
            status = await asyncio.wait_for(read_response(reader), 30)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue
        if status == 200:
            tally[phase]["acked"] += 1
        n += 1
    writer.close()


async def attacker(args, host, port, index, large, held):
    local = f"127.0.{1 + index // 250}.{2 + index % 250}"
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0))
    except OSError:
        return
    held.append(writer)
    if large:
        head = (f"POST /ingest/{args.source} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {args.body_size}\r\n"
                f"X-Kustomer-Webhook-Signature: 00\r\n\r\n")
        writer.write(head.encode())
        chunk = b"x" * 64_000
        left = args.body_size - 1_000
        try:
            while left > 0:
                writer.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
                await writer.drain()
        except (ConnectionError, OSError):
            return


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--source", default="demo-kustomer")
    p.add_argument("--secret", default="demo-kustomer-secret")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--warmup", type=float, default=10)
    p.add_argument("--large", type=int, default=1500)
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--body-size", type=int, default=1_000_000)
    p.add_argument("--hold", type=float, default=8)
    p.add_argument("--after", type=float, default=30)
    p.add_argument("--quiet-after", action="store_true",
                   help="stop the honest client when the attack closes (an idle server)")
    args = p.parse_args()
    url = urllib.parse.urlparse(args.url)
    host, port = url.hostname, url.port or 80

    rss = {"idle": rss_mb(args.pid)}
    tally = {"phase": "before", "before": {"sent": 0, "acked": 0},
             "during": {"sent": 0, "acked": 0}, "after": {"sent": 0, "acked": 0}}
    stop = asyncio.Event()
    honest_task = asyncio.create_task(honest(args, host, port, stop, tally))
    await asyncio.sleep(args.warmup)

    tally["phase"] = "during"
    held = []
    attack_start = time.monotonic()
    tasks = [asyncio.create_task(attacker(args, host, port, i, i < args.large, held))
             for i in range(args.large + args.idle)]
    peak = rss["idle"]
    while time.monotonic() - attack_start < args.hold:
        peak = max(peak, rss_mb(args.pid))
        await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    for w in held:
        w.close()
    closed = time.monotonic()
    tally["phase"] = "after"
    if args.quiet_after:
        stop.set()
    rss["peak"] = round(peak, 1)
    rss["at_close"] = round(rss_mb(args.pid), 1)
    marks = [1, 5, 10, 15, 20, 30, 45, 60]
    for m in [m for m in marks if m <= args.after]:
        await asyncio.sleep(max(0, closed + m - time.monotonic()))
        rss[f"after_{m}s"] = round(rss_mb(args.pid), 1)
    stop.set()
    await honest_task
    rss["idle"] = round(rss["idle"], 1)
    tally.pop("phase")
    print(json.dumps({"connections": {"large": args.large, "idle": args.idle,
                                      "opened": len(held)},
                      "honest": tally, "rss_mb": rss}))


if __name__ == "__main__":
    asyncio.run(main())
