#!/usr/bin/env python3
"""Runs one saga scenario end to end: Sluice, the participant services, a few sagas, and the outcome.

    python3 examples/sagas/run.py order happy            # or fail-payment, fail-inventory, fail-shipping,
                                                         #    timeout-inventory, stuck-refund
    python3 examples/sagas/run.py payment fail-process   # or happy, fail-validate, fail-balance, fail-merchant,
                                                         #    fail-notify, stuck-refund
Options: --count N sagas (default 5), --keep (leave the data directory and logs), --api-port/--metrics-port.
The sluice binary is $SLUICE, else .build/release/sluice or .build/debug/sluice, else it is built. Exit code 0
when every saga ended as the scenario expects.
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
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# saga -> services (config placeholder, service name), and scenario -> (participant flags per service, outcome)
SAGAS = {
    "order": {
        "services": ["order", "payment", "inventory", "shipping"],
        "scenarios": {
            "happy": ({}, "completed"),
            "fail-payment": ({"payment": ["--fail", "payment.process"]}, "compensated"),
            "fail-inventory": ({"inventory": ["--fail", "inventory.reserve"]}, "compensated"),
            "fail-shipping": ({"shipping": ["--fail", "shipping.schedule"]}, "compensated"),
            "timeout-inventory": ({"inventory": ["--silent", "inventory.reserve"]}, "timed_out"),
            "stuck-refund": ({"shipping": ["--fail", "shipping.schedule"], "payment": ["--fail", "payment.refund"]}, "needs_intervention"),
        },
    },
    "payment": {
        "services": ["validation", "wallet", "processor", "merchant", "notification"],
        "scenarios": {
            "happy": ({}, "completed"),
            "fail-validate": ({"validation": ["--fail", "payment.validate"]}, "failed"),
            "fail-balance": ({"wallet": ["--fail", "balance.reserve"]}, "compensated"),
            "fail-process": ({"processor": ["--fail", "payment.execute"]}, "compensated"),
            "fail-merchant": ({"merchant": ["--fail", "merchant.balance.update"]}, "compensated"),
            "fail-notify": ({"notification": ["--fail", "notification.send"]}, "compensated"),
            "stuck-refund": ({"merchant": ["--fail", "merchant.balance.update"], "processor": ["--fail", "payment.execution.refund"]}, "needs_intervention"),
        },
    },
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text.startswith(b"{") else text.decode()


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("saga", choices=sorted(SAGAS))
    parser.add_argument("scenario", nargs="?", default="happy")
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    saga = SAGAS[args.saga]
    if args.scenario not in saga["scenarios"]:
        parser.error(f"scenario {args.scenario} is not one of {', '.join(saga['scenarios'])}")
    flags, expected = saga["scenarios"][args.scenario]

    work = tempfile.mkdtemp(prefix=f"sluice-{args.saga}-saga-")
    api_port, metrics_port = args.api_port or free_port(), args.metrics_port or free_port()
    api, metrics = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}"
    ports = {name: free_port() for name in saga["services"]}
    config = open(os.path.join(HERE, f"{args.saga}-saga.yaml")).read()
    for name, port in ports.items():
        config = config.replace(f"@{name.upper()}_PORT@", str(port))
    config_path = os.path.join(work, "sluice.yaml")
    open(config_path, "w").write(config)

    children = []

    def stop():
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    try:
        log = open(os.path.join(work, "participants.log"), "w")
        for name in saga["services"]:
            children.append(subprocess.Popen(
                [sys.executable, os.path.join(HERE, "participant.py"), "serve", "--service", name, "--port", str(ports[name]),
                 "--sluice", api] + flags.get(name, []), stdout=log, stderr=subprocess.STDOUT))
        children.append(subprocess.Popen(
            [sluice_binary(), "serve", "--config", config_path, "--data-dir", os.path.join(work, "data"),
             "--api-address", f"127.0.0.1:{api_port}", "--metrics-address", f"127.0.0.1:{metrics_port}",
             "--log-file", os.path.join(work, "sluice.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        deadline = time.time() + 60
        while True:
            try:
                if http("GET", f"{metrics}/readyz"):
                    break
            except OSError:
                pass
            if time.time() > deadline or children[-1].poll() is not None:
                sys.exit(f"sluice did not start; see {work}/sluice.log")
            time.sleep(0.1)
        print(f"{args.saga} saga, scenario {args.scenario}: sluice on {api} (metrics {metrics}), data in {work}")

        ids = []
        for n in range(args.count):
            if args.saga == "order":
                answer = http("POST", f"{api}/v1/sagas/order", {
                    "order_id": f"o-{n + 1}", "total_amount": 40 + n, "payment_method": "card",
                    "items": [{"sku": "book-17", "qty": 1}], "shipping_address": "1 Main St"})
                ids.append(answer["id"])
            else:
                # The payment saga starts on a payment.requested event; its id is derived from the event.
                http("POST", f"{api}/v1/topics/payments/events", {
                    "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/examples/checkout", "type": "payment.requested",
                    "correlationid": f"checkout-{n + 1}", "data": {"user_id": f"u-{n + 1}", "merchant_id": "m-1", "amount": 25 + n}},
                    content_type="application/cloudevents+json")

        deadline = time.time() + 60
        sagas = []
        while time.time() < deadline:
            sagas = http("GET", f"{api}/v1/sagas?type={args.saga}&limit=1000")["sagas"]
            if len(sagas) >= args.count and all(s["status"] not in ("running", "compensating") for s in sagas):
                break
            time.sleep(0.2)

        print(f"\n{'SAGA':38} {'STATUS':20} {'FAILED STEP':18} DURATION")
        for s in sorted(sagas, key=lambda s: s["started_at"]):
            print(f"{s['id']:38} {s['status']:20} {s.get('failed_step') or '-':18} {s.get('duration_seconds') or 0:.3f} s")
        if sagas:
            detail = http("GET", f"{api}/v1/sagas/{sagas[0]['id']}")
            print(f"\nsteps of {detail['id']}:")
            for step in detail["steps"]:
                compensation = step.get("compensation")
                note = f", compensation {compensation['status']} after {compensation['attempts']} attempt(s)" if compensation else ""
                print(f"  {step['name']:24} {step['status']:10} {step.get('reply_type') or ''}{note}")
        scrape = http("GET", f"{metrics}/metrics")
        print("\n" + "\n".join(line for line in scrape.splitlines()
                                if line.startswith(("sluice_saga_started_total", "sluice_saga_completions_total", "sluice_sagas_in_flight"))
                                and f'saga_type="{args.saga}"' in line and not line.endswith(" 0")))
        ok = len(sagas) == args.count and all(s["status"] == expected for s in sagas)
        print(f"\n{'OK' if ok else 'UNEXPECTED'}: expected every saga to end {expected}")
        return 0 if ok else 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
