#!/usr/bin/env python3
"""A saga participant service for the Sluice examples, standard library only.

Sluice pushes each command to this service (a subscription, CloudEvents binary mode: ce-* headers, the data
as the body). The service "does" the work, then publishes its reply through Sluice's API with the saga's
correlation id and the command's id as causation id, and answers 200. A command seen before (same ce-id, as
Sluice re-sends after a crash) gets the same reply again, and nothing is done twice.

    participant.py serve --service payment --port 8102 --sluice http://127.0.0.1:7470 [--fail TYPE] [--silent TYPE]
    participant.py publish --sluice URL --topic T --type TYPE --data JSON [--correlation-id ID]

Besides --fail TYPE (answer command TYPE, e.g. payment.process, with its failure reply) and --silent TYPE
(never answer it: the step times out), each service follows a few business rules, so that one workload can
produce every outcome:
  payment:   payment.process fails above 10,000; payment.refund fails from 5,000 up (manual approval)
  inventory: inventory.reserve fails for a quantity over 10; never answers for sku "backorder"
  shipping:  shipping.schedule fails without an address
  validation: payment.validate fails for an amount of 0 or less
  wallet:    balance.reserve fails above 500
  processor: payment.execute is declined for user "u-blocked"
"""
import argparse
import json
import signal
import sys
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler

import listen

# Command type -> (service, success reply, failure reply). Compensations have a success reply only when the
# saga definition waits for one.
COMMANDS = {
    # The order saga (seed: order -> payment -> inventory -> shipping).
    "order.create": ("order", "order.created", "order.rejected"),
    "order.cancel": ("order", None, None),
    "payment.process": ("payment", "payment.processed", "payment.failed"),
    "payment.refund": ("payment", "payment.refunded", "payment.refund_failed"),
    "inventory.reserve": ("inventory", "inventory.reserved", "inventory.insufficient"),
    "inventory.release": ("inventory", "inventory.released", "inventory.release_failed"),
    "shipping.schedule": ("shipping", "shipping.scheduled", "shipping.failed"),
    # The payment saga (seed: validate -> reserve balance -> process -> update merchant balance -> notify).
    "payment.validate": ("validation", "payment.validated", "payment.invalid"),
    "payment.validation.cancel": ("validation", None, None),
    "balance.reserve": ("wallet", "balance.reserved", "balance.insufficient"),
    "balance.release": ("wallet", "balance.released", "balance.release_failed"),
    "payment.execute": ("processor", "payment.executed", "payment.declined"),
    "payment.execution.refund": ("processor", "payment.execution.refunded", "payment.execution.refund_failed"),
    "merchant.balance.update": ("merchant", "merchant.balance.updated", "merchant.balance.update_failed"),
    "merchant.balance.revert": ("merchant", "merchant.balance.reverted", "merchant.balance.revert_failed"),
    "notification.send": ("notification", "notification.sent", "notification.failed"),
}


def publish(sluice, topic, event):
    request = urllib.request.Request(
        f"{sluice}/v1/topics/{topic}/events", data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/cloudevents+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def business_rule(command_type, data):
    """"fail", "silent" or None (succeed), from the command's data."""
    items = data.get("items") if isinstance(data.get("items"), list) else []
    if command_type == "payment.process" and number(data.get("amount")) > 10_000:
        return "fail"
    if command_type == "payment.refund" and number(data.get("amount")) >= 5_000:
        return "fail"
    if command_type == "inventory.reserve":
        if any(isinstance(i, dict) and i.get("sku") == "backorder" for i in items):
            return "silent"
        if any(isinstance(i, dict) and number(i.get("qty")) > 10 for i in items):
            return "fail"
    if command_type == "shipping.schedule" and not data.get("address"):
        return "fail"
    if command_type == "payment.validate" and number(data.get("amount")) <= 0:
        return "fail"
    if command_type == "balance.reserve" and number(data.get("amount")) > 500:
        return "fail"
    if command_type == "payment.execute" and data.get("user_id") == "u-blocked":
        return "fail"
    return None


def serve(args):
    replies = {}  # command id -> reply event (deduplication)
    lock = threading.Lock()
    fail, silent = set(args.fail), set(args.silent)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            command_id, command_type = self.headers.get("ce-id"), self.headers.get("ce-type")
            saga_id = self.headers.get("ce-correlationid", "")
            known = COMMANDS.get(command_type)
            if known is None or known[0] != args.service:
                self.send_response(200)  # not ours: nothing to do
                self.end_headers()
                return
            _, success, failure = known
            data = json.loads(body) if body else {}
            data = data if isinstance(data, dict) else {}
            verdict = business_rule(command_type, data)
            with lock:
                reply = replies.get(command_id)
                if reply is None and command_type not in silent and verdict != "silent" and success is not None:
                    failed = command_type in fail or verdict == "fail"
                    result = {"by": args.service, "command": command_type}
                    if not failed:
                        # What a real service would hand back, for later steps and compensations.
                        result[f"{args.service}_ref"] = f"{args.service}-{uuid.uuid4().hex[:8]}"
                    if "order_id" in data:
                        result["order_id"] = data["order_id"]
                    reply = {"specversion": "1.0", "id": f"reply-{command_id}", "source": f"/examples/{args.service}",
                             "type": failure if failed else success, "correlationid": saga_id,
                             "causationid": command_id, "data": result}
                    replies[command_id] = reply
            if reply is not None:
                publish(args.sluice, args.reply_topic, reply)
                print(f"{args.service}: {command_type} for saga {saga_id} -> {reply['type']}", flush=True)
            else:
                print(f"{args.service}: {command_type} for saga {saga_id} -> (no reply)", flush=True)
            self.send_response(200)
            self.end_headers()

    server = listen.server(args, Handler)
    print(f"{args.service} service listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


def main():
    # Stop on SIGTERM even when started by a parent that ignores or blocks it (the mask is inherited).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve")
    s.add_argument("--service", required=True, choices=sorted({v[0] for v in COMMANDS.values()}))
    listen.add_arguments(s)
    s.add_argument("--sluice", default="http://127.0.0.1:7470")
    s.add_argument("--reply-topic", default="saga-replies")
    s.add_argument("--fail", action="append", default=[], metavar="TYPE")
    s.add_argument("--silent", action="append", default=[], metavar="TYPE")
    p = commands.add_parser("publish")
    p.add_argument("--sluice", default="http://127.0.0.1:7470")
    p.add_argument("--topic", required=True)
    p.add_argument("--type", required=True)
    p.add_argument("--data", default="{}")
    p.add_argument("--id", default=None)
    p.add_argument("--correlation-id", default=None)
    args = parser.parse_args()
    if args.command == "serve":
        for name in args.fail + args.silent:
            if name not in COMMANDS:
                sys.exit(f"unknown command type {name}; known: {', '.join(sorted(COMMANDS))}")
        serve(args)
    else:
        event = {"specversion": "1.0", "id": args.id or str(uuid.uuid4()), "source": "/examples/cli", "type": args.type,
                 "data": json.loads(args.data)}
        if args.correlation_id:
            event["correlationid"] = args.correlation_id
        print(json.dumps(publish(args.sluice, args.topic, event)))


if __name__ == "__main__":
    main()
