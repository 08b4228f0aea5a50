import Foundation
@testable import SluiceLog
import Testing

@Suite("sluice CLI")
struct CLITests {
    @Test("produce then dump prints every batch and record as JSON lines, from any offset")
    func produceAndDump() async throws {
        try await withTemporaryDirectory { dir in
            let input = (0..<25).map { "key\($0 % 4)|value \($0) ✓" }.joined(separator: "\n") + "\n"
            let produced = try sluice("produce", "--data-dir", dir, "--topic", "orders", "--key-separator", "|",
                                      "--batch-records", "10", "--compression", "gzip", stdin: input)
            #expect(produced.status == 0, "\(produced.stderr)")
            let dump = try sluice("dump", "--data-dir", dir, "--topic", "orders")
            #expect(dump.status == 0)
            let lines = try dump.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            #expect(lines.filter { $0["type"] as? String == "batch" }.count == 3)
            let records = lines.filter { $0["type"] as? String == "record" }
            #expect(records.count == 25)
            #expect(records[7]["offset"] as? Int == 7)
            #expect(records[7]["key"] as? String == "key3")
            #expect(records[7]["value"] as? String == "value 7 ✓")
            #expect(lines.first?["codec"] as? String == "gzip")

            let tail = try sluice("dump", "--data-dir", dir, "--topic", "orders", "--from-offset", "22")
            let offsets = tail.stdout.split(separator: "\n").compactMap { line -> Int? in
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return object?["type"] as? String == "record" ? object?["offset"] as? Int : nil
            }
            #expect(offsets == [22, 23, 24])
        }
    }

