import Foundation
@testable import SluiceBroker
import SluiceLog
@testable import SluiceServer
import Testing

@Suite("HTTP API")
struct APITests {
    @Test("topics: create, list, describe, conflict, delete")
    func topics() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            defer { Task { await agent.stop() } }
            var r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders", "partitions": 4, "config": ["retention.ms": "3600000"]]))
            #expect(r.status == 201)
            #expect((r.json["partitions"] as? [Any])?.count == 4)
            #expect((r.json["config"] as? [String: String])?["retention.ms"] == "3600000")
            r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "orders"]))
            #expect(r.status == 409)
            r = try await http("GET", agent.base + "/v1/topics")
            #expect((r.json["topics"] as? [[String: Any]])?.first?["name"] as? String == "orders")
            r = try await http("GET", agent.base + "/v1/topics/orders")
            let partitions = try #require(r.json["partitions"] as? [[String: Any]])
            #expect(partitions.map { $0["log_end_offset"] as? Int } == [0, 0, 0, 0])
            r = try await http("DELETE", agent.base + "/v1/topics/orders")
            #expect(r.status == 204)
            r = try await http("GET", agent.base + "/v1/topics/orders")
            #expect(r.status == 404)
            #expect(r.header("Content-Type") == "application/problem+json")
            await agent.stop()
        }
    }

    @Test("PATCH /v1/topics/{topic} adds partitions: data stays, a group's member gets the new ones, the same count is a no-op, fewer and bad bodies are refused")
    func addPartitions() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            var r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "grow", "partitions": 2]))
            #expect(r.status == 201)
            let client = GroupClient(base: agent.base)
            try await client.publish("grow", count: 20, prefix: "before")
            let member = try await client.join("g", client: "a", topics: ["grow"])["member_id"] as! String
            #expect(partitions(try await client.poll("g", member).json) == ["grow/0", "grow/1"])

            r = try await http("PATCH", agent.base + "/v1/topics/grow", body: json(["partitions": 5]))
            #expect(r.status == 200, "\(r.text)")
            let grown = try #require(r.json["partitions"] as? [[String: Any]])
            #expect(grown.map { $0["partition"] as? Int } == [0, 1, 2, 3, 4])
            #expect(grown.prefix(2).reduce(0) { $0 + ($1["log_end_offset"] as? Int ?? 0) } == 20, "the old partitions keep their events")
            // Keys hash over five partitions now, and the group rebalances onto them.
            try await client.publish("grow", count: 40, prefix: "after")
            r = try await http("GET", agent.base + "/v1/topics/grow")
            let after = try #require(r.json["partitions"] as? [[String: Any]])
            #expect(after.dropFirst(2).allSatisfy { ($0["log_end_offset"] as? Int ?? 0) > 0 }, "\(after)")
            var assigned: Set<String> = []
            for _ in 0..<40 where assigned.count < 5 {
                assigned = partitions(try await client.poll("g", member).json)
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(assigned == ["grow/0", "grow/1", "grow/2", "grow/3", "grow/4"])

            r = try await http("PATCH", agent.base + "/v1/topics/grow", body: json(["partitions": 5]))
            #expect(r.status == 200 && (r.json["partitions"] as? [Any])?.count == 5, "the current count changes nothing")
            for (body, detail, attribute) in [
                (#"{"partitions": 3}"#, "partitions can only be added: ask for more than 5", "partitions"),
                (#"{"partitions": 0}"#, "an integer from 1 to 10000", "partitions"),
                (#"{"partitions": 7.5}"#, "an integer from 1 to 10000", "partitions"),
                (#"{"partitions": true}"#, "an integer from 1 to 10000", "partitions"),
                (#"{}"#, "an integer from 1 to 10000", "partitions"),
                (#"{"partitions": 6, "config": {}}"#, "'config' cannot be changed here", "config"),
                (#"[6]"#, "must be a JSON object", nil),
            ] as [(String, String, String?)] {
                r = try await http("PATCH", agent.base + "/v1/topics/grow", body: Data(body.utf8))
                #expect(r.status == 400, "\(body)")
                #expect(r.header("Content-Type") == "application/problem+json")
                #expect((r.json["detail"] as? String)?.contains(detail) == true, "\(body): \(r.json["detail"] ?? "-")")
                #expect(r.json["attribute"] as? String == attribute, "\(body)")
            }
            r = try await http("PATCH", agent.base + "/v1/topics/none", body: json(["partitions": 3]))
            #expect(r.status == 404 && (r.json["detail"] as? String)?.contains("topic none does not exist") == true)
            r = try await http("GET", agent.base + "/v1/topics/grow")
            #expect((r.json["partitions"] as? [Any])?.count == 5, "refused requests changed nothing")
            await agent.stop()
        }
    }

    @Test("structured, batched and binary events are stored and read back with offsets, keys and data intact")
    func contentModes() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "1", "--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let url = agent.base + "/v1/topics/orders/events"
            var r = try await http("POST", url, headers: structured, body: json(cloudEvent("s1", key: "cust-1", data: ["total": 42])))
            #expect(r.status == 200)
            #expect((r.json["results"] as? [[String: Any]])?.first?["offset"] as? Int == 0)
            r = try await http("POST", url, headers: batch, body: json([cloudEvent("b1"), cloudEvent("b2", type: "order.paid")]))
            #expect(r.status == 200)
            #expect((r.json["results"] as? [[String: Any]])?.map { $0["offset"] as? Int } == [1, 2])
            r = try await http("POST", url, headers: ["ce-specversion": "1.0", "ce-id": "bin1", "ce-source": "/tests", "ce-type": "blob.stored",
                                                      "ce-partitionkey": "k1", "Content-Type": "application/octet-stream"], body: Data([0, 1, 2, 250]))
            #expect(r.status == 200)

            r = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0&wait_ms=0")
            #expect(r.status == 200)
            let events = try #require(r.json["events"] as? [[String: Any]])
            #expect(events.map { $0["offset"] as? Int } == [0, 1, 2, 3])
            let first = try #require(events[0]["event"] as? [String: Any])
            #expect(first["id"] as? String == "s1")
            #expect(first["partitionkey"] as? String == "cust-1")
            #expect((first["data"] as? [String: Any])?["total"] as? Int == 42)
            #expect((events[2]["event"] as? [String: Any])?["type"] as? String == "order.paid")
            let binary = try #require(events[3]["event"] as? [String: Any])
            #expect(binary["data_base64"] as? String == "AAEC+g==")
            #expect(binary["datacontenttype"] as? String == "application/octet-stream")
            #expect(r.json["next_offset"] as? Int == 4)
            r = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=2&max=1&wait_ms=0")
            #expect((r.json["events"] as? [[String: Any]])?.map { $0["offset"] as? Int } == [2])
            await agent.stop()
        }
    }

    @Test("POST /v1/events routes by event type, with a default topic")
    func routing() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--route", "user.*=user-events", "--route", "order.*=order-events", "--default-topic", "misc", "--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let r = try await http("POST", agent.base + "/v1/events", headers: batch,
                                   body: json([cloudEvent("1", type: "user.created"), cloudEvent("2", type: "order.paid"), cloudEvent("3", type: "audit.done")]))
            #expect(r.status == 200)
            #expect((r.json["results"] as? [[String: Any]])?.map { $0["topic"] as? String } == ["user-events", "order-events", "misc"])
            await agent.stop()
        }
    }

    @Test("each bad input gets the right status and a problem body that says what was wrong", arguments: [
        ("POST", "/v1/topics/t/events", structured, #"{"specversion":"1.0","source":"/s","type":"x"}"#, 400, "required attribute 'id' is missing", "id"),
        ("POST", "/v1/topics/t/events", structured, #"{"specversion":"1.0","id":"1","source":"/s","type":"x","time":"noon"}"#, 400, "not an RFC 3339", "time"),
        ("POST", "/v1/topics/t/events", structured, #"{"specversion":"1.0""#, 400, "not valid JSON", nil),
        ("POST", "/v1/topics/t/events", batch, #"{"specversion":"1.0"}"#, 400, "must be a JSON array", nil),
        ("POST", "/v1/topics/t/events", batch, #"[{"specversion":"1.0","id":"1","source":"/s","type":"x"},{"id":"2"}]"#, 400, "event 1: required attribute 'specversion'", "specversion"),
        ("POST", "/v1/topics/t/events", ["Content-Type": "text/plain"], "hello", 415, "is not a CloudEvents mode", nil),
        ("POST", "/v1/topics/bad%2Fname/events", structured, #"{"specversion":"1.0","id":"1","source":"/s","type":"x"}"#, 400, "topic name contains '%'", "topic"),
        ("POST", "/v1/topics", ["Content-Type": "application/json"], #"{"name":"x","partitions":0}"#, 400, "'partitions' must be an integer", "partitions"),
        ("POST", "/v1/topics", ["Content-Type": "application/json"], #"{"name":"x","config":{"segment.bites":"1"}}"#, 400, "unknown topic property 'segment.bites'", nil),
        ("GET", "/v1/topics/none/partitions/0/events?wait_ms=0", [:], "", 404, "topic none does not exist", nil),
        ("GET", "/v1/topics/t/partitions/0/events?offset=-4", [:], "", 400, "offset=-4 must be an integer", "offset"),
        ("GET", "/v1/nothing", [:], "", 404, "no route for GET /v1/nothing", nil),
    ] as [(String, String, [String: String], String, Int, String, String?)])
    func badInput(method: String, path: String, headers: [String: String], body: String, status: Int, detail: String, attribute: String?) async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            defer { Task { await agent.stop() } }
            let r = try await http(method, agent.base + path, headers: headers.merging(["X-Correlation-ID": "bad-1"]) { a, _ in a }, body: body.isEmpty ? nil : Data(body.utf8))
            #expect(r.status == status)
            #expect(r.header("Content-Type") == "application/problem+json")
            #expect(r.json["status"] as? Int == status)
            #expect((r.json["type"] as? String)?.hasPrefix("urn:sluice:problem:") == true)
            #expect((r.json["title"] as? String)?.isEmpty == false)
            #expect((r.json["detail"] as? String)?.contains(detail) == true, "detail: \(r.json["detail"] ?? "-")")
            #expect(r.json["attribute"] as? String == attribute)
            #expect(r.json["correlation_id"] as? String == "bad-1")
            #expect(r.header("X-Correlation-ID") == "bad-1")
            await agent.stop()
        }
    }

    @Test("413 over max.request.size, 429 with Retry-After when buffer.memory is full")
    func limits() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--max-request-size", "4096", "--buffer-memory", "4096", "--linger-ms", "1500", "--num-partitions", "1"])
            defer { Task { await agent.stop() } }
            let url = agent.base + "/v1/topics/t/events"
            var r = try await http("POST", url, headers: structured, body: json(cloudEvent("big", data: String(repeating: "x", count: 5000))))
            #expect(r.status == 413)
            #expect((r.json["detail"] as? String)?.contains("max.request.size") == true)
            let pending = Task { try await http("POST", url, headers: structured, body: json(cloudEvent("one", data: String(repeating: "y", count: 2500)))) }
            try await Task.sleep(for: .milliseconds(400))
            r = try await http("POST", url, headers: structured, body: json(cloudEvent("two", data: String(repeating: "z", count: 2500))))
            #expect(r.status == 429)
            #expect(r.header("Retry-After") == "1")
            #expect(try await pending.value.status == 200)
            await agent.stop()
        }
    }

    @Test("with api.token every call but health needs the bearer token")
    func auth() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--api-token", "s3cret-s3cret-s3cret"])
            defer { Task { await agent.stop() } }
            var r = try await http("GET", agent.base + "/v1/topics")
            #expect(r.status == 401)
            #expect(r.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            r = try await http("GET", agent.base + "/v1/topics", headers: ["Authorization": "Bearer wrong"])
            #expect(r.status == 401)
            r = try await http("GET", agent.base + "/v1/topics", headers: ["Authorization": "Bearer s3cret-s3cret-s3cret"])
            #expect(r.status == 200)
            r = try await http("GET", agent.base + "/healthz")
            #expect(r.status == 200)
            r = try await http("GET", agent.base + "/readyz")
            #expect(r.status == 200)
            await agent.stop()
        }
    }

    @Test("every response carries a Date header of the current second and the listener's Server name; the probes answer JSON")
    func standardHeaders() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            defer { Task { await agent.stop() } }
            // Foundation's own parser of the RFC 9110 form is the oracle for the agent's libc formatting.
            let parser = DateFormatter()
            parser.locale = Locale(identifier: "en_US_POSIX")
            parser.timeZone = TimeZone(identifier: "GMT")
            parser.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            for (url, server, body) in [(agent.base + "/v1/topics", "sluice", nil), (agent.base + "/healthz", "sluice", #"{"status":"up"}"#),
                                        ("http://\(agent.metricsAddress)/readyz", "sluice-metrics", #"{"status":"ready"}"#),
                                        ("http://\(agent.metricsAddress)/healthz", "sluice-metrics", #"{"status":"up"}"#)] {
                let before = Date().timeIntervalSince1970.rounded(.down)
                let r = try await http("GET", url)
                let after = Date().timeIntervalSince1970
                #expect(r.status == 200, "\(url)")
                #expect(r.header("Server") == server, "\(url)")
                let date = try #require(r.header("Date"), "\(url)")
                let parsed = try #require(parser.date(from: date), "\(url): \(date) is not an IMF-fixdate")
                #expect(parsed.timeIntervalSince1970 >= before && parsed.timeIntervalSince1970 <= after, "\(url): \(date)")
                if let body { #expect(String(decoding: r.body, as: UTF8.self) == body, "\(url)") }
            }
            // RFC 9110's own example, and the one-digit fields padded.
            #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
            #expect(HTTPDate.format(1_780_000_000) == parser.string(from: Date(timeIntervalSince1970: 1_780_000_000)))
            await agent.stop()
        }
    }

    @Test("without a loadable libsnappy: compression.type=snappy stops startup with exit 2, and a snappy topic is refused at creation, naming the package; other topics work")
    func snappyMissing() async throws {
        try await withTemporaryDirectory { dir in
            // The dynamic loader looks in LD_LIBRARY_PATH first: an empty libsnappy.so.1 there fails to load ("file too short").
            let libraries = dir + "/libraries"
            try FileManager.default.createDirectory(atPath: libraries, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: libraries + "/libsnappy.so.1", contents: Data()))
            let broken = ["LD_LIBRARY_PATH": libraries]

            let refused = try runProcess("/usr/bin/env", ["LD_LIBRARY_PATH=" + libraries, sluiceBinary, "serve", "--data-dir", dir + "/refused",
                                                          "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "off",
                                                          "--compression-type", "snappy"])
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("compression.type=snappy (from flag --compression-type)") && refused.stderr.contains("libsnappy")
                    && refused.stderr.contains("apt-get install libsnappy1v5"), "\(refused.stderr)")

            let agent = try await startServed(dir, ["--num-partitions", "1", "--linger-ms", "0"], environment: broken)
            defer { agent.stop() }
            var r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "squeezed", "partitions": 1, "config": ["compression.type": "snappy"]]))
            #expect(r.status == 400)
            #expect(r.text.contains("compression.type=snappy cannot be used here") && r.text.contains("apt-get install libsnappy1v5"), "\(r.text)")
            r = try await http("GET", agent.base + "/v1/topics/squeezed")
            #expect(r.status == 404)
            // Other codecs are unaffected.
            r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "zipped", "partitions": 1, "config": ["compression.type": "zstd"]]))
            #expect(r.status == 201)
            r = try await http("POST", agent.base + "/v1/topics/zipped/events", headers: structured, body: json(cloudEvent("z1", data: ["total": 1])))
            #expect(r.status == 200)
        }
    }

    @Test("the agent maps libsnappy (and the C++ runtime it brings) only once a topic asks for snappy")
    func snappyOpenedOnFirstUse() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1", "--linger-ms", "0"])
            defer { agent.stop() }
            func maps() throws -> String { try agent.memoryMap() }
            #expect(try maps().contains("/sluice"), "the maps of the agent process")
            #expect(try !maps().contains("libsnappy"), "libsnappy is mapped before any snappy batch")
            var r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "squeezed", "partitions": 1, "config": ["compression.type": "snappy"]]))
            #expect(r.status == 201)
            r = try await http("POST", agent.base + "/v1/topics/squeezed/events", headers: structured, body: json(cloudEvent("s1", data: ["total": 42])))
            #expect(r.status == 200)
            #expect(try maps().contains("libsnappy"), "libsnappy is not mapped after a snappy batch")
            r = try await http("GET", agent.base + "/v1/topics/squeezed/partitions/0/events?offset=0&wait_ms=0")
            let events = try #require(r.json["events"] as? [[String: Any]])
            #expect(events.map { ($0["event"] as? [String: Any])?["id"] as? String } == ["s1"])
            let dump = try runProcess(sluiceBinary, ["dump", "--data-dir", dir + "/data", "--topic", "squeezed", "--batches-only"])
            #expect(dump.stdout.contains("\"codec\":\"snappy\""), "\(dump.stdout)\(dump.stderr)")
        }
    }

    @Test("a long poll returns as soon as an event arrives")
    func longPoll() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "1", "--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            _ = try await http("POST", agent.base + "/v1/topics", body: json(["name": "t", "partitions": 1]))
            let started = Date()
            let poll = Task { try await http("GET", agent.base + "/v1/topics/t/partitions/0/events?offset=0&wait_ms=20000") }
            try await Task.sleep(for: .milliseconds(300))
            _ = try await http("POST", agent.base + "/v1/topics/t/events", headers: structured, body: json(cloudEvent("late")))
            let r = try await poll.value
            #expect((r.json["events"] as? [[String: Any]])?.count == 1)
            #expect(Date().timeIntervalSince(started) < 10)
            await agent.stop()
        }
    }

    @Test("one correlation id from publish to read: echoed, stored in the event, on every log line of its journey")
    func correlation() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--num-partitions", "1", "--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            let url = agent.base + "/v1/topics/t/events"
            var r = try await http("POST", url, headers: structured.merging(["X-Correlation-ID": "journey-42"]) { a, _ in a }, body: json(cloudEvent("c1")))
            #expect(r.header("X-Correlation-ID") == "journey-42")
            // The extension wins over the header; traceparent's trace id is the fallback.
            r = try await http("POST", url, headers: structured.merging(["X-Correlation-ID": "header-id"]) { a, _ in a },
                               body: json(cloudEvent("c2", extra: ["correlationid": "from-event"])))
            #expect(r.header("X-Correlation-ID") == "from-event")
            r = try await http("POST", url, headers: structured.merging(["traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]) { a, _ in a },
                               body: json(cloudEvent("c3")))
            #expect(r.header("X-Correlation-ID") == "4bf92f3577b34da6a3ce929d0e0e4736")

            r = try await http("GET", agent.base + "/v1/topics/t/partitions/0/events?offset=0&wait_ms=0")
            let events = try #require(r.json["events"] as? [[String: Any]]).map { $0["event"] as! [String: Any] }
            #expect(events.map { $0["correlationid"] as? String } == ["journey-42", "from-event", "4bf92f3577b34da6a3ce929d0e0e4736"])
            #expect(events[2]["traceparent"] as? String == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            await agent.stop()

            let lines = try agent.logLines()
            let journey = lines.filter { $0["correlation_id"] as? String == "journey-42" }
            let messages = journey.compactMap { $0["message"] as? String }
            #expect(messages.contains("event published"))
            #expect(messages.contains("event read"))
            #expect(messages.contains("request handled"))
            let read = try #require(journey.first { $0["message"] as? String == "event read" })
            #expect(read["event.id"] as? String == "c1")
            #expect(read["topic"] as? String == "t")
            #expect(read["offset"] as? Int == 0)
            let traced = try #require(lines.first { $0["message"] as? String == "event published" && $0["event.id"] as? String == "c3" })
            #expect(traced["trace.id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
            #expect(traced["span.id"] as? String == "00f067aa0ba902b7")
            // Every line is complete JSON with the core fields.
            #expect(lines.allSatisfy { $0["@timestamp"] != nil && $0["log.level"] != nil && $0["service.name"] as? String == "sluice" })
        }
    }
}
