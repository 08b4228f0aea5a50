#!/usr/bin/env python3
"""Drives Sluice's Kafka listener with kafka-python: produces with acks 0, 1 and all (plain and gzip, keys,
headers, a null value), reads everything back by assignment, asks offsets for times, and prints one JSON
summary for the Swift test to check. Usage: kafka_python_client.py HOST:PORT TOPIC"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
summary = {"produced": {}, "offsets": {}}

sent = []
for acks, compression, count in (("1", None, 100), ("all", "gzip", 100), ("0", None, 50)):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=int(acks) if acks != "all" else "all",
                             compression_type=compression, linger_ms=5, request_timeout_ms=10000,
                             enable_idempotence=(acks == "all"))
    futures = []
    for n in range(count):
        key = f"key-{n % 7}".encode()
        value = None if n == 3 and acks == "1" else f"{acks}-{n}".encode()
        headers = [("h", f"{n}".encode()), ("empty", b"")]
        futures.append(producer.send(topic, key=key, value=value, headers=headers))
        sent.append((key.decode(), None if value is None else value.decode(), str(n)))
    producer.flush(10)
    metas = [f.get(timeout=10) for f in futures]
    summary["produced"][acks] = {"count": len(metas), "offsets_known": sum(1 for m in metas if m.offset >= 0)}
    producer.close()

partitions = KafkaConsumer(bootstrap_servers=bootstrap).partitions_for_topic(topic)
summary["partitions"] = sorted(partitions)
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000,
                         fetch_max_wait_ms=100)
tps = [TopicPartition(topic, p) for p in sorted(partitions)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
received = []
deadline = time.time() + 30
while len(received) < len(sent) and time.time() < deadline:
    for tp, records in consumer.poll(timeout_ms=500).items():
        for r in records:
            received.append((r.key.decode(), None if r.value is None else r.value.decode(),
                             dict(r.headers).get("h", b"").decode(), r.partition, r.offset, r.timestamp))
summary["received"] = len(received)
order = lambda t: tuple("" if x is None else x for x in t) + (t[1] is None,)
summary["matches"] = sorted(((k, v, h) for k, v, h, *_ in received), key=order) == sorted(sent, key=order)
summary["unique_offsets"] = len({(p, o) for *_, p, o, _ in received}) == len(received)
ends = consumer.end_offsets(tps)
summary["end_offsets_total"] = sum(ends.values())
begins = consumer.beginning_offsets(tps)
summary["beginning_offsets_total"] = sum(begins.values())

# Offsets for times: the earliest timestamp gives each partition's first offset; a future one gives none.
first_ts = min(t for *_, t in received)
by_time = consumer.offsets_for_times({tp: first_ts for tp in tps})
summary["offsets_for_first_time"] = {str(tp.partition): (o.offset if o else None) for tp, o in by_time.items()}
future = consumer.offsets_for_times({tp: int(time.time() * 1000) + 3_600_000 for tp in tps})
summary["offsets_for_future"] = [o for o in future.values()]
summary["topics"] = sorted(consumer.topics())
consumer.close()
print(json.dumps(summary, default=str))