    @Test("produce, dump and fsck with every codec", arguments: ["snappy", "lz4", "zstd"])
    func everyCodec(_ codec: String) async throws {
        try await withTemporaryDirectory { dir in
            let input = (0..<40).map { "k\($0 % 4)|\(codec) value \($0) " + String(repeating: "ab", count: $0 * 30) }.joined(separator: "\n") + "\n"
            let produced = try sluice("produce", "--data-dir", dir, "--topic", "c", "--key-separator", "|", "--batch-records", "16",
                                      "--compression", codec, stdin: input)
            #expect(produced.status == 0, "\(produced.stderr)")
            let dump = try sluice("dump", "--data-dir", dir, "--topic", "c")
            let lines = try dump.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
            #expect(lines.filter { $0["type"] as? String == "batch" }.map { $0["codec"] as? String } == [codec, codec, codec])
            #expect(lines.filter { $0["type"] as? String == "record" }.compactMap { $0["value"] as? String }
                    == (0..<40).map { "\(codec) value \($0) " + String(repeating: "ab", count: $0 * 30) })
            let fsck = try sluice("fsck", "--data-dir", dir)
            #expect(fsck.status == 0, "\(fsck.stdout) \(fsck.stderr)")
        }
    }

    @Test("bad input exits 2 with a message that says what to fix", arguments: [
        (["dump", "--topic", "../etc"], "topic name contains '/'"),
        (["dump", "--topic", "t", "--from-offset=-1"], "--from-offset must not be negative"),
        (["dump", "--topic", "t", "--bogus"], "Unknown option '--bogus'"),
        (["dump", "--topic", "missing"], "topic missing does not exist"),
        (["fsck", "--data-dir", "/nonexistent/sluice"], "does not exist"),
        (["produce", "--topic", "t", "--compression", "brotli"], "--compression must be one of none, gzip, snappy, lz4, zstd, got 'brotli'"),
        (["produce", "--topic", "t", "--compression", "snappy", "--compression-level", "3"], "--compression snappy has no levels"),
        (["produce", "--topic", "t", "--compression", "zstd", "--compression-level", "23"], "--compression-level for zstd must be 1...22, got 23"),
        (["serve", "--retention-check-interval-ms", "0"], "retention.check.interval.ms=0 (from flag --retention-check-interval-ms) is invalid"),
        (["serve", "-X", "acks=1"], "enable.idempotence=true (from default) needs acks=all"),
        (["serve", "--lingr-ms", "5"], "did you mean --linger-ms?"),
        // serve's own two options, read without ArgumentParser unless something is off with them: then its messages.
        (["serve", "--config"], "Missing value for '--config <config>'"),
        (["serve", "--sagas", "/nonexistent/sagas.yaml", "--linger-ms", "5"], "/nonexistent/sagas.yaml"),
        (["serve", "--config=/nonexistent/sluice.yaml"], "/nonexistent/sluice.yaml"),
        (["nosuchcommand"], "Unexpected argument"),
        (["partitions", "--target-throughput", "120MB", "--partition-throughput", "10MB/s", "--consumers", "6"], "needs a per-second unit"),
        (["partitions", "--target-throughput", "0MB/s", "--partition-throughput", "10MB/s", "--consumers", "6"], "must be greater than zero"),
    ])
    func badInput(arguments: [String], message: String) async throws {
        try await withTemporaryDirectory { dir in
            var args = arguments
            if !args.contains("--data-dir") { args += ["--data-dir", dir] }
            if args == ["nosuchcommand", "--data-dir", dir] { args = ["nosuchcommand"] }
            if args.first == "partitions" { args.removeLast(2) }
            let result = try runProcess(sluiceBinary, args)
            #expect(result.status == 2, "\(args): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(args): \(result.stderr)")
        }
    }

    @Test("fsck: 0 when clean, 1 with damage, --repair fixes it, then 0")
    func fsckExitCodes() async throws {
        try await withTemporaryDirectory { dir in
            let (records, segments) = try await RecoveryTests.populate(dir)
            var result = try sluice("fsck", "--data-dir", dir)
            #expect(result.status == 0, "\(result.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
            #expect(summary["records"] as? Int == records.count)
            #expect(summary["segments"] as? Int == segments.count)

            let victim = segments[1]
            let positions = try RecoveryTests.batchPositions(victim.path)
            try RecoveryTests.patch(victim.path, at: positions[1].position + 50, [0x42, 0x42])
            result = try sluice("fsck", "--data-dir", dir)
            #expect(result.status == 1)
            let line = try #require(result.stdout.split(separator: "\n").first { $0.contains(victim.path) })
            let check = try JSONDecoder().decode(SegmentCheck.self, from: Data(line.utf8))
            #expect(check.crcErrors == 1)
            #expect(check.truncatedBytes == victim.sizeBytes - positions[1].position)
            #expect(check.batches == 1)

            result = try sluice("fsck", "--data-dir", dir, "--repair")
            #expect(result.status == 1, "damage was found (and repaired)")
            #expect(result.stdout.contains("truncated"))
            result = try sluice("fsck", "--data-dir", dir)
            #expect(result.status == 0, "\(result.stdout)")
        }
    }

    @Test("serve recovers, reports damage but still starts, and on SIGTERM flushes, writes the marker and exits 0")
    func serveLifecycle() async throws {
        try await withTemporaryDirectory { dir in
            let (_, segments) = try await RecoveryTests.populate(dir)
            let victim = segments[0]
            let last = try RecoveryTests.batchPositions(victim.path).last!
            try RecoveryTests.patch(victim.path, at: last.position + 70, [0x99])
            try RecoveryTests.crash(dir)

            let process = Process()
            process.executableURL = URL(fileURLWithPath: sluiceBinary)
            process.arguments = ["serve", "--data-dir", dir, "--api-address", "127.0.0.1:0", "--metrics-address", "127.0.0.1:0"]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            // Read until the start line and the damage report have arrived.
            var text = ""
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, !(text.contains("sluice started") && text.contains("log recovered") && text.contains(victim.path)) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            let lines = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let start = try #require(lines.first)
            #expect(start["message"] as? String == "sluice started", "the first line names the bound addresses")
            #expect((start["api.address"] as? String)?.hasPrefix("127.0.0.1:") == true)
            #expect((start["metrics.address"] as? String)?.hasPrefix("127.0.0.1:") == true)
            let recovered = try #require(lines.first { $0["message"] as? String == "log recovered" })
            #expect(recovered["clean_shutdown"] as? Bool == false)
            let damage = try #require(lines.first { $0["log.level"] as? String == "error" })
            #expect(damage["file.path"] as? String == victim.path)
            #expect((damage["message"] as? String)?.contains("sluice fsck") == true)
            #expect(process.isRunning)

            process.terminate()  // SIGTERM
            process.waitUntilExit()
            #expect(process.terminationReason == .exit)
            #expect(process.terminationStatus == 0)
            #expect(FileManager.default.fileExists(atPath: dir + "/" + LogManager.cleanShutdownMarker))
            let rest = text + String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(rest.contains("sluice stopped cleanly"))
        }
    }
}

