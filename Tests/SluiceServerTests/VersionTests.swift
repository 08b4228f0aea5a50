import Foundation
import SluiceBroker
import SluiceTelemetry
import Testing

/// The seed's user.registered in three versions, with its EventVersioningStrategy as upcasters.
enum SeedVersions {
    /// v1.0 events have exactly these members (so none can hold a consent field already).
    static let v1_0 = #"{"type": "object", "properties": {"# + UserRegistered.properties + #"}, "required": ["userId", "email", "name", "registrationMethod"], "additionalProperties": false}"#
    static let v1_1 = #"{"type": "object", "properties": {"# + UserRegistered.properties
        + #", "consentGiven": {"type": "boolean"}, "marketingOptIn": {"type": "boolean"}}, "required": ["userId", "email", "name", "registrationMethod", "consentGiven"]}"#
    /// Legacy (1.0) users consented; marketing is off unless a 1.1 event says otherwise.
    static let settings = #"""
    {"compatibility": "backward", "upcasters": [
      {"from": "1.0", "to": "1.1", "operations": [{"op": "set", "path": "/consentGiven", "value": true}]},
      {"from": "1.1", "to": "2.0", "operations": [{"op": "default", "path": "/marketingOptIn", "value": false}]}
    ]}
    """#

    /// A --schemas directory with 1.0, 1.1, 2.0 and user.registered.json.
    static func directory(in dir: String, settings: String? = SeedVersions.settings) throws -> String {
        let schemas = dir + "/schemas"
        try FileManager.default.createDirectory(atPath: schemas + "/user.registered", withIntermediateDirectories: true)
        try v1_0.write(toFile: schemas + "/user.registered/1.0.json", atomically: true, encoding: .utf8)
        try v1_1.write(toFile: schemas + "/user.registered/1.1.json", atomically: true, encoding: .utf8)
        try UserRegistered.v2.write(toFile: schemas + "/user.registered/2.0.json", atomically: true, encoding: .utf8)
        if let settings { try settings.write(toFile: schemas + "/user.registered.json", atomically: true, encoding: .utf8) }
        return schemas
    }

    static func v1_0Data(_ n: Int) -> [String: Any] { UserRegistered.data(n, v2: false) }

    static func v1_1Data(_ n: Int, consent: Bool) -> [String: Any] {
        var data = UserRegistered.data(n, v2: false)
        data["consentGiven"] = consent
        return data
    }
}

@Suite("Event versions and upcasters", .serialized)
struct VersionTests {
    @Test("the seed's migrations end to end: 1.0 and 1.1 events published, a subscriber on latest receives 2.0 with the defaults filled in; reads take ?version=")
    func seedEndToEnd() async throws {
        try await withTemporaryDirectory { dir in
            let schemas = try SeedVersions.directory(in: dir)
            let app = TestApp()
            try await app.start()
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--schemas", schemas, "--schema-validation", "enforce", "--schema-compatibility", "none"])
            let client = DeliveryClient(base: agent.base)
            do {
                #expect(try await http("POST", agent.base + "/v1/topics", body: json(["name": "users", "partitions": 1])).status == 201)
                #expect(try await client.subscribe("welcome", subscriptionBody(app, topics: ["users"], extra: ["version": "latest"])).status == 201)
                try await client.publish("users", [
                    UserRegistered.event("v10", SeedVersions.v1_0Data(1), version: "1.0"),
                    UserRegistered.event("v11", SeedVersions.v1_1Data(2, consent: false), version: "1.1"),
                    UserRegistered.event("v11-opt-in", SeedVersions.v1_1Data(3, consent: true).merging(["marketingOptIn": true]) { $1 }, version: "1.1"),
                    UserRegistered.event("v20", UserRegistered.data(4), version: "2.0"),
                    UserRegistered.event("unversioned", UserRegistered.data(5), version: nil),
                ])
                #expect(try await app.waitFor { $0.count == 5 })
                let received = Dictionary(app.received.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                func data(_ id: String) -> [String: Any] { (try? JSONSerialization.jsonObject(with: Data(received[id]?.body ?? []))) as? [String: Any] ?? [:] }
                for (id, consent, marketing, from) in [("v10", true, false, "1.0"), ("v11", false, false, "1.1"), ("v11-opt-in", true, true, "1.1"),
                                                       ("v20", true, false, nil), ("unversioned", true, false, nil)] as [(String, Bool, Bool, String?)] {
                    #expect(data(id)["consentGiven"] as? Bool == consent && data(id)["marketingOptIn"] as? Bool == marketing, "\(id): \(data(id))")
                    #expect(data(id)["userId"] != nil && data(id)["registrationMethod"] as? String == "email", "the rest of \(id) is kept")
                    #expect(received[id]?.headers["x-sluice-upcast-from"] == from, "\(id): \(received[id]?.headers ?? [:])")
                    if id != "unversioned" { #expect(received[id]?.headers["ce-eventversion"] == "2.0", "\(id) is delivered as 2.0") }
                }
                let scrape = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
                #expect(scrape.contains(#"sluice_events_upcast_total{type="user.registered",from="1.0",to="2.0"} 1"#), "\(scrape.split(separator: "\n").filter { $0.contains("upcast") })")
                #expect(scrape.contains(#"sluice_events_upcast_total{type="user.registered",from="1.1",to="2.0"} 2"#))

                // Reads: as published, as the latest version, as 1.1 (2.0 events cannot go back).
                func read(_ query: String) async throws -> [[String: Any]] {
                    let r = try await http("GET", agent.base + "/v1/topics/users/partitions/0/events?offset=0&max=10" + query)
                    #expect(r.status == 200, "\(r.text)")
                    return r.json["events"] as? [[String: Any]] ?? []
                }
                func event(_ item: [String: Any]) -> [String: Any] { item["event"] as? [String: Any] ?? [:] }
                let published = try await read("")
                #expect(published.count == 5 && (event(published[0])["data"] as? [String: Any])?["consentGiven"] == nil && published[0]["upcast_from"] == nil)
                let latest = try await read("&version=latest")
                #expect(latest.map { event($0)["eventversion"] as? String } == ["2.0", "2.0", "2.0", "2.0", nil])
                #expect(latest.map { $0["upcast_from"] as? String } == ["1.0", "1.1", "1.1", nil, nil])
                #expect((event(latest[0])["data"] as? [String: Any])?["marketingOptIn"] as? Bool == false)
                let old = try await read("&version=1.1")
                #expect((event(old[0])["data"] as? [String: Any])?["consentGiven"] as? Bool == true && (event(old[0])["data"] as? [String: Any])?["marketingOptIn"] == nil)
                #expect(event(old[1])["eventversion"] as? String == "1.1" && old[1]["upcast_from"] == nil)
                let error = old[3]["error"] as? [String: Any] ?? [:]
                #expect(old[3]["event"] == nil && error["type"] as? String == "unsupported_event_version"
                        && (error["message"] as? String ?? "").contains("no upcaster chain takes user.registered 2.0 to 1.1"), "\(old[3])")
                let bad = try await http("GET", agent.base + "/v1/topics/users/partitions/0/events?offset=0&version=")
                #expect(bad.status == 400 && (bad.json["detail"] as? String ?? "").contains("version must be latest or a version"), "\(bad.text)")
                #expect(try await client.deadLetters("users.dlq").isEmpty)
            } catch {
                await agent.stop()
                await app.stop()
                throw error
            }
            await agent.stop()
            await app.stop()
        }
    }

    @Test("an event with no path to the subscription's version goes to the DLQ as unsupported_event_version; with an upcaster added, its replay is delivered")
    func unsupportedVersions() async throws {
        try await withAppAndAgent(["--linger-ms", "0", "--schema-compatibility", "none"]) { dir, app, agent, client in
            for (version, schema) in [("1.0", SeedVersions.v1_0), ("1.1", SeedVersions.v1_1), ("2.0", UserRegistered.v2)] {
                #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered/\(version)", body: Data(schema.utf8)).status == 201)
            }
            // No compatibility mode here: 0.9 is added later and is not backward compatible.
            let upcastersOnly = SeedVersions.settings.replacingOccurrences(of: #""compatibility": "backward", "#, with: "")
            #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered", body: Data(upcastersOnly.utf8)).status == 201)
            #expect(try await client.subscribe("latest", subscriptionBody(app, topics: ["users"], extra: ["version": "latest"])).status == 201)
            #expect(try await client.subscribe("pinned", subscriptionBody(app, topics: ["users"], extra: ["version": "1.1", "group": "pinned"])).status == 201)
            // Validation is off: 0.9 is published, but no one knows how to read it.
            try await client.publish("users", [UserRegistered.event("ancient", SeedVersions.v1_0Data(1), version: "0.9"),
                                               UserRegistered.event("new", UserRegistered.data(2), version: "2.0")])
            #expect(try await client.waitUntil { try await client.deadLetters("users.dlq").count == 3 })
            let letters = try await client.deadLetters("users.dlq")
            let summary = Set(letters.map { "\($0["subscription"]!) \($0["error_type"]!)" })
            #expect(summary == ["latest unsupported_event_version", "pinned unsupported_event_version"], "\(letters)")
            let pinnedNew = letters.first { $0["subscription"] as? String == "pinned" && ($0["error_message"] as? String ?? "").contains("2.0 to 1.1") }
            #expect(pinnedNew != nil, "there is no downcasting: \(letters.map { $0["error_message"]! })")
            #expect(letters.contains { ($0["error_message"] as? String ?? "").contains("no upcaster chain takes user.registered 0.9 to 2.0") })
            // Neither subscription was sent an event it could not read; latest got the 2.0 one.
            #expect(app.received.map(\.id) == ["new"], "\(app.received.map(\.id))")
            func lines() throws -> [[String: Any]] {
                try agent.logLines().filter { $0["message"] as? String == "event dead-lettered" && $0["error.type"] as? String == "unsupported_event_version" }
            }
            #expect(try await client.waitUntil { try lines().count == 3 })
            let deadLettered = try lines()
            #expect(deadLettered.count == 3 && deadLettered.allSatisfy { $0["event.type"] as? String == "user.registered" }, "\(deadLettered)")

            // 0.9 gets a schema and an upcaster to 1.0: the replay delivers it as 2.0.
            let v0_9 = #"{"type": "object", "required": ["userId"]}"#
            #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered/0.9", body: Data(v0_9.utf8)).status == 201)
            let settings = upcastersOnly.replacingOccurrences(of: #""upcasters": ["#, with: #""upcasters": [{"from": "0.9", "to": "1.0", "operations": []},"#)
            #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered", body: Data(settings.utf8)).status == 200)
            let progress = try await client.replay("users.dlq", ["subscription": "latest"])
            #expect(progress["delivered"] as? Int == 1, "\(progress)")
            let replayed = try #require(app.received.first { $0.id == "ancient" })
            #expect(replayed.headers["ce-eventversion"] == "2.0" && replayed.headers["x-sluice-upcast-from"] == "0.9", "\(replayed.headers)")
        }
    }

    @Test("type settings: per-type compatibility, upcasters over HTTP and from TYPE.json; bad ones refused with the file or field and the reason; kept across restarts")
    func settings() async throws {
        try await withTemporaryDirectory { dir in
            let serve = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0", "--kafka-address", "off"]
            // The type's own mode applies though the agent's is none: 2.0 requires consent fields 1.0 events lack.
            var schemas = try SeedVersions.directory(in: dir, settings: #"{"compatibility": "backward"}"#)
            var result = try await runSluice(serve + ["--schemas", schemas], in: dir)
            #expect(result.status == 2 && result.stderr.contains("user.registered/1.1.json: not backward compatible with 1.0"), "\(result.stderr)")
            for (settings, words) in [
                (#"{"upcasters": [{"from": "1.0", "to": "1.1", "operations": [{"op": "upsert", "path": "/a"}]}]}"#, "user.registered.json: upcasters[0].operations[0].op: unknown operation 'upsert'"),
                (#"{"upcasters": [{"from": "1.0", "to": "3.0", "operations": []}]}"#, "user.registered.json: upcasters[0]: user.registered has no schema for version 3.0"),
                (#"{"upcasters": [{"from": "2.0", "to": "1.0", "operations": []}]}"#, "upcasters go from an older version to a newer one, and 2.0 is not older than 1.0"),
                (#"{"compatibility": "sideways"}"#, "user.registered.json: compatibility: one of none, backward, forward, full"),
                (#"{"versions": []}"#, "user.registered.json: unknown field 'versions'"),
            ] {
                try settings.write(toFile: schemas + "/user.registered.json", atomically: true, encoding: .utf8)
                result = try await runSluice(serve + ["--schemas", schemas], in: dir)
                #expect(result.status == 2 && result.stderr.contains(words), "\(settings): \(result.stderr)")
            }
            try FileManager.default.removeItem(atPath: schemas)
            schemas = try SeedVersions.directory(in: dir)
            var agent = try await startAgent(dir, ["--schemas", schemas])
            var r = try await http("GET", agent.base + "/v1/schemas/user.registered")
            #expect(r.json["settings_source"] as? String == "directory" && (r.json["upcasters"] as? [Any])?.count == 2 && r.json["compatibility"] as? String == "backward", "\(r.text)")
            #expect(try await http("PUT", agent.base + "/v1/schemas/user.registered", body: Data("{}".utf8)).status == 409)
            #expect(try await http("DELETE", agent.base + "/v1/schemas/user.registered").status == 409)
            await agent.stop()

            // At runtime: order.placed 2 requires total, which 1 does not.
            agent = try await startAgent(dir, ["--linger-ms", "0", "--schema-compatibility", "none"])
            let v1 = #"{"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}, "additionalProperties": false}"#
            let v2 = #"{"type": "object", "required": ["orderId", "total"], "properties": {"orderId": {"type": "string"}, "total": {"type": "number", "minimum": 0}}}"#
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.placed/1", body: Data(v1.utf8)).status == 201)
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.placed/2", body: Data(v2.utf8)).status == 201)
            r = try await http("PUT", agent.base + "/v1/schemas/order.placed", body: Data(#"{"compatibility": "backward"}"#.utf8))
            #expect(r.status == 409 && (r.json["detail"] as? String ?? "").contains("order.placed 2 is not backward compatible with 1: /required: 'total' is required by 2"), "\(r.text)")
            r = try await http("PUT", agent.base + "/v1/schemas/order.placed", body: Data(#"{"compatibility": "backward", "upcasters": [{"from": "1", "to": "2", "operations": [{"op": "set", "path": "/total", "value": -1}]}]}"#.utf8))
            #expect(r.status == 409 && (r.json["detail"] as? String ?? "").contains("2 does not accept -1"), "a default the new version refuses: \(r.text)")
            r = try await http("PUT", agent.base + "/v1/schemas/order.placed", body: Data(#"{"upcasters": [{"from": "1", "to": "2", "operations": [{"op": "sett", "path": "/total"}]}]}"#.utf8))
            #expect(r.status == 400 && (r.json["detail"] as? String ?? "").contains("upcasters[0].operations[0].op: unknown operation 'sett'"), "\(r.text)")
            let good = #"{"compatibility": "backward", "upcasters": [{"from": "1", "to": "2", "operations": [{"op": "default", "path": "/total", "value": 0}]}]}"#
            #expect(try await http("PUT", agent.base + "/v1/schemas/order.placed", body: Data(good.utf8)).status == 201)
            // Now the type's own backward mode guards its versions.
            r = try await http("PUT", agent.base + "/v1/schemas/order.placed/3", body: Data(#"{"type": "object", "required": ["orderId", "total", "currency"]}"#.utf8))
            #expect(r.status == 409 && (r.json["detail"] as? String ?? "").contains("'currency' is required by 3"), "\(r.text)")
            r = try await http("DELETE", agent.base + "/v1/schemas/order.placed/1")
            #expect(r.status == 409 && (r.json["detail"] as? String ?? "").contains("used by the upcaster from 1 to 2"), "\(r.text)")

            await agent.stop()
            agent = try await startAgent(dir, ["--linger-ms", "0"])
            r = try await http("GET", agent.base + "/v1/schemas/order.placed")
            #expect(r.status == 200 && r.json["compatibility"] as? String == "backward" && r.json["versions"] as? [String] == ["1", "2"]
                    && (r.json["upcasters"] as? [[String: Any]])?.first?["from"] as? String == "1" && r.json["settings_source"] as? String == "api", "\(r.text)")
            try await DeliveryClient(base: agent.base).publish("orders", [cloudEvent("o1", type: "order.placed", data: ["orderId": "1"], extra: ["eventversion": "1"])])
            r = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0&version=latest")
            let item = (r.json["events"] as? [[String: Any]])?.first ?? [:]
            #expect(((item["event"] as? [String: Any])?["data"] as? [String: Any])?["total"] as? Int == 0 && item["upcast_from"] as? String == "1", "\(r.text)")
            #expect(try await http("DELETE", agent.base + "/v1/schemas/order.placed").status == 204)
            #expect(try await http("GET", agent.base + "/v1/schemas/order.placed").json["settings_source"] as? String == "none")
            #expect(try await http("DELETE", agent.base + "/v1/schemas/order.placed").status == 404)
            await agent.stop()
        }
    }
}
