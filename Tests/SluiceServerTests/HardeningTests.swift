import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@_spi(FaultInjection) import SluiceLog
import SluiceBroker
import Testing

/// What a hostile or unlucky client does: each case failed before its fix (issue 12).
@Suite("Hardening", .serialized)
struct HardeningTests {
    @Test("a replay with a rate that would overflow a Duration is a 400, and the agent lives on")
    func tinyReplayRate() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            defer { Task { await agent.stop() } }
            for rate in [1e-300, 5e-21, 0.0001, 2e6] {
                let r = try await http("POST", agent.base + "/v1/dlq/orders.dlq/replay", headers: ["Content-Type": "application/json"],
                                       body: json(["rate_limit": rate]))
                #expect(r.status == 400, "rate \(rate): \(r.text)")
                #expect(r.json["attribute"] as? String == "rate_limit")
            }
            #expect(try await http("GET", agent.base + "/healthz").status == 200)
            await agent.stop()
        }
    }

    @Test("invalid UTF-8 inside JSON strings is refused with 400 naming where; binary bodies stay opaque bytes")
    func invalidUTF8() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            let prefix: [UInt8] = Array(#"{"specversion":"1.0","source":"/t","type":"x.y","#.utf8)
            let inData: [UInt8] = prefix + Array(#""id":"a","data":{"name":"ab"#.utf8) + [0xC3, 0x28] + Array(#""}}"#.utf8)
            let inId: [UInt8] = prefix + Array(#""id":"a"#.utf8) + [0xFF] + Array(#"","data":1}"#.utf8)
            for body in [Data(inData), Data(inId)] {
                let r = try await http("POST", agent.base + "/v1/topics/utf/events", headers: structured, body: body)
                #expect(r.status == 400, "\(r.text)")
                #expect((r.json["detail"] as? String)?.contains("not valid UTF-8") == true, "\(r.text)")
            }
            // Binary mode: the body is the data, any bytes.
            let bytes = Data([0xFF, 0xFE, 0x00, 0xC3])
            let ok = try await http("POST", agent.base + "/v1/topics/utf/events", headers: [
                "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/t", "ce-type": "x.y", "Content-Type": "application/octet-stream",
            ], body: bytes)
            #expect(ok.status == 200, "\(ok.text)")
            // Every read of the partition is still valid JSON.
            let partition = (ok.json["results"] as? [[String: Any]])?.first?["partition"] as? Int ?? 0
            let read = try await http("GET", agent.base + "/v1/topics/utf/partitions/\(partition)/events?offset=0")
            #expect(read.status == 200)
            #expect((try? JSONSerialization.jsonObject(with: read.body)) != nil, "\(read.text)")
            await agent.stop()
        }
    }

    @Test("correlation ids are capped at 200 bytes in both forms; refused publishes create no metric series")
    func boundedIdsAndSeries() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            let long = String(repeating: "c", count: 201)
            var r = try await http("POST", agent.base + "/v1/topics/ids/events", headers: structured,
                                   body: json(cloudEvent("e1", extra: ["correlationid": long])))
            #expect(r.status == 400 && r.json["attribute"] as? String == "correlationid", "\(r.text)")
            r = try await http("POST", agent.base + "/v1/topics/ids/events", headers: structured.merging(["X-Correlation-ID": long]) { $1 },
                               body: json(cloudEvent("e2")))
            #expect(r.status == 400 && r.json["attribute"] as? String == "X-Correlation-ID", "\(r.text)")
            #expect((r.header("X-Correlation-ID")?.count ?? 0) <= 200)
            r = try await http("POST", agent.base + "/v1/topics/ids/events", headers: structured.merging(["X-Correlation-ID": String(long.dropLast())]) { $1 },
                               body: json(cloudEvent("e3")))
            #expect(r.status == 200, "\(r.text)")

            for i in 0..<50 {
                let bad = try await http("POST", agent.base + "/v1/topics/bad%20name\(i)/events", headers: structured, body: json(cloudEvent("x\(i)")))
                #expect(bad.status == 400 || bad.status == 404, "\(bad.text)")
            }
            _ = try await http("POST", agent.base + "/v1/topics/ids/events", headers: structured,
                               body: json(cloudEvent("e4", type: String(repeating: "t", count: 300))))
            let metrics = try await http("GET", "http://\(agent.metricsAddress)/metrics").text
            let published = metrics.split(separator: "\n").filter { $0.hasPrefix("sluice_events_published_total{") }
            #expect(!published.contains { $0.contains("bad name") || $0.contains("bad%20name") }, "\(published)")
            #expect(!published.contains { $0.contains(String(repeating: "t", count: 101)) }, "\(published)")
            #expect(published.contains { $0.contains("topic=\"ids\"") && $0.contains("event_type=\"other\"") }, "\(published)")
            await agent.stop()
        }
    }

    @Test("a full disk answers 507 without file paths, keeps nothing of the request, and the next publish works")
    func fullDiskProblem() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            var r = try await http("POST", agent.base + "/v1/topics/disk/events", headers: structured, body: json(cloudEvent("d0", key: "k")))
            #expect(r.status == 200)
            FileFaults.arm(failAt: 1, calls: [.write], under: dir + "/data/topics/disk/", sticky: true)
            r = try await http("POST", agent.base + "/v1/topics/disk/events", headers: structured, body: json(cloudEvent("d1", key: "k")))
            FileFaults.disarm()
            #expect(r.status == 507, "\(r.text)")
            #expect(!r.text.contains(dir), "the problem body shows a server path: \(r.text)")
            #expect(r.header("Retry-After") != nil)
            r = try await http("POST", agent.base + "/v1/topics/disk/events", headers: structured, body: json(cloudEvent("d2", key: "k")))
            #expect(r.status == 200, "\(r.text)")
            let result = (r.json["results"] as? [[String: Any]])?.first
            #expect(result?["offset"] as? Int == 1, "the refused event's offset must not be used: \(r.text)")
            let read = try await http("GET", agent.base + "/v1/topics/disk/partitions/\(result?["partition"] as? Int ?? 0)/events?offset=0").text
            #expect(read.contains(#""id":"d0""#) && read.contains(#""id":"d2""#) && !read.contains(#""id":"d1""#), "\(read)")
            await agent.stop()
        }
    }

    @Test("concurrent subscription PUTs and DELETEs all succeed and the saved file matches what is active")
    func concurrentSubscriptionChanges() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            let statuses = await withTaskGroup(of: Int.self) { group -> [Int] in
                for i in 0..<20 {
                    group.addTask {
                        let body = json(["topics": ["subs"], "endpoint": "http://127.0.0.1:9/hook\(i)"])
                        let put = try? await http("PUT", agent.base + "/v1/subscriptions/s\(i)", headers: ["Content-Type": "application/json"], body: body)
                        if i % 2 == 0 { return (try? await http("DELETE", agent.base + "/v1/subscriptions/s\(i)"))?.status ?? 0 }
                        return put?.status ?? 0
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == 200 || $0 == 201 || $0 == 204 }, "\(statuses)")
            let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/data/subscriptions.json"))) as? [[String: Any]]
            #expect(Set(saved?.compactMap { $0["name"] as? String } ?? []) == Set((0..<20).filter { $0 % 2 == 1 }.map { "s\($0)" }))
            await agent.stop()
        }
    }

    @Test("group.max.count and subscription.max.count refuse new names with 409, keep known ones working, and add no series")
    func boundedGroupsAndSubscriptions() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--group-max-count", "3", "--subscription-max-count", "2"])
            var members: [String: String] = [:]
            for group in ["g0", "g1"] {
                let r = try await http("POST", agent.base + "/v1/groups/\(group)/members", body: json(["topics": ["capped"]]))
                #expect(r.status == 201, "\(r.text)")
                members[group] = r.json["member_id"] as? String
            }
            // A group with offsets but no members counts too.
            #expect(try await http("POST", agent.base + "/v1/groups/g2/offsets", body: json(["offsets": [["topic": "capped", "partition": 0, "offset": 0]]])).status == 200)
            var r = try await http("POST", agent.base + "/v1/groups/g3/members", body: json(["topics": ["capped"]]))
            #expect(r.status == 409 && r.text.contains("group.max.count"), "\(r.text)")
            r = try await http("POST", agent.base + "/v1/groups/g4/offsets", body: json(["offsets": [["topic": "capped", "partition": 0, "offset": 0]]]))
            #expect(r.status == 409 && r.text.contains("group.max.count"), "\(r.text)")
            // Known groups keep working; deleting one makes room.
            #expect(try await http("POST", agent.base + "/v1/groups/g0/members", body: json(["topics": ["capped"]])).status == 201)
            #expect(try await http("DELETE", agent.base + "/v1/groups/g2").status == 204)
            #expect(try await http("POST", agent.base + "/v1/groups/g3/members", body: json(["topics": ["capped"]])).status == 201)

            let hook = { (name: String) in json(["topics": ["capped"], "endpoint": "http://127.0.0.1:9/\(name)"]) }
            for name in ["s0", "s1"] {
                #expect(try await http("PUT", agent.base + "/v1/subscriptions/\(name)", headers: ["Content-Type": "application/json"], body: hook(name)).status == 201)
            }
            r = try await http("PUT", agent.base + "/v1/subscriptions/s2", headers: ["Content-Type": "application/json"], body: hook("s2"))
            #expect(r.status == 409 && r.text.contains("subscription.max.count"), "\(r.text)")
            #expect(try await http("PUT", agent.base + "/v1/subscriptions/s1", headers: ["Content-Type": "application/json"], body: hook("s1-changed")).status == 200)
            #expect(try await http("GET", agent.base + "/v1/subscriptions/s2").status == 404)
            let rendered = String(decoding: agent.metrics.render(), as: UTF8.self)
            #expect(!rendered.contains("group=\"g4\"") && !rendered.contains("subscription=\"s2\""))
            await agent.stop()
        }
    }

    @Test("a subscription PUT that cannot be saved (full disk) changes nothing")
    func subscriptionNotSaved() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir)
            FileFaults.arm(failAt: 1, calls: [.write], under: dir + "/data/subscriptions.json", sticky: true)
            let r = try await http("PUT", agent.base + "/v1/subscriptions/lost", headers: ["Content-Type": "application/json"],
                                   body: json(["topics": ["subs"], "endpoint": "http://127.0.0.1:9/hook"]))
            FileFaults.disarm()
            #expect(r.status == 507, "\(r.text)")
            #expect(try await http("GET", agent.base + "/v1/subscriptions/lost").status == 404)
            await agent.stop()
        }
    }

    @Test("a flood of idle connections and unsent bodies cannot take health or metrics down, and is cleared by the timeouts")
    func connectionFlood() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--http-max-connections", "40", "--http-idle-timeout-ms", "1500", "--http-body-timeout-ms", "1500"])
            let (host, port) = Self.split(agent.api)
            // 300 idle connections and 20 that announce a body and never send it.
            var sockets = (0..<300).compactMap { _ in Self.connect(host, port) }
            for _ in 0..<20 {
                guard let fd = Self.connect(host, port) else { continue }
                Self.send(fd, "POST /v1/topics/flood/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 5000\r\n\r\n{")
                sockets.append(fd)
            }
            #expect(sockets.count >= 300)
            // The metrics listener has its own limit: health and metrics answer during the flood.
            #expect(try await http("GET", "http://\(agent.metricsAddress)/healthz").status == 200)
            #expect(try await http("GET", "http://\(agent.metricsAddress)/metrics").status == 200)
            // Once the timeouts close the flood, the API answers again, without a restart.
            var answered = false
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, !answered {
                try await Task.sleep(for: .milliseconds(500))
                var request = URLRequest(url: URL(string: agent.base + "/healthz")!)
                request.timeoutInterval = 2
                answered = ((try? await URLSession.shared.data(for: request))?.1 as? HTTPURLResponse)?.statusCode == 200
            }
            #expect(answered, "the API did not answer after the idle and body timeouts")
            // The server closed the flooded connections: a read sees the end of the stream.
            let closed = sockets.prefix(50).filter { Self.isClosedByPeer($0) }.count
            #expect(closed >= 40, "only \(closed) of 50 flood connections were closed by the agent")
            for fd in sockets { close(fd) }
            await agent.stop()
        }
    }

    @Test("topics that would need more file descriptors than the limit are refused clearly, and so is a start under a lower limit")
    func descriptorBudget() async throws {
        try await withTemporaryDirectory { dir in
            // A child process under a hard limit of 300: 10 connections per listener leave about 200 for partitions.
            let flags = "--http-max-connections 10 --api-address 127.0.0.1:0 --metrics-address 127.0.0.1:0 --data-dir \(dir)/data"
            let serve = Process()
            serve.executableURL = URL(fileURLWithPath: "/bin/bash")
            serve.arguments = ["-c", "ulimit -n 300 && exec \(sluiceBinary) serve \(flags)"]
            let logPath = dir + "/serve.log"
            FileManager.default.createFile(atPath: logPath, contents: nil)
            serve.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            try serve.run()
            defer { if serve.isRunning { kill(serve.processIdentifier, SIGKILL) } }
            var api: String?
            for _ in 0..<300 where api == nil {
                try await Task.sleep(for: .milliseconds(50))
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let address = object["api.address"] as? String, (try? await http("GET", "http://\(address)/readyz"))?.status == 200 {
                    api = address
                }
            }
            let base = "http://\(try #require(api))"
            let tooMany = try await http("POST", base + "/v1/topics", headers: ["Content-Type": "application/json"], body: json(["name": "wide", "partitions": 250]))
            #expect(tooMany.status == 507, "\(tooMany.text)")
            #expect((tooMany.json["detail"] as? String)?.contains("open files") == true, "\(tooMany.text)")
            let fits = try await http("POST", base + "/v1/topics", headers: ["Content-Type": "application/json"], body: json(["name": "narrow", "partitions": 150]))
            #expect(fits.status == 201, "\(fits.text)")
            kill(serve.processIdentifier, SIGTERM)
            serve.waitUntilExit()
            #expect(serve.terminationStatus == 0)

            // The same data directory under a limit of 150: refused at start, saying what is needed.
            let again = try runProcess("/bin/bash", ["-c", "ulimit -n 150 && exec \(sluiceBinary) serve \(flags) 2>&1"])
            #expect(again.status != 0)
            #expect(again.stdout.contains("raise it to at least") && again.stdout.contains("the limit is 150"), "\(again.stdout)")
        }
    }

    static func split(_ address: String) -> (String, UInt16) {
        let colon = address.lastIndex(of: ":")!
        return (String(address[..<colon]), UInt16(address[address.index(after: colon)...])!)
    }

    static func connect(_ host: String, _ port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { Glibc.send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
    }

    /// Whether the peer has closed: a non-blocking read returns 0 (end of stream) or a reset.
    static func isClosedByPeer(_ fd: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { continue }  // a response written before closing
            return n == 0 || errno == ECONNRESET
        }
    }
}
