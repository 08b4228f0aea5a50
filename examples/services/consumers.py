#!/usr/bin/env python3
"""The recommendation example's consumers (seed: content watched -> profile and trending), standard library only.

Sluice pushes content.watched events to each through a subscription (CloudEvents binary mode).

  profile:  keeps each user's watch history and favourite genre. An event without user_id is the event's fault:
            400, so Sluice dead-letters it at once. Every event whose id ends in 7 fails its first attempt with
            500 (a flaky database), so Sluice retries it.
  trending: counts views per content id over the run; GET /trending returns the top ten. It is a projection that
            can be rebuilt: the first event of a new rewind (header X-Sluice-Rewind) starts the counts afresh, and
            Sluice re-delivers every event from the point the subscription was rewound to.
  welcome:  sends the welcome mail for user.registered, and only knows version 2.0 (consentGiven and
            marketingOptIn required). Its subscription asks for version: latest, so Sluice upcasts the 1.0 and 1.1
            events producers still send; anything else is refused with 400.

    consumers.py --service profile --port 8201
"""
import argparse
import collections
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler

import listen


def main():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", required=True, choices=["profile", "trending", "welcome"])
    listen.add_arguments(parser)
    args = parser.parse_args()
    lock = threading.Lock()
    profiles = collections.defaultdict(lambda: {"watched": [], "genres": collections.Counter()})
    views = collections.Counter()
    seen = set()
    rebuild = {"id": None, "count": 0}
    welcomed = {}
    upcast_from = collections.Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body=None):
            payload = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            with lock:
                if self.path == "/trending":
                    return self.answer(200, [{"content_id": c, "views": n} for c, n in views.most_common(10)])
                if self.path == "/stats" and args.service == "welcome":
                    return self.answer(200, {"events": len(welcomed), "marketing": sum(welcomed.values()), "upcast_from": dict(upcast_from)})
                if self.path == "/stats":
                    return self.answer(200, {"events": len(seen), "users": len(profiles), "views": sum(views.values()),
                                             "rebuilds": rebuild["count"], "rewind": rebuild["id"]})
            self.answer(404, {"error": "GET /trending or /stats"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            event_id, attempt = self.headers.get("ce-id", ""), int(self.headers.get("X-Sluice-Attempt", "1"))
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return self.answer(400, {"error": "the body is not JSON"})
            if args.service == "welcome":
                if self.headers.get("ce-eventversion") != "2.0" or not all(isinstance(data.get(f), bool) for f in ("consentGiven", "marketingOptIn")):
                    return self.answer(400, {"error": "welcome reads user.registered 2.0 only"})
                with lock:
                    if event_id not in welcomed:
                        welcomed[event_id] = data["marketingOptIn"]
                        if self.headers.get("X-Sluice-Upcast-From"):
                            upcast_from[self.headers["X-Sluice-Upcast-From"]] += 1
                return self.answer(200)
            if args.service == "profile":
                if not data.get("user_id"):
                    return self.answer(400, {"error": "content.watched needs user_id"})
                if event_id.endswith("7") and attempt == 1:
                    return self.answer(500, {"error": "profile store busy, try again"})
            rewind = self.headers.get("X-Sluice-Rewind")
            with lock:
                if args.service == "trending" and rewind and rewind != rebuild["id"]:
                    # A rebuild from the log: forget the old counts, every event comes again.
                    rebuild["id"], rebuild["count"] = rewind, rebuild["count"] + 1
                    views.clear()
                    seen.clear()
                if event_id not in seen:  # a redelivered event is counted once
                    seen.add(event_id)
                    if args.service == "profile":
                        profile = profiles[data["user_id"]]
                        profile["watched"].append(data.get("content_id"))
                        profile["genres"][data.get("genre", "unknown")] += 1
                    else:
                        views[data.get("content_id", "unknown")] += 1
            self.answer(200)

    server = listen.server(args, Handler)
    print(f"{args.service} consumer listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
