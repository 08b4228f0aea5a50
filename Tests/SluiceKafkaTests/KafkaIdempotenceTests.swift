import Foundation
import NIOCore
import SluiceKafka
import SluiceLog
import SluiceTestSupport
import Testing

/// Idempotent producers: durable producer ids, per-partition sequences rebuilt from the log after `kill -9`.
@Suite(.serialized)
struct KafkaIdempotenceTests {
    static func initProducerId(_ connection: RawKafkaConnection, correlation: Int32) throws -> Int64 {
        connection.send(kafkaFrame(api: 22, version: 0, correlation: correlation) { w in w.nullableString(nil); w.int32(60_000) })
        let (_, body) = try #require(connection.response())
        #expect(int16(body, at: 4) == 0, "InitProducerId failed with \(int16(body, at: 4))")
        return Int64(bigEndian: body[6..<14].withUnsafeBytes { $0.loadUnaligned(as: Int64.self) })
    }

    /// Produces one batch of `count` records for producer `pid` from `sequence`; returns (error code, base offset).
    static func produce(_ connection: RawKafkaConnection, pid: Int64, epoch: Int16 = 0, sequence: Int32, count: Int = 3,
                        correlation: Int32) throws -> (Int16, Int64) {
        let records = (0..<count).map { Record(timestamp: 1_700_000_000_000, key: nil, value: Array("seq \(Int(sequence) + $0)".utf8)) }
        let batch = try RecordBatch.encode(records, producer: ProducerInfo(producerId: pid, producerEpoch: epoch, baseSequence: sequence))
        connection.send(kafkaFrame(api: 0, version: 3, correlation: correlation) { w in
            w.nullableString(nil); w.int16(-1); w.int32(10_000)
            w.array(["idem"]) { w, t in w.string(t); w.array([0]) { w, p in w.int32(Int32(p)); w.bytes(batch) } }
        })
        let (_, body) = try #require(connection.response())
        // topics[1]: name "idem" (2+4), partitions[1]: index (4), error (2), base offset (8)
        let at = 4 + 2 + 4 + 4 + 4
        return (int16(body, at: at), Int64(bigEndian: body[(at + 2)..<(at + 10)].withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
    }

    @Test func sequencesHoldAcrossKill9() async throws {
        try await withTemporaryDirectory { dir in
            let arguments = ["--num-partitions", "1"]
            var agent = try await startServed(dir, arguments)
            var connection = try RawKafkaConnection(agent.kafka)
            let pid = try Self.initProducerId(connection, correlation: 1)
            #expect(try Self.produce(connection, pid: pid, sequence: 0, correlation: 2) == (0, 0))
            #expect(try Self.produce(connection, pid: pid, sequence: 0, correlation: 3) == (0, 0), "a retry gets its original offset")
            #expect(try Self.produce(connection, pid: pid, sequence: 3, correlation: 4) == (0, 3))
            #expect(try Self.produce(connection, pid: pid, sequence: 9, correlation: 5).0 == KafkaError.outOfOrderSequenceNumber.rawValue)
            #expect(try Self.produce(connection, pid: pid + 5000, sequence: 0, correlation: 6).0 == KafkaError.unknownProducerId.rawValue)
            agent.kill9()

            agent = try await startServed(dir, arguments)
            defer { agent.stop() }
            connection = try RawKafkaConnection(agent.kafka)
            #expect(try Self.produce(connection, pid: pid, sequence: 3, correlation: 7) == (0, 3), "the retry after a crash is still a retry")
            #expect(try Self.produce(connection, pid: pid, sequence: 0, correlation: 8) == (0, 0))
            #expect(try Self.produce(connection, pid: pid, sequence: 7, correlation: 9).0 == KafkaError.outOfOrderSequenceNumber.rawValue)
            #expect(try Self.produce(connection, pid: pid, sequence: 6, correlation: 10) == (0, 6))
            let fresh = try Self.initProducerId(connection, correlation: 11)
            #expect(fresh > pid, "producer ids are never handed out twice")
            #expect(try Self.produce(connection, pid: fresh, sequence: 0, correlation: 12) == (0, 9))
            let topic = try await http("GET", agent.base + "/v1/topics/idem")
            #expect((topic.json["partitions"] as? [[String: Any]])?.first?["log_end_offset"] as? Int == 12, "\(topic.text)")
        }
    }

    /// librdkafka's idempotent producer (confluent-kafka) keeps sending while Sluice is killed with SIGKILL and
    /// restarted on the same port: every record is there exactly once.
    @Test func confluentIdempotentProducerSurvivesKill9() async throws {
        try await withTemporaryDirectory { dir in
            let kafka = "127.0.0.1:\(freePort())"
            let arguments = ["--num-partitions", "4", "--kafka-address", kafka]
            var agent = try await startServed(dir, arguments)
            let count = 30_000
            let producer = Process()
            producer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            producer.arguments = ["python3", KafkaClientTests.clients + "/idempotent_producer.py", kafka, "idem", "\(count)"]
            let output = Pipe(), errors = Pipe()
            producer.standardOutput = output
            producer.standardError = errors
            try producer.run()
            defer { if producer.isRunning { producer.terminate() } }

            // Kill once some records are in, well before the producer is done.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let topic = try? await http("GET", agent.base + "/v1/topics/idem")
                let stored = (topic?.json["partitions"] as? [[String: Any]])?.reduce(0) { $0 + ($1["log_end_offset"] as? Int ?? 0) } ?? 0
                if stored >= 3000 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            agent.kill9()
            try await Task.sleep(for: .milliseconds(500))
            agent = try await startServed(dir, arguments)
            defer { agent.stop() }

            let summaryData = output.fileHandleForReading.readDataToEndOfFile()
            producer.waitUntilExit()
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let summary = try JSONSerialization.jsonObject(with: summaryData) as? [String: Any] ?? [:]
            #expect(summary["delivered"] as? Int == count, "producer: \(summary) \(stderr.suffix(2000))")

            let consumed = try KafkaClientTests.consume(agent.kafka, ["-t", "idem"])
            let values = consumed.compactMap { $0.payload.flatMap(Int.init) }
            #expect(values.count == count, "\(values.count) records stored for \(count) sent")
            #expect(Set(values) == Set(0..<count), "lost: \(Set(0..<count).subtracting(values).sorted().prefix(10))")
            // Per key, the order sent is the order stored.
            for key in 0..<16 {
                let sent = values.filter { $0 % 16 == key }
                #expect(sent == sent.sorted(), "key \(key) is out of order")
            }
        }
    }
}
