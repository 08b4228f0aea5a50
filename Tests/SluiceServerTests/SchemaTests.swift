import Foundation
import SluiceBroker
import SluiceTelemetry
import Testing

/// The seed's user.registered data, as v1.0 (no consent fields), v1.1 (consentGiven) and v2.0 (both, required).
enum UserRegistered {
    static let properties = #"""
    "userId": {"type": "string"}, "email": {"type": "string", "format": "email"}, "name": {"type": "string"},
    "registrationMethod": {"type": "string", "enum": ["email", "social", "mobile"]}, "referralSource": {"type": "string"},
    "initialPreferences": {"type": "array", "items": {"type": "string"}}
    """#
    static let v1 = #"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"# + properties + #"}, "required": ["userId", "email", "name", "registrationMethod"]}"#
    static let v2 = #"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"# + properties
        + #", "consentGiven": {"type": "boolean"}, "marketingOptIn": {"type": "boolean"}}, "required": ["userId", "email", "name", "registrationMethod", "consentGiven", "marketingOptIn"]}"#

    static func data(_ n: Int, email: String? = nil, v2: Bool = true) -> [String: Any] {
        var data: [String: Any] = ["userId": "u-\(n)", "email": email ?? "user\(n)@example.com", "name": "User \(n)", "registrationMethod": "email"]
        if v2 { data["consentGiven"] = true; data["marketingOptIn"] = false }
        return data
    }

    static func event(_ id: String, _ data: [String: Any], version: String? = "2.0") -> [String: Any] {
        cloudEvent(id, type: "user.registered", data: data, extra: version.map { ["eventversion": $0] } ?? [:])
    }

    /// A --schemas directory with v1.0 and v2.0.
    static func directory(in dir: String) throws -> String {
        let schemas = dir + "/schemas"
        try FileManager.default.createDirectory(atPath: schemas + "/user.registered", withIntermediateDirectories: true)
        try v1.write(toFile: schemas + "/user.registered/1.0.json", atomically: true, encoding: .utf8)
        try v2.write(toFile: schemas + "/user.registered/2.0.json", atomically: true, encoding: .utf8)
        return schemas
    }
}

@Suite("Event schemas", .serialized)
struct SchemaTests {
    func publish(_ base: String, _ topic: String, _ events: [[String: Any]]) async throws -> HTTPResult {
        try await http("POST", base + "/v1/topics/\(topic)/events", headers: batch, body: json(events))
    }

    @Test("enforce: a batch with events that fail their schema gets 400 naming every failure (pointer, keyword), and nothing of it is written")
    func enforce() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try UserRegistered.directory(in: dir)
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--schemas", schemas, "--schema-validation", "enforce"])
            defer { Task { await agent.stop() } }
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "users", "partitions": 1])).status == 201)

            var r = try await publish(agent.base, "users", [UserRegistered.event("ok-1", UserRegistered.data(1))])
            #expect(r.status == 200, "\(r.text)")
            var bad = UserRegistered.data(2, email: "not-an-address")
            bad["registrationMethod"] = "pigeon"
            var missing = UserRegistered.data(3)
            missing.removeValue(forKey: "name")
            r = try await publish(agent.base, "users", [UserRegistered.event("ok-2", UserRegistered.data(4)), UserRegistered.event("bad-2", bad), UserRegistered.event("bad-3", missing)])
            #expect(r.status == 400, "\(r.text)")
            let errors = r.json["errors"] as? [[String: Any]] ?? []
            let summary = Set(errors.map { "\($0["index"]!) \($0["id"]!) \($0["pointer"]!) \($0["keyword"]!) \($0["version"]!)" })
            #expect(summary == ["1 bad-2 /email format 2.0", "1 bad-2 /registrationMethod enum 2.0", "2 bad-3  required 2.0"], "\(r.text)")
            #expect((r.json["detail"] as? String ?? "").contains("2 event(s) do not match their schema, so nothing was published"), "\(r.text)")
            #expect(try await http("GET", agent.base + "/v1/topics/users").json["partitions"].map { ($0 as! [[String: Any]])[0]["log_end_offset"] as? Int } == 1,
                    "only the first request's event was written")

            // The version: the eventversion extension, else dataschema's last segment, else the latest; unknown versions are refused.
            r = try await publish(agent.base, "users", [UserRegistered.event("v1", UserRegistered.data(5, v2: false), version: "1.0")])
            #expect(r.status == 200, "a v1.0 event needs no consent fields: \(r.text)")
            r = try await publish(agent.base, "users", [UserRegistered.event("v1-latest", UserRegistered.data(6, v2: false), version: nil)])
            #expect(r.status == 400 && (r.json["errors"] as? [[String: Any]])?.first?["version"] as? String == "2.0", "no version: the latest applies: \(r.text)")
            var viaSchema = UserRegistered.event("ds", UserRegistered.data(7, v2: false), version: nil)
            viaSchema["dataschema"] = "https://schemas.example.com/user.registered/1.0.json"
            #expect(try await publish(agent.base, "users", [viaSchema]).status == 200)
            r = try await publish(agent.base, "users", [UserRegistered.event("v3", UserRegistered.data(8), version: "3.0")])
            let unknown = (r.json["errors"] as? [[String: Any]])?.first
            #expect(r.status == 400 && unknown?["keyword"] as? String == "version" && (unknown?["message"] as? String ?? "").contains("registered versions: 1.0, 2.0"), "\(r.text)")
            // Types without schemas are not checked; nor is a topic whose schema.validation is off.
            #expect(try await publish(agent.base, "users", [cloudEvent("other", type: "user.deleted")]).status == 200)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "raw", "partitions": 1, "config": ["schema.validation": "off"]])).status == 201)
            #expect(try await publish(agent.base, "raw", [UserRegistered.event("bad-raw", bad)]).status == 200)

            let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            #expect(sample(scrape, "sluice_schema_validations_total", ["topic": "users", "type": "user.registered", "version": "2.0", "result": "invalid"]) == 3, "\(scrape.split(separator: "\n").filter { $0.contains("schema_validations") })")
            #expect(sample(scrape, "sluice_schema_validations_total", ["topic": "users", "type": "user.registered", "version": "_unknown", "result": "unknown_version"]) == 1)
            #expect(sample(scrape, "sluice_schema_validations_total", ["topic": "users", "type": "user.registered", "version": "1.0", "result": "valid"]) == 2)
            let warned = try agent.logLines().filter { $0["message"] as? String == "event refused: its data does not match its schema" }
            #expect(warned.contains { $0["schema.pointer"] as? String == "/email" && $0["schema.keyword"] as? String == "format" && $0["event.id"] as? String == "bad-2" }, "\(warned)")
            await agent.stop()
        }
    }

    @Test("warn publishes and logs; a topic's schema.validation overrides the agent's")
    func warn() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try UserRegistered.directory(in: dir)
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--schemas", schemas])
            defer { Task { await agent.stop() } }
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "users", "partitions": 1, "config": ["schema.validation": "warn"]])).status == 201)
            let bad = UserRegistered.event("bad", UserRegistered.data(1, email: "nope"))
            #expect(try await publish(agent.base, "users", [bad]).status == 200)
            let lines = try agent.logLines().filter { $0["message"] as? String == "event data does not match its schema (schema.validation=warn: published anyway)" }
            #expect(lines.count == 1 && lines[0]["schema.keyword"] as? String == "format", "\(lines)")
            // The agent's default is off: another topic is not checked.
            #expect(try await publish(agent.base, "others", [bad]).status == 200)
            #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "strict", "partitions": 1, "config": ["schema.validation": "enforce"]])).status == 201)
            #expect(try await publish(agent.base, "strict", [bad]).status == 400)
            let r = try await http("POST", agent.base + "/v1/topics", body: json(["name": "typo", "partitions": 1, "config": ["schema.validation": "strict"]]))
            #expect(r.status == 400 && r.text.contains("off, warn, enforce"), "\(r.text)")
            await agent.stop()
        }
    }

    @Test("schemas over HTTP: register, show, list, replace, remove; bad schemas are refused with the reason; directory schemas are read-only; kept across restarts")
    func registry() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try UserRegistered.directory(in: dir)
            var agent = try await startAgent(dir, ["--schemas", schemas, "--schema-validation", "enforce"])
            var r = try await http("PUT", agent.base + "/v1/schemas/order.created/1", body: Data(#"{"type": "object", "required": ["orderId"]}"#.utf8))
            #expect(r.status == 201, "\(r.text)")
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.created/1", body: Data(#"{"type": "object", "required": ["orderId", "total"]}"#.utf8)).status == 200)
            r = try await http("GET", agent.base + "/v1/schemas/order.created/1")
            #expect(r.status == 200 && (r.json["required"] as? [String]) == ["orderId", "total"], "\(r.text)")
            r = try await http("GET", agent.base + "/v1/schemas")
            let listed = (r.json["schemas"] as? [[String: Any]] ?? []).map { "\($0["type"]!) \($0["latest"]!)" }
            #expect(listed == ["order.created 1", "user.registered 2.0"], "\(r.text)")
            #expect(try await publish(agent.base, "orders", [cloudEvent("o1", type: "order.created", data: ["orderId": "1"])]).status == 400)

            for (body, words) in [(#"{"type": "strin"}"#, "'strin' is not a type"), ("{not json", "not JSON"), (#"{"minLength": -1}"#, "#/minLength: must be a non-negative integer"), (#"{"required": [1]}"#, "#/required: must be an array of strings"),
                                 (#"{"required": ["a", "a"]}"#, "not a valid draft-07 schema: at /required")] {
                r = try await http("PUT", agent.base + "/v1/schemas/order.created/2", body: Data(body.utf8))
                #expect(r.status == 400 && (r.json["detail"] as? String ?? "").contains(words), "\(body): \(r.text)")
            }
            r = try await http("PUT", agent.base + "/v1/schemas/order created/2", body: Data("{}".utf8))
            #expect(r.status == 400 || r.status == 404, "\(r.text)")
            #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered/2.0", body: Data("{}".utf8)).status == 409)
            #expect(try await http("DELETE", agent.base + "/v1/schemas/user.registered/2.0").status == 409)
            #expect(try await http("GET", agent.base + "/v1/schemas/user.registered/9").status == 404)

            // After a restart the runtime schema is still there and still enforced.
            await agent.stop()
            agent = try await startAgent(dir, ["--schemas", schemas, "--schema-validation", "enforce"])
            #expect(try await http("GET", agent.base + "/v1/schemas/order.created/1").status == 200)
            #expect(try await publish(agent.base, "orders", [cloudEvent("o2", type: "order.created", data: ["orderId": "2", "total": 5])]).status == 200)
            #expect(try await http("DELETE", agent.base + "/v1/schemas/order.created/1").status == 204)
            #expect(try await http("GET", agent.base + "/v1/schemas/order.created/1").status == 404)
            #expect(try await publish(agent.base, "orders", [cloudEvent("o3", type: "order.created", data: ["anything": true])]).status == 200)
            await agent.stop()
        }
    }

    @Test("schema.compatibility: an incompatible version is refused with 409 over HTTP and with exit 2 from the directory, naming the field")
    func compatibility() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try UserRegistered.directory(in: dir)
            // The seed's v2.0 requires consent fields v1.0 events lack: not backward compatible.
            let serve = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "off"]
            let result = try await runSluice(serve + ["--schemas", schemas, "--schema-compatibility", "backward"], in: dir)
            #expect(result.status == 2 && result.stderr.contains("user.registered/2.0.json: not backward compatible with 1.0")
                && result.stderr.contains("/properties/consentGiven: 2.0 constrains 'consentGiven', which 1.0 lets be anything"), "\(result.stderr)")

            let agent = try await startAgent(dir, ["--schema-compatibility", "backward"])
            defer { Task { await agent.stop() } }
            let v1 = #"{"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}}}"#
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.placed/1", body: Data(v1.utf8)).status == 201)
            let optional = #"{"type": "object", "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}}}"#
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.placed/2", body: Data(optional.utf8)).status == 201, "dropping a requirement is backward compatible")
            let stricter = #"{"type": "object", "required": ["orderId", "total"], "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}}}"#
            let r = try await http("PUT", agent.base + "/v1/schemas/order.placed/3", body: Data(stricter.utf8))
            #expect(r.status == 409 && (r.json["detail"] as? String ?? "").contains("not backward compatible with 2 (schema.compatibility): /required: 'orderId' is required by 3 but not by 2"), "\(r.text)")
            #expect(try await http("GET", agent.base + "/v1/schemas/order.placed/3").status == 404)
            await agent.stop()
        }
    }

    @Test("a bad --schemas directory stops sluice serve with exit 2, naming the file and the reason; sluice schemas check validates offline")
    func commands() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try UserRegistered.directory(in: dir)
            let serve = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "off"]
            try #"{"type": "object", "properties": {"a": {"type": "strin"}}}"#.write(toFile: schemas + "/user.registered/3.0.json", atomically: true, encoding: .utf8)
            var result = try await runSluice(serve + ["--schemas", schemas], in: dir)
            #expect(result.status == 2 && result.stderr.contains("user.registered/3.0.json: #/properties/a/type: 'strin' is not a type"), "\(result.stderr)")
            try "[]".write(toFile: schemas + "/user.registered/3.0.json", atomically: true, encoding: .utf8)
            result = try await runSluice(serve + ["--schemas", schemas], in: dir)
            #expect(result.status == 2 && result.stderr.contains("3.0.json: #: a schema must be an object or a boolean"), "\(result.stderr)")
            try FileManager.default.removeItem(atPath: schemas + "/user.registered/3.0.json")
            result = try await runSluice(serve + ["--schemas", dir + "/nowhere"], in: dir)
            #expect(result.status == 2 && result.stderr.contains("not a directory"), "\(result.stderr)")

            let events = [UserRegistered.event("good", UserRegistered.data(1)), UserRegistered.event("bad", UserRegistered.data(2, email: "x"))]
            try String(decoding: json(events), as: UTF8.self).write(toFile: dir + "/events.json", atomically: true, encoding: .utf8)
            result = try await runSluice(["schemas", "check", dir + "/events.json", "--schemas", schemas, "--type", "user.registered", "--version", "2.0"], in: dir)
            #expect(result.status == 1 && result.stdout.contains("#1 (bad) /email: must be a valid email [format at #/properties/email/format]") && result.stdout.contains("1 of 2 valid"),
                    "\(result.stdout) \(result.stderr)")
            result = try await runSluice(["schemas", "check", dir + "/events.json", "--schema", schemas + "/user.registered/1.0.json"], in: dir)
            #expect(result.status == 1, "\(result.stdout)")
            try String(decoding: json([UserRegistered.data(3)]), as: UTF8.self).write(toFile: dir + "/data.json", atomically: true, encoding: .utf8)
            result = try await runSluice(["schemas", "check", dir + "/data.json", "--schemas", schemas, "--type", "user.registered"], in: dir)
            #expect(result.status == 0 && result.stdout.contains("1 of 1 valid against user.registered 2.0"), "\(result.stdout) \(result.stderr)")
            for bad in [["--schemas", schemas], ["--type", "user.registered"], ["--schemas", schemas, "--type", "nope"], ["--schema", dir + "/missing.json"]] {
                result = try await runSluice(["schemas", "check", dir + "/data.json"] + bad, in: dir)
                #expect(result.status == 2 && !result.stderr.isEmpty, "\(bad): \(result.status) \(result.stderr)")
            }
        }
    }
}
