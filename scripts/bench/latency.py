#!/usr/bin/env python3
"""Publish latency at a fixed rate: RATE single-event requests per second for SECONDS over keep-alive connections.

usage: latency.py HOST:PORT RATE SECONDS  → prints 'p50_ms p99_ms sent errors'
Requests are scheduled on a fixed timetable (open loop); latency counts from the scheduled send time, so a
stalled server shows up as latency instead of a lower rate (no coordinated omission).
"""
import http.client
import json
import sys
import threading
import time

host, port = sys.argv[1].split(":")
rate = float(sys.argv[2])
seconds = float(sys.argv[3])
workers = 8
latencies = []
errors = [0]
lock = threading.Lock()
start = time.perf_counter() + 0.5
total = int(rate * seconds)
filler = "lorem ipsum dolor sit amet " * 34


def worker(index):
    connection = http.client.HTTPConnection(host, int(port))
    for n in range(index, total, workers):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps({"specversion": "1.0", "id": f"lat-{n}", "source": "/bench", "type": "order.created",
                           "partitionkey": f"cust-{n % 97}", "data": {"n": n, "note": filler}})
        try:
            connection.request("POST", "/v1/topics/latency/events", body, {"Content-Type": "application/cloudevents+json"})
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except Exception:
            ok = False
            connection = http.client.HTTPConnection(host, int(port))
        elapsed = time.perf_counter() - scheduled
        with lock:
            if ok:
                latencies.append(elapsed)
            else:
                errors[0] += 1


threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
latencies.sort()
p50 = latencies[len(latencies) // 2] * 1000
p99 = latencies[int(len(latencies) * 0.99)] * 1000
print(f"{p50:.2f} {p99:.2f} {len(latencies)} {errors[0]}")
