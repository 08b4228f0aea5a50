import Foundation
@testable import SluiceLog
import Testing

/// A child process appends with fsync-before-ack and prints each acknowledgement; the test kills it with
/// SIGKILL at random moments and checks, after every restart, that each acknowledged record is present exactly
/// once at the offset it was acknowledged with, and that the log verifies clean.
@Suite("Crash safety")
struct CrashTests {
    struct Ack: Hashable {
        var partition: Int32
        var offset: Int64
    }

    static let kills = 60

    @Test("kill -9 at random moments never loses or duplicates an acknowledged record")
    func killNineRepeatedly() async throws {
        try await withTemporaryDirectory { dir in
            let data = dir + "/data"
            var acked: [String: Ack] = [:]
            var generator = SystemRandomNumberGenerator()
            var recoveredUnclean = 0
            for run in 0..<Self.kills {
                let ackPath = dir + "/acks-\(run).txt"
                _ = FileManager.default.createFile(atPath: ackPath, contents: nil)
                let output = try FileHandle(forWritingTo: URL(fileURLWithPath: ackPath))
                let child = Process()
                child.executableURL = URL(fileURLWithPath: sluiceBinary)
                child.arguments = ["crash-writer", "--data-dir", data, "--run", "\(run)", "--writers", "4"]
                child.standardOutput = output
                child.standardError = FileHandle.nullDevice
                try child.run()
                // Kill at a random moment after it is appending (or, sometimes, while it is still recovering).
                let ready = await Self.waitForReady(ackPath, timeout: 20)
                #expect(ready, "run \(run): the writer never became ready")
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...120, using: &generator)))
                kill(child.processIdentifier, SIGKILL)
                child.waitUntilExit()
                try output.close()
                #expect(child.terminationReason == .uncaughtSignal)

                for line in try String(contentsOfFile: ackPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true) {
                    let parts = line.split(separator: " ")
                    guard parts.count == 4, parts[0] == "ACK" else { continue }
                    acked[String(parts[3])] = Ack(partition: Int32(parts[1])!, offset: Int64(parts[2])!)
                }
                // Alternate between leaving the directory as the crash left it and closing it cleanly, so the
                // writer's next start exercises both the recovery scan and the clean-marker path.
                let unclean = try await Self.verify(data, acked: acked, closeCleanly: run % 2 == 1)
                if unclean { recoveredUnclean += 1 }
                let report = try LogChecker.check(dataDirectory: data, repair: false)
                let damaged = report.filter { !$0.isClean }
                #expect(damaged.isEmpty, "run \(run): fsck found \(damaged)")
            }
            #expect(recoveredUnclean == Self.kills, "every verification open followed a kill")
            #expect(acked.count > Self.kills * 5, "too few acknowledged records (\(acked.count)) for the test to mean much")
        }
    }

    static func waitForReady(_ path: String, timeout: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: path, encoding: .utf8), text.contains("READY") { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    /// Opens the data directory (recovering it), checks every acknowledged record, and returns whether the
    /// open was a crash recovery.
    static func verify(_ data: String, acked: [String: Ack], closeCleanly: Bool) async throws -> Bool {
        let manager = try LogManager.open(dataDirectory: data)
        var seen: [String: [Ack]] = [:]
        if let topic = manager.topic("crash") {
            for log in topic.partitions {
                for record in try allRecords(log) {
                    let id = record.headers.first { $0.key == "id" }.flatMap { $0.value }.map { String(decoding: $0, as: UTF8.self) } ?? "?"
                    seen[id, default: []].append(Ack(partition: log.partition, offset: record.offset))
                }
            }
        }
        for (id, where_) in acked {
            #expect(seen[id] == [where_], "acknowledged record \(id) at \(where_) is \(seen[id].map { "at \($0)" } ?? "missing")")
        }
        for (id, places) in seen where places.count > 1 {
            Issue.record("record \(id) is stored \(places.count) times: \(places)")
        }
        let unclean = !manager.recovery.cleanShutdown
        if closeCleanly { try await manager.close() }
        return unclean
    }
}
