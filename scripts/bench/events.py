#!/usr/bin/env python3
"""Writes realistic CloudEvents for the publish benchmarks, one JSON object per line, all the same size.

Each event is an order event of about 1,100 bytes with 20 varied data fields, `traceparent`, `partitionkey`
and `correlationid`; values come from a seeded generator, so every run (and every peer) gets the same bytes.
The event id is a fixed-width placeholder of 16 `@` that the load client overwrites with a unique id per send
(so idempotence never sees a repeat).

Usage: scripts/bench/events.py COUNT > events.jsonl
"""
import json
import random
import sys

ID_PLACEHOLDER = "@" * 16
TARGET_BYTES = 1123

FIRST = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger", "Radia", "Tim", "Sophie"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen", "Dijkstra", "Perlman"]
CITIES = ["Lisbon", "Oslo", "Utrecht", "Kraków", "Lyon", "Tampere", "Graz", "Porto", "Ghent", "Aarhus", "Brno"]
STREETS = ["Harbour Road", "Mill Lane", "Station Street", "Church Walk", "Market Square", "Elm Avenue", "Quay Side"]
SKUS = ["kb", "ms", "hd", "cb", "mn", "sp", "ca", "dk", "lp", "ch"]
CHANNELS = ["web", "ios", "android", "pos", "partner-api"]
CURRENCIES = ["EUR", "GBP", "SEK", "PLN", "CZK", "DKK", "NOK"]
STATUSES = ["created", "paid", "packed", "shipped"]
WORDS = ("please leave the parcel at the back door ring twice after six deliver to reception gift wrap without "
         "invoice call on arrival fragile keep upright second floor no plastic the blue gate next to the bakery "
         "weekend delivery preferred signature required neighbour at number twelve can accept side entrance").split()


def hexid(rng, digits):
    return "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def event(rng, n):
    customer = rng.randrange(1, 50_000)
    lines = []
    for _ in range(rng.randrange(1, 4)):
        lines.append({"sku": f"{rng.choice(SKUS)}-{rng.randrange(100, 9999)}", "qty": rng.randrange(1, 6),
                      "unit_price": round(rng.uniform(2, 400), 2)})
    data = {
        "order_id": f"ord-{rng.randrange(10**9):09d}",
        "customer_id": f"cust-{customer}",
        "customer_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "email": f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randrange(100)}@example.org",
        "status": rng.choice(STATUSES),
        "channel": rng.choice(CHANNELS),
        "currency": rng.choice(CURRENCIES),
        "total": round(sum(l["qty"] * l["unit_price"] for l in lines), 2),
        "tax": round(rng.uniform(0, 80), 2),
        "discount_code": rng.choice(["", "SPRING10", "WELCOME", f"VIP{rng.randrange(1000)}"]),
        "items": lines,
        "shipping": {"street": f"{rng.randrange(1, 300)} {rng.choice(STREETS)}", "city": rng.choice(CITIES),
                     "postcode": f"{rng.randrange(1000, 99999)}", "country": rng.choice(["PT", "NO", "NL", "PL", "FR", "FI", "AT"])},
        "placed_at": f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z",
        "session_id": hexid(rng, 24),
        "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "user_agent": rng.choice(["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1)", "okhttp/4.12.0"]),
        "loyalty_points": rng.randrange(0, 20_000),
        "gift": rng.random() < 0.1,
        "warehouse": f"wh-{rng.randrange(1, 40)}",
        "sequence": n,
    }
    return {
        "specversion": "1.0", "id": ID_PLACEHOLDER, "source": "/shop/checkout", "type": "order." + data["status"],
        "time": data["placed_at"], "datacontenttype": "application/json", "subject": data["order_id"],
        "partitionkey": data["customer_id"], "correlationid": f"{hexid(rng, 8)}-{hexid(rng, 4)}-{hexid(rng, 4)}-{hexid(rng, 4)}-{hexid(rng, 12)}",
        "traceparent": f"00-{hexid(rng, 32)}-{hexid(rng, 16)}-01",
        "data": data,
    }


def main():
    arg = sys.argv[1] if len(sys.argv) > 1 else "10000"
    if not arg.isdigit() or int(arg) < 1:
        print(f"events.py: COUNT must be a positive whole number, not {arg!r}\nUsage: scripts/bench/events.py COUNT > events.jsonl", file=sys.stderr)
        sys.exit(2)
    count = int(arg)
    rng = random.Random(20261203)
    for n in range(count):
        e = event(rng, n)
        text = json.dumps(e, separators=(",", ":"), ensure_ascii=False)
        # Pad to the same size with a note field, so each send is the same number of bytes.
        room = TARGET_BYTES - len(text.encode()) - len(',"note":""')
        words = []
        while len(" ".join(words)) < room:
            words.append(rng.choice(WORDS))
        e["data"]["note"] = " ".join(words)
        text = json.dumps(e, separators=(",", ":"), ensure_ascii=False)
        while len(text.encode()) > TARGET_BYTES and e["data"]["note"]:
            e["data"]["note"] = e["data"]["note"][:-1]
            text = json.dumps(e, separators=(",", ":"), ensure_ascii=False)
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
