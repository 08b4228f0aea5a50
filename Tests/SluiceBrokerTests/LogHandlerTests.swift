import Foundation
import Logging
@testable import SluiceTelemetry
import Testing

@Suite("JSON log handler")
struct LogHandlerTests {
    static func lines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    @Test("ECS fields, escaping, correlation from the task-local context, and metadata that cannot clobber core fields")
    func fields() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/log.json"
            let sink = try LogSink.file(path: path, maxBytes: 1 << 20, maxFiles: 2)
            var logger = Logger(label: "test.logger") { label in JSONLogHandler(label: label, sink: sink, level: .debug) }
            logger[metadataKey: "handler"] = "h"
            let context = CorrelationContext(correlationId: "corr-1", causationId: "cause-1", traceId: "0af7651916cd43dd8448eb211c80319c",
                                             spanId: "b7ad6b7169203331", eventId: "e1", eventType: "order.created", topic: "orders", partition: 2, offset: 41)
            await Correlation.with(context) {
                logger.info("quote \" backslash \\ newline \n tab \t bell \u{07} ünïcode", metadata: [
                    "message": "metadata message", "@timestamp": "fake", "count": .stringConvertible(3), "nested": ["k": ["a", "b"]],
                ])
            }
            logger.debug("outside")
            logger.trace("dropped by level")
            let parsed = try Self.lines(path)
            #expect(parsed.count == 2)
            let line = parsed[0]
            #expect(line["message"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{07} ünïcode")
            #expect(line["metadata.message"] as? String == "metadata message")
            #expect(line["metadata.@timestamp"] as? String == "fake")
            #expect((line["@timestamp"] as? String)?.hasSuffix("Z") == true)
            #expect((line["@timestamp"] as? String)?.count == 24)
            #expect(line["log.level"] as? String == "info")
            #expect(line["log.logger"] as? String == "test.logger")
            #expect(line["service.name"] as? String == "sluice")
            #expect(line["ecs.version"] as? String == "8.11.0")
            #expect(line["correlation_id"] as? String == "corr-1")
            #expect(line["causation_id"] as? String == "cause-1")
            #expect(line["trace.id"] as? String == "0af7651916cd43dd8448eb211c80319c")
            #expect(line["span.id"] as? String == "b7ad6b7169203331")
            #expect(line["event.id"] as? String == "e1")
            #expect(line["topic"] as? String == "orders")
            #expect(line["partition"] as? Int == 2)
            #expect(line["offset"] as? Int == 41)
            #expect(line["count"] as? Int == 3)
            #expect(line["handler"] as? String == "h")
            #expect(((line["nested"] as? [String: Any])?["k"] as? [String]) == ["a", "b"])
            #expect(parsed[1]["correlation_id"] == nil)
        }
    }

    @Test("the log file rotates by size and keeps log.file.max.files")
    func rotation() async throws {
        try await withTemporaryDirectory { dir in
            let path = dir + "/sluice.log"
            let sink = try LogSink.file(path: path, maxBytes: 2000, maxFiles: 2)
            let logger = Logger(label: "r") { label in JSONLogHandler(label: label, sink: sink) }
            for i in 0..<100 { logger.info("line \(i) \(String(repeating: "x", count: 50))") }
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(files == ["sluice.log", "sluice.log.1", "sluice.log.2"])
            for file in files {
                let size = (try FileManager.default.attributesOfItem(atPath: dir + "/" + file)[.size] as! NSNumber).intValue
                #expect(size <= 2000)
                #expect(try Self.lines(dir + "/" + file).count > 0, "every line is whole JSON")
            }
            let last = try Self.lines(path).last?["message"] as? String
            #expect(last?.hasPrefix("line 99 ") == true)
        }
    }

    @Test("a reader that stops draining the pipe never stalls logging: lines are dropped and counted, then flow again")
    func stalledReader() async throws {
        let pipe = Pipe()
        let sink = LogSink.descriptor(pipe.fileHandleForWriting.fileDescriptor)
        let logger = Logger(label: "p") { label in JSONLogHandler(label: label, sink: sink) }
        let started = Date()
        for i in 0..<3000 { logger.info("line \(i) \(String(repeating: "x", count: 500))") }
        #expect(Date().timeIntervalSince(started) < 5, "logging blocked on a full pipe")
        #expect(sink.droppedLines > 2000)
        // Drain, then lines are written again.
        let before = sink.droppedLines
        _ = pipe.fileHandleForReading.availableData
        while true {
            var poller = pollfd(fd: pipe.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
            if poll(&poller, 1, 0) <= 0 { break }
            _ = pipe.fileHandleForReading.availableData
        }
        logger.info("after")
        #expect(sink.droppedLines == before)
        let text = String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
        #expect(text.contains("\"after\""))
    }

    @Test("text format for humans")
    func text() async throws {
        try await withTemporaryDirectory { dir in
            let sink = try LogSink.file(path: dir + "/t.log", maxBytes: 1 << 20, maxFiles: 1)
            let logger = Logger(label: "t") { label in JSONLogHandler(label: label, sink: sink, format: .text) }
            logger.warning("two\nlines", metadata: ["topic": "orders"])
            let line = try String(contentsOfFile: dir + "/t.log", encoding: .utf8)
            #expect(line.contains("WARNING two\\nlines topic=orders"))
            #expect(line.split(separator: "\n").count == 1)
        }
    }
}
