#!/usr/bin/env python3
"""Runs the seed material's scenarios end to end with one command each, on free loopback ports.

    python3 examples/run.py recommendations        # content.watched -> profile and trending; bad events -> DLQ,
                                                   #   flaky ones retried, a failed replay -> poison
    python3 examples/run.py order happy            # or fail-payment, fail-inventory, fail-shipping,
                                                   #   timeout-inventory, stuck-refund
    python3 examples/run.py payment happy          # or fail-validate, fail-balance, fail-process, fail-merchant,
                                                   #   fail-notify, stuck-refund
    python3 examples/run.py users                  # user.registered 1.0/1.1/2.0 -> welcome, which reads 2.0 only:
                                                   #   upcast by Sluice; an event failing its schema is refused
    python3 examples/run.py all                    # everything at once, every outcome (the dashboards' workload)

Options: --count N sagas (default 5), --keep (leave data and logs), --api-port/--metrics-port, --hold SECONDS
(keep running after the workload, e.g. for Prometheus to scrape). The sluice binary is $SLUICE, else
.build/release/sluice or .build/debug/sluice, else it is built. Exit code 0 when everything ended as expected.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER_SERVICES = ["order", "payment", "inventory", "shipping"]
PAYMENT_SERVICES = ["validation", "wallet", "processor", "merchant", "notification"]
CONSUMERS = ["profile", "trending", "welcome"]

# scenario -> (participant flags per service, the status every saga must end with)
SAGA_SCENARIOS = {
    "order": {
        "happy": ({}, "completed"),
        "fail-payment": ({"payment": ["--fail", "payment.process"]}, "compensated"),
        "fail-inventory": ({"inventory": ["--fail", "inventory.reserve"]}, "compensated"),
        "fail-shipping": ({"shipping": ["--fail", "shipping.schedule"]}, "compensated"),
        "timeout-inventory": ({"inventory": ["--silent", "inventory.reserve"]}, "timed_out"),
        "stuck-refund": ({"shipping": ["--fail", "shipping.schedule"], "payment": ["--fail", "payment.refund"]}, "needs_intervention"),
    },
    "payment": {
        "happy": ({}, "completed"),
        "fail-validate": ({"validation": ["--fail", "payment.validate"]}, "failed"),
        "fail-balance": ({"wallet": ["--fail", "balance.reserve"]}, "compensated"),
        "fail-process": ({"processor": ["--fail", "payment.execute"]}, "compensated"),
        "fail-merchant": ({"merchant": ["--fail", "merchant.balance.update"]}, "compensated"),
        "fail-notify": ({"notification": ["--fail", "notification.send"]}, "compensated"),
        "stuck-refund": ({"merchant": ["--fail", "merchant.balance.update"], "processor": ["--fail", "payment.execution.refund"]}, "needs_intervention"),
    },
}


def reserve_port():
    """A socket bound to a free loopback port, not listening yet: the port is ours from now on (a service started
    later listens on it), and until then a connection to it is refused, as to a service that is down."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def http(method, url, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text[:1] in (b"{", b"[") else text.decode()


def event(type_, data, correlation=None, id_=None, key=None):
    e = {"specversion": "1.0", "id": id_ or str(uuid.uuid4()), "source": "/examples", "type": type_, "data": data}
    if correlation:
        e["correlationid"] = correlation
    if key:
        e["partitionkey"] = key
    return e


def sluice_binary():
    if os.environ.get("SLUICE"):
        return os.environ["SLUICE"]
    for build in ("release", "debug"):
        path = os.path.join(ROOT, ".build", build, "sluice")
        if os.path.exists(path):
            return path
    print("building sluice (swift build -c release) …", flush=True)
    subprocess.run(["swift", "build", "-c", "release", "--package-path", ROOT], check=True)
    return os.path.join(ROOT, ".build", "release", "sluice")


class Run:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="sluice-example-")
        self.api = self.metrics = None  # known once Sluice names its bound addresses
        self.sockets = {name: reserve_port() for name in ORDER_SERVICES + PAYMENT_SERVICES + CONSUMERS}
        self.ports = {name: sock.getsockname()[1] for name, sock in self.sockets.items()}
        self.children = []
        self.log = open(os.path.join(self.work, "services.log"), "w")
        self.problems = []

    def check(self, ok, what):
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.problems.append(what)

    # --- processes ---------------------------------------------------------------------------------------------

    def start_sluice(self):
        config = open(os.path.join(HERE, "sluice.yaml")).read()
        for name, port in self.ports.items():
            config = config.replace(f"@{name.upper()}_PORT@", str(port))
        path = os.path.join(self.work, "sluice.yaml")
        open(path, "w").write(config)
        log = os.path.join(self.work, "sluice.log")
        # Port 0 unless asked otherwise (the Kafka listener always): Sluice binds what is free and names it in its
        # first log line.
        self.children.append(subprocess.Popen(
            [sluice_binary(), "serve", "--config", path, "--data-dir", os.path.join(self.work, "data"),
             "--api-address", f"127.0.0.1:{self.args.api_port}", "--metrics-address", f"127.0.0.1:{self.args.metrics_port}",
             "--kafka-address", "127.0.0.1:0", "--log-file", log, "--lag-interval-ms", "1000",
             "--schemas", os.path.join(HERE, "schemas"), "--schema-validation", "enforce"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        while True:
            try:
                if self.metrics is None:
                    with open(log) as lines:
                        started = next((json.loads(line) for line in lines if '"sluice started"' in line), None)
                    if started:
                        self.api, self.metrics = f"http://{started['api.address']}", f"http://{started['metrics.address']}"
                if self.metrics and http("GET", f"{self.metrics}/readyz"):
                    break
            except OSError:
                pass
            if time.time() > deadline or self.children[-1].poll() is not None:
                sys.exit(f"sluice did not start; see {log}")
            time.sleep(0.1)
        print(f"sluice: API {self.api}, metrics {self.metrics}/metrics, data and logs in {self.work}", flush=True)

    def start_service(self, name, flags=()):
        script = "consumers.py" if name in CONSUMERS else "participant.py"
        sock = self.sockets[name]
        command = [sys.executable, os.path.join(HERE, "services", script), *(["serve"] if script == "participant.py" else []),
                   "--service", name, "--fd", str(sock.fileno())]
        if script == "participant.py":
            command += ["--sluice", self.api, *flags]
        self.children.append(subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=[sock.fileno()]))
        sock.close()  # the service has it now
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ports[name])) == 0:
                    return
            time.sleep(0.05)

    def stop(self):
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- waiting -----------------------------------------------------------------------------------------------

    def wait(self, what, condition, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            time.sleep(0.2)
        self.check(False, f"{what} (gave up after {timeout} s)")
        return False

    def sagas(self, type_):
        return http("GET", f"{self.api}/v1/sagas?type={type_}&limit=10000")["sagas"]

    def wait_sagas(self, type_, count):
        def done():
            sagas = self.sagas(type_)
            return len(sagas) >= count and all(s["status"] not in ("running", "compensating") for s in sagas)
        return self.wait(f"{count} {type_} sagas finish", done)

    def show_sagas(self, type_):
        sagas = sorted(self.sagas(type_), key=lambda s: s["started_at"])
        print(f"\n{'SAGA':40} {'STATUS':20} {'FAILED STEP':24} DURATION")
        for s in sagas:
            print(f"{s['id']:40} {s['status']:20} {s.get('failed_step') or '-':24} {s.get('duration_seconds') or 0:.3f} s")
        return sagas

    # --- workloads ---------------------------------------------------------------------------------------------

    def start_orders(self, orders):
        """orders: [(id, data)]"""
        for order_id, data in orders:
            http("POST", f"{self.api}/v1/sagas/order?id={order_id}", data)

    def request_payments(self, payments):
        for n, data in enumerate(payments):
            http("POST", f"{self.api}/v1/events", event("payment.requested", data, correlation=f"checkout-{n + 1}-{uuid.uuid4().hex[:6]}"),
                 content_type="application/cloudevents+json")

    def recommendations(self, trending_late=False):
        """Publishes content.watched events (some without user_id); checks what each consumer got, the DLQ, and
        that two replays park the bad events as poison."""
        if not trending_late:
            self.start_service("trending")
        self.start_service("profile")
        genres = ["drama", "comedy", "documentary", "anime"]
        good = [event("content.watched", {"user_id": f"u-{n % 7}", "content_id": f"c-{n % 11}", "genre": genres[n % 4],
                                          "watched_seconds": 60 + n}, correlation=f"session-{n % 5}", id_=f"w-{n}", key=f"u-{n % 7}")
                for n in range(60)]
        bad = [event("content.watched", {"content_id": f"c-{n}"}, id_=f"bad-{n}") for n in range(3)]
        for start in range(0, len(good), 20):
            http("POST", f"{self.api}/v1/events", good[start:start + 20] + (bad if start == 20 else []),
                 content_type="application/cloudevents-batch+json")
        if trending_late:
            time.sleep(3)  # deliveries to trending are refused meanwhile: its breaker opens, then closes
            self.start_service("trending")
        profile = f"http://127.0.0.1:{self.ports['profile']}"
        trending = f"http://127.0.0.1:{self.ports['trending']}"
        self.wait("profile gets every good event once", lambda: http("GET", f"{profile}/stats")["events"] == len(good))
        self.wait("trending counts every view", lambda: http("GET", f"{trending}/stats")["views"] == len(good) + len(bad))
        # One session's journey (GET /v1/traces/session-2, or `sluice trace session-2`): each of its 12 events
        # delivered to both apps, and the first attempt of those whose id ends in 7 refused by profile.
        def trace(correlation):
            try:
                return http("GET", f"{self.api}/v1/traces/{correlation}")
            except urllib.error.HTTPError:
                return {}
        self.wait("the trace of session-2 is complete", lambda: trace("session-2").get("status") == "complete")
        hops = trace("session-2").get("hops", [])
        events = {h["event_id"] for h in hops if h["kind"] == "event"}
        delivered = {(h["event_id"], h["subscription"]) for h in hops if h["kind"] == "delivery" and h["outcome"] == "delivered"}
        refused = {h["event_id"] for h in hops if h["kind"] == "delivery" and h.get("subscription") == "profile" and h["outcome"] == "http_error"}
        self.check(events == {f"w-{n}" for n in range(2, 60, 5)} and all((e, s) in delivered for e in events for s in ("profile", "trending"))
                   and refused == {f"w-{n}" for n in range(7, 60, 10)},
                   "the trace of session-2 holds its 12 events, each delivered to profile and trending, after one refusal for w-7, w-17, …")
        self.wait("the bad events are in content-events.dlq",
                  lambda: any(t["topic"] == "content-events.dlq" and t["depth"] == len(bad) for t in http("GET", f"{self.api}/v1/dlq")["dlq_topics"]))
        print("\ntrending now:", ", ".join(f"{t['content_id']} ({t['views']})" for t in http("GET", f"{trending}/trending")[:5]))
        # The app still rejects them, and profile allows one replay (max_replays: 1): they are parked as poison.
        replay = http("POST", f"{self.api}/v1/dlq/content-events.dlq/replay", {"subscription": "profile", "rate_limit": 50})
        self.wait("the replay finishes", lambda: http("GET", f"{self.api}/v1/dlq/replays/{replay['id']}")["state"] == "done")
        progress = http("GET", f"{self.api}/v1/dlq/replays/{replay['id']}")
        print(f"replay: {progress['delivered']} delivered, {progress['dead_lettered_again']} dead-lettered again, {progress['poisoned']} poisoned")
        scrape = http("GET", f"{self.metrics}/metrics")
        self.check(f'sluice_poison_events_total{{topic="content-events"}} {len(bad)}' in scrape,
                   f"after a failed replay the {len(bad)} bad events are in content-events.poison")
        self.check(http("GET", f"{profile}/stats")["events"] == len(good), "profile still has each good event exactly once")
        # Rebuild the trending projection from the start of the log: a subscription rewind.
        rewind = http("POST", f"{self.api}/v1/subscriptions/trending/rewind", {"to": "earliest"})
        print(f"rewind {rewind['rewind_id']}: {rewind['events']} events to deliver again to trending")
        self.wait("the trending rewind completes",
                  lambda: (http("GET", f"{self.api}/v1/subscriptions/trending").get("rewind") or {}).get("completed_at") is not None)
        self.wait("trending is rebuilt with every view", lambda: http("GET", f"{trending}/stats")["views"] == len(good) + len(bad))
        stats = http("GET", f"{trending}/stats")
        self.check(stats["rebuilds"] == 1 and stats["rewind"] == rewind["rewind_id"], f"trending rebuilt once from the rewind: {stats}")

    def users(self):
        """The seed's user.registered in three versions: producers still send 1.0 and 1.1, the welcome service reads
        2.0 only, and Sluice upcasts on the way (examples/schemas). Events that fail their schema are refused."""
        self.start_service("welcome")
        users = [("1.0", {}), ("1.0", {}), ("1.1", {"consentGiven": False}), ("1.1", {"consentGiven": True, "marketingOptIn": True}),
                 ("2.0", {"consentGiven": True, "marketingOptIn": True})]
        batch = []
        for n, (version, extra) in enumerate(users):
            data = {"userId": f"user-{n}", "email": f"user{n}@example.com", "name": f"User {n}", "registrationMethod": "email", **extra}
            batch.append({**event("user.registered", data, id_=f"user-{n}", key=f"user-{n}"), "eventversion": version})
        http("POST", f"{self.api}/v1/events", batch, content_type="application/cloudevents-batch+json")
        bad = {**event("user.registered", {"userId": "user-x", "email": "not an address", "name": "X", "registrationMethod": "pigeon"}, id_="user-x"),
               "eventversion": "2.0"}
        try:
            http("POST", f"{self.api}/v1/events", bad, content_type="application/cloudevents+json")
            self.check(False, "an event that fails its schema is refused")
        except urllib.error.HTTPError as error:
            problem = json.loads(error.read())
            self.check(error.code == 400 and {e["keyword"] for e in problem.get("errors", [])} >= {"format", "enum"},
                       f"an event that fails its schema is refused (400: {problem.get('detail', '')[:80]}…)")
        welcome = f"http://127.0.0.1:{self.ports['welcome']}"
        self.wait("welcome gets every user as 2.0", lambda: http("GET", f"{welcome}/stats")["events"] == len(users))
        stats = http("GET", f"{welcome}/stats")
        self.check(stats["upcast_from"] == {"1.0": 2, "1.1": 2} and stats["marketing"] == 2,
                   f"1.0 and 1.1 events were upcast, with marketingOptIn defaulting to false: {stats}")

    def saga_scenario(self, type_, scenario, count):
        flags, expected = SAGA_SCENARIOS[type_][scenario]
        for name in ORDER_SERVICES if type_ == "order" else PAYMENT_SERVICES:
            self.start_service(name, flags.get(name, []))
        if type_ == "order":
            self.start_orders([(f"o-{n + 1}", {"order_id": f"o-{n + 1}", "total_amount": 40 + n, "payment_method": "card",
                                               "items": [{"sku": "book-17", "qty": 1}], "shipping_address": "1 Main St"}) for n in range(count)])
        else:
            self.request_payments([{"user_id": f"u-{n + 1}", "merchant_id": "m-1", "amount": 25 + n} for n in range(count)])
        self.wait_sagas(type_, count)
        sagas = self.show_sagas(type_)
        self.check(len(sagas) == count and all(s["status"] == expected for s in sagas), f"every {type_} saga ended {expected}")

    def everything(self):
        """Every scenario at once, with every outcome, for the dashboards and alerts."""
        for name in ORDER_SERVICES + PAYMENT_SERVICES:
            self.start_service(name)
        item = {"sku": "book-17", "qty": 1}
        orders = [(f"o-{n}", {"order_id": f"o-{n}", "total_amount": 40 + n, "payment_method": "card", "items": [item], "shipping_address": "1 Main St"})
                  for n in range(1, 4)]
        orders += [("o-too-many", {"order_id": "o-too-many", "total_amount": 80, "items": [{"sku": "book-17", "qty": 20}], "shipping_address": "2 Main St"}),
                   ("o-over-limit", {"order_id": "o-over-limit", "total_amount": 20_000, "items": [item], "shipping_address": "3 Main St"}),
                   ("o-no-address", {"order_id": "o-no-address", "total_amount": 6_000, "items": [item], "shipping_address": ""}),
                   ("o-backorder", {"order_id": "o-backorder", "total_amount": 15, "items": [{"sku": "backorder", "qty": 1}], "shipping_address": "4 Main St"})]
        expected_orders = {"o-1": "completed", "o-2": "completed", "o-3": "completed", "o-too-many": "compensated",
                           "o-over-limit": "compensated", "o-no-address": "needs_intervention", "o-backorder": "timed_out"}
        self.start_orders(orders)
        payments = [{"user_id": f"u-{n}", "merchant_id": "m-1", "amount": 25} for n in range(1, 4)]
        payments += [{"user_id": "u-rich-taste", "merchant_id": "m-1", "amount": 900}, {"user_id": "u-blocked", "merchant_id": "m-1", "amount": 30},
                     {"user_id": "u-zero", "merchant_id": "m-1", "amount": 0}]
        self.request_payments(payments)
        for n, outcome in enumerate(["checkout.completed", "checkout.completed", "checkout.failed"]):
            # Keyed by the cart, so one checkout's events stay in order on one partition.
            for type_ in ("checkout.started", outcome):
                http("POST", f"{self.api}/v1/topics/checkout-events/events", event(type_, {"cart": n}, correlation=f"cart-{n}", key=f"cart-{n}"),
                     content_type="application/cloudevents+json")
        self.recommendations(trending_late=True)
        self.users()
        self.wait_sagas("order", len(orders))
        self.wait_sagas("payment", len(payments))
        self.wait_sagas("checkout", 3)
        orders_seen = {s["id"]: s["status"] for s in self.show_sagas("order")}
        self.check(orders_seen == expected_orders, f"order sagas end as planned: {orders_seen}")
        statuses = sorted(s["status"] for s in self.show_sagas("payment"))
        self.check(statuses == ["compensated", "compensated", "completed", "completed", "completed", "failed"], f"payment sagas end as planned: {statuses}")
        checkout = sorted(s["status"] for s in self.sagas("checkout"))
        self.check(checkout == ["completed", "completed", "failed"], f"observed checkout sagas: {checkout}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["recommendations", "users", "order", "payment", "all"])
    parser.add_argument("variant", nargs="?", default="happy")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--hold", type=float, default=0)
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    if args.scenario in SAGA_SCENARIOS and args.variant not in SAGA_SCENARIOS[args.scenario]:
        parser.error(f"{args.scenario} scenarios: {', '.join(SAGA_SCENARIOS[args.scenario])}")
    run = Run(args)
    try:
        run.start_sluice()
        print(f"\n== {args.scenario} {args.variant if args.scenario in SAGA_SCENARIOS else ''}", flush=True)
        if args.scenario == "recommendations":
            run.recommendations()
        elif args.scenario == "users":
            run.users()
        elif args.scenario == "all":
            run.everything()
        else:
            run.saga_scenario(args.scenario, args.variant, args.count)
        scrape = http("GET", f"{run.metrics}/metrics")
        print("\n" + "\n".join(line for line in scrape.splitlines()
                                if line.startswith(("sluice_saga_completions_total", "sluice_dlq_depth", "sluice_poison_events_total"))
                                and not line.endswith(" 0")))
        print(f"\nworkload done: {'OK' if not run.problems else 'UNEXPECTED: ' + '; '.join(run.problems)}", flush=True)
        if args.hold > 0:
            time.sleep(args.hold)
        return 0 if not run.problems else 1
    finally:
        run.stop()


if __name__ == "__main__":
    sys.exit(main())
