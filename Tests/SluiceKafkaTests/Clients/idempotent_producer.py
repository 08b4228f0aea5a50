#!/usr/bin/env python3
"""An idempotent confluent-kafka (librdkafka) producer that keeps sending while the test kills and restarts
Sluice. Sends COUNT records with values "0" … "COUNT-1" (keys spread them over the partitions), paced so that
the run lasts a few seconds, then flushes and prints one JSON line: delivered and failed counts, and the
errors seen. Usage: idempotent_producer.py HOST:PORT TOPIC COUNT"""
import json
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
delivered, failed, errors = 0, 0, {}


def on_delivery(err, msg):
    global delivered, failed
    if err is None:
        delivered += 1
    else:
        failed += 1
        errors[str(err)] = errors.get(str(err), 0) + 1


producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 120000,
    "reconnect.backoff.max.ms": 200,
    "log_level": 3,
})
for n in range(count):
    while True:
        try:
            producer.produce(topic, key=str(n % 16).encode(), value=str(n).encode(), on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
    if n % 200 == 199:
        time.sleep(0.02)
left = producer.flush(150)
print(json.dumps({"delivered": delivered, "failed": failed, "unflushed": left, "errors": errors}))
