#!/usr/bin/env python3
"""A real OTLP/HTTP trace receiver for the tests: decodes each POST /v1/traces body with the official
OpenTelemetry protos (PyPI opentelemetry-proto) and appends one JSON line per span to the file given.

Usage: otlp_receiver.py SPANS_FILE   (prints "PORT <n>" once it listens on 127.0.0.1; stops when stdin closes)
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
out_path = sys.argv[1]
lock = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(400)
            self.end_headers()
            self.wfile.write(f"expected POST /v1/traces with application/x-protobuf, got {self.path} {self.headers.get('Content-Type')}".encode())
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        lines = []
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name, "kind": KINDS.get(span.kind, str(span.kind)),
                        "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                        "status": {0: "unset", 1: "ok", 2: "error"}.get(span.status.code), "status_message": span.status.message,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "service": resource.get("service.name"),
                    }))
        with lock, open(out_path, "a") as out:
            for line in lines:
                out.write(line + "\n")
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"PORT {server.server_address[1]}", flush=True)
sys.stdin.read()  # the test closes stdin (or dies) and the receiver goes with it
server.shutdown()
