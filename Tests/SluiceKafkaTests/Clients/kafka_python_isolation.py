#!/usr/bin/env python3
"""Reads a topic to its end with kafka-python at an isolation level; prints the CloudEvent ids it got as JSON.

  kafka_python_isolation.py BOOTSTRAP TOPIC read_committed|read_uncommitted
"""
import json
import sys

from kafka import KafkaConsumer, TopicPartition

bootstrap, topic, isolation = sys.argv[1:4]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                         auto_offset_reset="earliest", consumer_timeout_ms=3000)
partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
consumer.assign(partitions)
consumer.seek_to_beginning()
ids = []
for message in consumer:
    headers = dict(message.headers)
    ids.append(headers.get("ce_id", b"").decode())
ends = consumer.end_offsets(partitions)
print(json.dumps({"ids": ids, "end_offsets": {str(tp.partition): offset for tp, offset in ends.items()},
                  "positions": {str(tp.partition): consumer.position(tp) for tp in partitions}}))
