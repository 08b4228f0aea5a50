#!/usr/bin/env python3
"""Exactly-once consume-transform-produce with confluent-kafka's transactional producer against Sluice.

  confluent_transactions.py BOOTSTRAP

Writes 30 records to `input`; reads them in a group and, ten at a time, writes transformed records to `output`
in a transaction with the consumed offsets (send_offsets_to_transaction): the first ten are committed, the next
ten aborted, the last ten committed. Then a second producer with the same transactional.id fences the first.
Prints a JSON summary.
"""
import json
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap = sys.argv[1]
common = {"bootstrap.servers": bootstrap}
summary = {}

plain = Producer(common)
for i in range(30):
    plain.produce("input", key=str(i), value=f"in-{i}")
plain.flush(15)

consumer = Consumer({**common, "group.id": "etl", "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed"})
consumer.subscribe(["input"])
messages = []
while len(messages) < 30:
    for message in consumer.consume(30 - len(messages), timeout=10):
        if message.error():
            raise KafkaException(message.error())
        messages.append(message)

producer = Producer({**common, "transactional.id": "etl-1", "transaction.timeout.ms": 60000})
producer.init_transactions(30)
outcomes = ["commit", "abort", "commit"]
for round, outcome in enumerate(outcomes):
    batch = messages[round * 10:(round + 1) * 10]
    producer.begin_transaction()
    for message in batch:
        producer.produce("output", key=message.key(), value=b"out-" + message.value()[3:])
    last = batch[-1]
    producer.send_offsets_to_transaction([TopicPartition("input", last.partition(), last.offset() + 1)],
                                         consumer.consumer_group_metadata(), 30)
    if outcome == "commit":
        producer.commit_transaction(30)
    else:
        producer.flush(30)  # so that the aborted records reach the log (abort purges what is still queued)
        producer.abort_transaction(30)
committed = consumer.committed([TopicPartition("input", 0)], timeout=10)
summary["group_committed"] = committed[0].offset
consumer.close()


def read_output(isolation):
    reader = Consumer({**common, "group.id": f"reader-{isolation}", "enable.auto.commit": False,
                       "auto.offset.reset": "earliest", "isolation.level": isolation})
    reader.assign([TopicPartition("output", 0, 0)])
    values = []
    idle = 0
    while idle < 3:
        batch = reader.consume(100, timeout=1)
        idle = idle + 1 if not batch else 0
        for message in batch:
            if not message.error():
                values.append(message.value().decode())
    reader.close()
    return values


summary["read_committed"] = read_output("read_committed")
summary["read_uncommitted"] = read_output("read_uncommitted")

# Fencing: a new producer with the same transactional.id takes over; the old one's next transaction fails.
successor = Producer({**common, "transactional.id": "etl-1"})
successor.init_transactions(30)
try:
    producer.begin_transaction()
    producer.produce("output", value=b"zombie")
    producer.commit_transaction(30)
    summary["zombie"] = "committed"
except KafkaException as error:
    summary["zombie"] = "fenced"
    summary["zombie_error"] = str(error.args[0])
successor.begin_transaction()
successor.produce("output", value=b"successor")
successor.commit_transaction(30)
summary["after_fencing"] = read_output("read_committed")[-2:]
print(json.dumps(summary))
