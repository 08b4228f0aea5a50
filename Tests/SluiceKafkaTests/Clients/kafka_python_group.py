#!/usr/bin/env python3
"""A kafka-python consumer group against Sluice: three members (threads) consume while records are produced;
one leaves and another joins midway. Each member commits synchronously after every batch it handles, so every
record must be read exactly once across the rebalances. Then lists and describes the group with
KafkaAdminClient and prints one JSON summary. Usage: kafka_python_group.py HOST:PORT TOPIC GROUP COUNT"""
import json
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
seen = {}          # value -> times read
owners = {}        # member name -> partitions it ever held
errors = []
stop_all = threading.Event()


def member(name, stop):
    try:
        consumer = KafkaConsumer(topic, group_id=group, bootstrap_servers=bootstrap, client_id=name,
                                 enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000,
                                 heartbeat_interval_ms=500, max_poll_interval_ms=10000, fetch_max_wait_ms=100)
        while not stop.is_set() and not stop_all.is_set():
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                continue
            with lock:
                for tp, records in batch.items():
                    owners.setdefault(name, set()).add(tp.partition)
                    for r in records:
                        value = r.value.decode()
                        seen[value] = seen.get(value, 0) + 1
            consumer.commit()
        consumer.close()
    except Exception as e:  # reported, and fails the test
        errors.append(f"{name}: {e!r}")


stops = {n: threading.Event() for n in ("a", "b", "c", "d")}
threads = {n: threading.Thread(target=member, args=(n, stops[n])) for n in stops}
for n in ("a", "b", "c"):
    threads[n].start()

producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
for n in range(count):
    producer.send(topic, key=str(n % 12).encode(), value=str(n).encode())
    if n == count // 3:
        producer.flush()
        stops["c"].set()          # c leaves
        threads["c"].join()
    if n == 2 * count // 3:
        producer.flush()
        threads["d"].start()      # d joins
    if n % 50 == 0:
        time.sleep(0.05)
producer.flush()
producer.close()

deadline = time.time() + 60
while time.time() < deadline:
    with lock:
        if len(seen) >= count:
            break
    time.sleep(0.2)
time.sleep(1)  # a duplicate would show up now

admin = KafkaAdminClient(bootstrap_servers=bootstrap)
listed = sorted(g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups())
described = admin.describe_groups([group])[group]
description = {"state": described.get("group_state"), "protocol": described.get("protocol_data"),
               "members": sorted(m.get("client_id") for m in described.get("members", []))}
offsets = {str(tp.partition): meta.offset for tp, meta in admin.list_group_offsets({group: None})[group].items()}
admin.close()
stop_all.set()
for n in ("a", "b", "d"):
    threads[n].join()

print(json.dumps({
    "read": len(seen), "duplicates": sum(v - 1 for v in seen.values()),
    "missing": [str(n) for n in range(count) if str(n) not in seen][:10],
    "owners": {k: sorted(v) for k, v in owners.items()}, "errors": errors, "listed": listed,
    "described": description, "committed": offsets,
}))