@Suite("sluice logs and config show")
struct LogsAndConfigCLITests {
    static let sample = """
        {"@timestamp":"2026-11-22T16:00:00.000Z","log.level":"info","message":"event published","correlation_id":"c-1","topic":"orders"}
        not json at all
        {"@timestamp":"2026-11-22T16:00:01.000Z","log.level":"debug","message":"event read","correlation_id":"c-1"}
        {"@timestamp":"2026-11-22T16:00:02.000Z","log.level":"error","message":"boom","correlation_id":"c-2"}
        {"truncated":
        """

    @Test("logs filters by correlation id and level, survives non-JSON lines, and pretty-prints")
    func logsFilters() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/sluice.log"
            try Self.sample.write(toFile: file, atomically: true, encoding: .utf8)
            var result = try sluice("logs", file)
            #expect(result.status == 0)
            #expect(result.stdout.split(separator: "\n").count == 5, "without filters every line passes, JSON or not")
            result = try sluice("logs", file, "--correlation-id", "c-1")
            #expect(result.stdout.split(separator: "\n").map { $0.contains("c-1") } == [true, true])
            result = try sluice("logs", file, "--level", "info")
            #expect(result.stdout.contains("event published") && result.stdout.contains("boom") && !result.stdout.contains("event read"))
            result = try sluice("logs", "-", "--level", "error", "--pretty", stdin: Self.sample)
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2026-11-22T16:00:02.000Z ERROR    boom  correlation_id=c-2")
            result = try sluice("logs", file, "--level", "loud")
            #expect(result.status == 2)
            #expect(result.stderr.contains("--level must be one of"))
            result = try sluice("logs", dir + "/missing.log")
            #expect(result.status == 2)
        }
    }

    @Test("logs --follow prints lines appended later and follows rotation")
    func logsFollow() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/sluice.log"
            try "{\"log.level\":\"info\",\"message\":\"first\"}\n".write(toFile: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: sluiceBinary)
            process.arguments = ["logs", file, "--follow"]
            let out = dir + "/out.txt"
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            try process.run()
            defer { process.terminate(); process.waitUntilExit() }
            try await Task.sleep(for: .milliseconds(400))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
            try handle.seekToEnd()
            handle.write(Data("{\"log.level\":\"info\",\"message\":\"second\"}\n".utf8))
            try handle.close()
            try await Task.sleep(for: .milliseconds(600))
            // Rotation: the file is renamed away and a new one takes its name.
            try FileManager.default.moveItem(atPath: file, toPath: file + ".1")
            try "{\"log.level\":\"info\",\"message\":\"third\"}\n".write(toFile: file, atomically: false, encoding: .utf8)
            var text = ""
            for _ in 0..<50 {
                text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
                if text.contains("third") { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(text.contains("first") && text.contains("second") && text.contains("third"), "followed output: \(text)")
        }
    }

    @Test("config show prints every setting with its source; secrets are masked")
    func configShow() async throws {
        try await withTemporaryDirectory { dir in
            try "acks: all\nlinger.ms: 50\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
            let result = try sluice("config", "show", "--json", "--config", dir + "/c.yaml", "--batch-size", "999", "--api-token", "hunter2-hunter2-hunter2")
            #expect(result.status == 0, "\(result.stderr)")
            let rows = try result.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: String] }
            func row(_ name: String) -> [String: String]? { rows.first { $0["name"] == name } }
            #expect(row("linger.ms") == ["name": "linger.ms", "value": "50", "source": "file \(dir)/c.yaml:2"])
            #expect(row("batch.size")?["source"] == "flag --batch-size")
            #expect(row("api.token")?["value"] == "***")
            #expect(!result.stdout.contains("hunter2"))
            #expect(row("max.poll.records")?["source"] == "default")
            let help = try sluice("serve", "--help")
            #expect(help.stdout.contains("--linger-ms (-X linger.ms, SLUICE_LINGER_MS)"))
        }
    }
}
