#!/usr/bin/env python3
"""Static membership (group.instance.id) with confluent-kafka (librdkafka) against Sluice: members "a" and "b"
join a group; "a" closes (a static member sends no LeaveGroup) and a new consumer with the same instance id takes
its place. The group must not rebalance: the generation stays, the new "a" gets the old one's partitions, and "b"
is never revoked. Prints one JSON summary. Usage: confluent_static_group.py HOST:PORT BASE_URL TOPIC GROUP"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer

bootstrap, base, topic, group = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
lock = threading.Lock()
events = []        # (name, "assign"/"revoke", partitions)
errors = []


def describe():
    try:
        with urllib.request.urlopen(f"{base}/v1/groups/{group}", timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:  # the group does not exist until the first JoinGroup
            return 0, {}
        raise
    members = {m["client_id"]: sorted(p["partition"] for p in m.get("assignment", [])) for m in body["members"]}
    return body["generation"], members


def member(name, incarnation, stop):
    def on_assign(consumer, partitions):
        with lock:
            events.append([f"{name}{incarnation}", "assign", sorted(p.partition for p in partitions)])

    def on_revoke(consumer, partitions):
        with lock:
            events.append([f"{name}{incarnation}", "revoke", sorted(p.partition for p in partitions)])

    try:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                             "group.instance.id": name, "partition.assignment.strategy": "range",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "session.timeout.ms": 30000, "heartbeat.interval.ms": 500})
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            message = consumer.poll(0.2)
            if message is not None and message.error():
                errors.append(f"{name}{incarnation}: {message.error()}")
        consumer.close()
    except Exception as e:  # reported, and fails the test
        errors.append(f"{name}{incarnation}: {e!r}")


def wait_for(predicate, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        state = describe()
        if predicate(state):
            return state
        time.sleep(0.2)
    return describe()


stops = {"a1": threading.Event(), "b1": threading.Event(), "a2": threading.Event()}
threads = {"a1": threading.Thread(target=member, args=("a", 1, stops["a1"]), daemon=True),
           "b1": threading.Thread(target=member, args=("b", 1, stops["b1"]), daemon=True),
           "a2": threading.Thread(target=member, args=("a", 2, stops["a2"]), daemon=True)}
threads["a1"].start()
threads["b1"].start()
before = wait_for(lambda s: len(s[1]) == 2 and all(s[1].values()))
time.sleep(1)
stops["a1"].set()
threads["a1"].join()
time.sleep(1)
threads["a2"].start()
deadline = time.time() + 30
while time.time() < deadline:
    with lock:
        if any(e[0] == "a2" and e[1] == "assign" for e in events):
            break
    time.sleep(0.2)
time.sleep(2)
after = describe()
with lock:
    seen = [list(e) for e in events]  # before the closes below, which revoke as they leave
for stop in stops.values():
    stop.set()
for thread in threads.values():
    thread.join()
print(json.dumps({"errors": errors, "events": seen,
                  "before": {"generation": before[0], "members": before[1]},
                  "after": {"generation": after[0], "members": after[1]}}))
