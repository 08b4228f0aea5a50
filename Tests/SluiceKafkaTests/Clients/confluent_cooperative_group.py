#!/usr/bin/env python3
"""A confluent-kafka (librdkafka) consumer group with the cooperative-sticky assignor against Sluice: two
members consume while records are produced, a third joins midway and the first leaves. Each member commits
synchronously after every message it handles; a commit that races a rebalance may fail (as with Kafka), and only
the records whose commit failed may be read twice. Nothing may be missing. Prints one JSON summary. Usage: confluent_cooperative_group.py HOST:PORT TOPIC GROUP COUNT"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
seen = {}
assigned = {}      # member -> partitions it was ever given
errors = []
commit_failures = []
stop_all = threading.Event()


def member(name, stop):
    def on_assign(consumer, partitions):
        with lock:
            assigned.setdefault(name, set()).update(p.partition for p in partitions)

    try:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                             "partition.assignment.strategy": "cooperative-sticky",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                             "fetch.wait.max.ms": 100})
        consumer.subscribe([topic], on_assign=on_assign)
        while not stop.is_set() and not stop_all.is_set():
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                errors.append(f"{name}: {message.error()}")
                continue
            with lock:
                value = message.value().decode()
                seen[value] = seen.get(value, 0) + 1
            try:
                consumer.commit(message=message, asynchronous=False)
            except KafkaException as e:  # a commit racing a rebalance; the record may be read again
                with lock:
                    commit_failures.append(f"{name}: {e.args[0].name()}")
        consumer.close()
    except Exception as e:  # reported, and fails the test
        errors.append(f"{name}: {e!r}")


stops = {n: threading.Event() for n in ("a", "b", "c")}
threads = {n: threading.Thread(target=member, args=(n, stops[n])) for n in stops}
threads["a"].start()
threads["b"].start()

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
for n in range(count):
    producer.produce(topic, key=str(n % 12).encode(), value=str(n).encode())
    if n == count // 3:
        producer.flush()
        threads["c"].start()      # c joins
    if n == 2 * count // 3:
        producer.flush()
        stops["a"].set()          # a leaves
        threads["a"].join()
    if n % 50 == 0:
        producer.poll(0)
        time.sleep(0.05)
producer.flush()

deadline = time.time() + 60
while time.time() < deadline:
    with lock:
        if len(seen) >= count:
            break
    time.sleep(0.2)
time.sleep(1)  # a duplicate would show up now
admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive while its futures run
described = admin.describe_consumer_groups([group])[group].result(10)
description = {"assignor": described.partition_assignor, "state": str(described.state),
               "members": sorted(m.client_id for m in described.members)}
stop_all.set()
for n in ("b", "c"):
    threads[n].join()

print(json.dumps({
    "read": len(seen), "duplicates": sum(v - 1 for v in seen.values()),
    "missing": [str(n) for n in range(count) if str(n) not in seen][:10],
    "assigned": {k: sorted(v) for k, v in assigned.items()}, "described": description, "errors": errors,
    "commit_failures": commit_failures,
}))
