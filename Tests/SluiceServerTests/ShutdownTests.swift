import Foundation
import SluiceBroker
import SluiceLog
import Synchronization
import Testing

@Suite("Graceful shutdown")
struct ShutdownTests {
    @Test("SIGTERM under load: exit 0, clean marker, and every acknowledged event is in the log at its offset")
    func sigtermLosesNothing() async throws {
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: sluiceBinary)
            process.arguments = ["serve", "--data-dir", dir + "/data", "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                                 "--acks", "1", "--enable-idempotence", "false", "--linger-ms", "20", "--num-partitions", "3"]
            // Logs go to a file: a pipe nobody drains would fill up and stall the agent's log writes.
            let logPath = dir + "/serve.log"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            var firstLine = ""
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let text = try? String(contentsOfFile: logPath, encoding: .utf8), let newline = text.firstIndex(of: "\n") {
                    firstLine = String(text[..<newline])
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            let start = try #require(try JSONSerialization.jsonObject(with: Data(firstLine.utf8)) as? [String: Any])
            #expect(start["message"] as? String == "sluice started")
            let api = try #require(start["api.address"] as? String)

            let state = LoadState()
            let workers = (0..<8).map { worker in
                Task {
                    var n = 0
                    while !state.stop.load(ordering: .relaxed) {
                        let events = (0..<5).map { cloudEvent("w\(worker)-\(n)-\($0)", key: "k\(worker)-\($0)") }
                        n += 1
                        guard let r = try? await http("POST", "http://\(api)/v1/topics/load/events", headers: batch, body: json(events)), r.status == 200,
                              let results = r.json["results"] as? [[String: Any]] else { continue }
                        state.acknowledged.withLock { acked in
                            for result in results {
                                acked[result["id"] as! String] = (result["partition"] as! Int, result["offset"] as! Int)
                            }
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(1500))
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            state.stop.store(true, ordering: .relaxed)
            for worker in workers { await worker.value }
            #expect(process.terminationReason == .exit)
            #expect(process.terminationStatus == 0)
            #expect(FileManager.default.fileExists(atPath: dir + "/data/.clean_shutdown"))

            let acked = state.acknowledged.withLock { $0 }
            #expect(acked.count > 50, "the load was too light to mean much (\(acked.count) acknowledged)")
            let log = try LogManager.open(dataDirectory: dir + "/data")
            #expect(log.recovery.cleanShutdown)
            let topic = try #require(log.topic("load"))
            var stored: [String: (partition: Int, offset: Int)] = [:]
            for partition in topic.partitions {
                var offset: Int64 = 0
                while offset < partition.logEndOffset {
                    let records = try partition.readRecords(from: offset, maxRecords: 5000)
                    for record in records {
                        if let event = CloudEvent(record: record) { stored[event.id] = (Int(partition.partition), Int(record.offset)) }
                    }
                    offset = records.last!.offset + 1
                }
            }
            for (id, place) in acked {
                #expect(stored[id].map { $0 == place } == true, "acknowledged \(id) at \(place) is \(stored[id].map { "at \($0)" } ?? "missing")")
            }
            try await log.close()
        }
    }
}

extension ShutdownTests {
    @Test("SIGTERM ends long polls at once: a partition read and a group poll waiting 120 s answer, and the agent exits 0 in seconds")
    func sigtermEndsLongPolls() async throws {
        try await withTemporaryDirectory { dir in
            let (process, api) = try await startServeProcess(dir, ["--num-partitions", "1"])
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            let base = "http://\(api)"
            #expect(try await http("POST", base + "/v1/topics", body: json(["name": "quiet", "partitions": 1])).status == 201)
            let joined = try await http("POST", base + "/v1/groups/g/members", body: json(["topics": ["quiet"]]))
            let member = try #require(joined.json["member_id"] as? String, "\(joined.text)")
            let read = Task { try await http("GET", base + "/v1/topics/quiet/partitions/0/events?offset=0&wait_ms=120000") }
            let poll = Task { try await http("POST", base + "/v1/groups/g/members/\(member)/poll?wait_ms=120000") }
            try await Task.sleep(for: .milliseconds(500))
            let signalled = ContinuousClock.now
            kill(process.processIdentifier, SIGTERM)
            let (readResult, pollResult) = (try await read.value, try await poll.value)
            let answered = ContinuousClock.now - signalled
            #expect(readResult.status == 200 && pollResult.status == 200, "\(readResult.text) \(pollResult.text)")
            #expect(answered < .seconds(10), "the long polls answered \(answered) after SIGTERM")
            process.waitUntilExit()
            #expect(process.terminationReason == .exit && process.terminationStatus == 0)
            #expect(ContinuousClock.now - signalled < .seconds(20), "the agent took \(ContinuousClock.now - signalled) to stop")
        }
    }
}

/// Shared between the load workers and the test.
final class LoadState: Sendable {
    let acknowledged = Mutex<[String: (partition: Int, offset: Int)]>([:])
    let stop = Atomic<Bool>(false)
}
