import Foundation
@testable import SluiceLog
import Testing

@Suite("Partition log")
struct PartitionLogTests {
    @Test("appends get consecutive offsets; every offset reads back from the batch that holds it, across segments")
    func appendAndReadEverywhere() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "2048", "index.interval.bytes": "300"])
            var expected: [Record] = []
            for round in 0..<60 {
                let records = sampleRecords(1 + round % 6, prefix: "a\(round)")
                let info = try await log.append(try RecordBatch.encode(records, compression: round % 2 == 0 ? .none : .gzip(level: 1)))
                #expect(info.baseOffset == Int64(expected.count))
                #expect(info.lastOffset == Int64(expected.count + records.count - 1))
                for (i, var r) in records.enumerated() { r.offset = info.baseOffset + Int64(i); expected.append(r) }
            }
            #expect(log.logStartOffset == 0)
            #expect(log.logEndOffset == Int64(expected.count))
            #expect(log.segments.count >= 4)
            // Segment files are named by their 20-digit base offset, with both indexes beside them once the segment
            // is sealed and fsynced (the active segment's indexes are written when the log closes).
            try await log.flush()
            for segment in log.segments {
                let name = URL(fileURLWithPath: segment.path).lastPathComponent
                #expect(name == String(format: "%020lld.log", segment.baseOffset))
                let sealed = segment.baseOffset != log.segments.last?.baseOffset
                #expect(FileManager.default.fileExists(atPath: segment.path.replacingOccurrences(of: ".log", with: ".index")) == sealed)
                #expect(FileManager.default.fileExists(atPath: segment.path.replacingOccurrences(of: ".log", with: ".timeindex")) == sealed)
                #expect(segment.sizeBytes <= 2048)
            }
            for offset in 0..<Int64(expected.count) {
                let batches = try log.read(from: offset, maxBytes: 1)
                #expect(batches.count == 1, "one batch even when it exceeds maxBytes")
                #expect(batches[0].header.baseOffset <= offset && offset <= batches[0].header.lastOffset)
                let records = try log.readRecords(from: offset, maxRecords: 1)
                #expect(records == [expected[Int(offset)]])
            }
            #expect(try log.read(from: log.logEndOffset).isEmpty)
            let error = #expect(throws: LogError.self) { try log.read(from: log.logEndOffset + 1) }
            #expect(error?.code == .offsetOutOfRange)
            #expect(try allRecords(log) == expected)
            try await manager.close()

            // After a clean reopen everything is identical.
            let (again, reopened) = try openPartition(dir)
            #expect(again.recovery.cleanShutdown)
            #expect(reopened.logEndOffset == Int64(expected.count))
            #expect(try allRecords(reopened) == expected)
            let next = try await reopened.append(try RecordBatch.encode(sampleRecords(1)))
            #expect(next.baseOffset == Int64(expected.count))
            try await again.close()
        }
    }

    @Test("readRanges gives the bytes read gives, as file ranges that stay readable after retention deletes their segment")
    func rangesMatchReads() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "1000", "retention.bytes": "1", "retention.ms": "-1"])
            for round in 0..<40 {
                try await log.append(try RecordBatch.encode(sampleRecords(1 + round % 4, prefix: "g\(round)")))
            }
            #expect(log.segments.count >= 4)
            func contents(_ ranges: [StoredRange]) -> [UInt8] {
                ranges.flatMap { range in
                    [UInt8](unsafeUninitializedCapacity: range.length) { buffer, count in
                        count = pread(range.file.descriptor, buffer.baseAddress!, range.length, off_t(range.position))
                    }
                }
            }
            for offset in stride(from: Int64(0), to: log.logEndOffset, by: 7) {
                for maxBytes in [1, 700, 3000, 1 << 20] {
                    let batches = try log.read(from: offset, maxBytes: maxBytes)
                    let ranges = try log.readRanges(from: offset, maxBytes: maxBytes)
                    #expect(contents(ranges) == batches.flatMap(\.bytes), "offset \(offset), maxBytes \(maxBytes)")
                    #expect(ranges.count <= log.segments.count, "one range per segment at most")
                }
            }
            #expect(try log.readRanges(from: log.logEndOffset).isEmpty)
            let error = #expect(throws: LogError.self) { try log.readRanges(from: log.logEndOffset + 1) }
            #expect(error?.code == .offsetOutOfRange)

            let everything = try log.readRanges(from: 0)
            let expected = try log.read(from: 0).flatMap(\.bytes)
            let first = log.segments[0].path
            #expect(try log.enforceRetention() > 0)
            #expect(!FileManager.default.fileExists(atPath: first))
            #expect(contents(everything) == expected, "the ranges' descriptors keep the deleted files readable")
            try await manager.close()
        }
    }

    @Test("offset(forTimestamp:) finds the first offset at or after a time, exactly, even with out-of-order timestamps")
    func timeLookup() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "3000", "index.interval.bytes": "200"])
            var generator = SystemRandomNumberGenerator()
            var all: [(offset: Int64, timestamp: Int64)] = []
            var base: Int64 = 1_700_000_000_000
            for _ in 0..<80 {
                let count = Int.random(in: 1...4, using: &generator)
                let records = (0..<count).map { _ in
                    Record(timestamp: base + Int64.random(in: -500...2000, using: &generator), value: bytes("x"))
                }
                base += 1000
                let info = try await log.append(try RecordBatch.encode(records))
                for (i, r) in records.enumerated() { all.append((info.baseOffset + Int64(i), r.timestamp)) }
            }
            let times = all.map(\.timestamp)
            for probe in stride(from: times.min()! - 10, through: times.max()! + 10, by: 97) {
                let truth = all.first(where: { $0.timestamp >= probe })?.offset
                #expect(try log.offset(forTimestamp: probe) == truth, "timestamp \(probe)")
            }
            #expect(try log.offset(forTimestamp: times.max()! + 1) == nil)
            try await manager.close()
            let (again, reopened) = try openPartition(dir)
            for probe in stride(from: times.min()!, through: times.max()!, by: 331) {
                #expect(try reopened.offset(forTimestamp: probe) == all.first(where: { $0.timestamp >= probe })?.offset)
            }
            try await again.close()
        }
    }

    @Test("segments roll by segment.ms")
    func rollByTime() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.ms": "1000"])
            let t0: Int64 = 1_700_000_000_000
            try await log.append(try RecordBatch.encode(sampleRecords(2)), now: t0)
            try await log.append(try RecordBatch.encode(sampleRecords(2)), now: t0 + 999)
            #expect(log.segments.count == 1)
            try await log.append(try RecordBatch.encode(sampleRecords(2)), now: t0 + 1000)
            #expect(log.segments.map(\.baseOffset) == [0, 4])
            try await manager.close()
        }
    }

    @Test("retention.ms deletes whole sealed segments by their newest record and advances the log start")
    func retentionByTime() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "500", "retention.ms": "60000"])
            let old: Int64 = 1_700_000_000_000
            for i in 0..<10 {
                try await log.append(try RecordBatch.encode(sampleRecords(3, timestamp: old + Int64(i))))
            }
            let fresh = old + 3_600_000
            for i in 0..<10 {
                try await log.append(try RecordBatch.encode(sampleRecords(3, timestamp: fresh + Int64(i))))
            }
            let before = log.segments
            #expect(before.count > 4)
            let deleted = try log.enforceRetention(now: fresh + 30_000)
            let after = log.segments
            #expect(deleted > 0)
            #expect(after.allSatisfy { $0.maxTimestamp >= fresh - 60_000 + 30_000 || $0.baseOffset == after.last!.baseOffset })
            #expect(log.logStartOffset == after[0].baseOffset)
            for gone in before.prefix(deleted) { #expect(!FileManager.default.fileExists(atPath: gone.path)) }
            let error = #expect(throws: LogError.self) { try log.read(from: 0) }
            #expect(error?.code == .offsetOutOfRange)
            #expect(try log.readRecords(from: log.logStartOffset).first?.offset == log.logStartOffset)
            // Everything is expired later on, but the active segment stays.
            try log.enforceRetention(now: fresh + 10_000_000)
            #expect(log.segments.count == 1)
            try await manager.close()
            let (again, reopened) = try openPartition(dir)
            #expect(reopened.logStartOffset == log.logStartOffset)
            #expect(reopened.logEndOffset == 60)
            try await again.close()
        }
    }

    @Test("retention.bytes deletes the oldest segments while the rest still exceeds the limit (Kafka's rule)")
    func retentionBySize() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "600", "retention.bytes": "2000", "retention.ms": "-1"])
            for _ in 0..<40 { try await log.append(try RecordBatch.encode(sampleRecords(2))) }
            #expect(log.sizeInBytes > 2000)
            try log.enforceRetention()
            let segments = log.segments
            #expect(log.sizeInBytes - segments[0].sizeBytes < 2000, "one more segment could have gone")
            #expect(log.sizeInBytes >= 2000 || segments.count == 1)
            #expect(log.logStartOffset == segments[0].baseOffset)
            #expect(log.logEndOffset == 80)
            try await manager.close()
        }
    }

    @Test("fsync-before-ack: concurrent appends share fsyncs (group commit) and all become durable")
    func groupCommit() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir, config: ["flush.policy": "sync"])
            let batch = try RecordBatch.encode(sampleRecords(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<64 {
                    group.addTask { for _ in 0..<10 { try await log.append(batch) } }
                }
                try await group.waitForAll()
            }
            #expect(log.logEndOffset == 640)
            #expect(log.durableOffset == 640)
            #expect(log.fsyncCount >= 1)
            #expect(log.fsyncCount < 640, "every append got its own fsync: \(log.fsyncCount)")
            try await manager.close()
        }
    }

    @Test("flush policies: interval and os acknowledge before fsync; flush() makes it durable")
    func flushPolicies() async throws {
        try await withTemporaryDirectory { dir in
            let manager = try LogManager.open(dataDirectory: dir)
            let interval = try manager.createTopic("interval", partitions: 1, config: ["flush.policy": "interval", "flush.ms": "50"]).partitions[0]
            let os = try manager.createTopic("os", partitions: 1, config: ["flush.policy": "os"]).partitions[0]
            #expect(interval.config.flushPolicy == .interval(milliseconds: 50))
            let batch = try RecordBatch.encode(sampleRecords(3))
            try await interval.append(batch)
            try await os.append(batch)
            #expect(os.durableOffset == 0)
            let maintenance = Task { await manager.runMaintenance() }
            for _ in 0..<100 where interval.durableOffset < 3 { try await Task.sleep(for: .milliseconds(20)) }
            maintenance.cancel()
            #expect(interval.durableOffset == 3)
            #expect(os.durableOffset == 0)
            try await os.flush()
            #expect(os.durableOffset == 3)
            try await manager.close()
        }
    }

    @Test("adding partitions keeps the old ones' data and the topic's settings, also after a reopen; shrinking is refused")
    func addPartitions() async throws {
        try await withTemporaryDirectory { dir in
            var manager = try LogManager.open(dataDirectory: dir)
            let topic = try manager.createTopic("grow", partitions: 2, config: ["retention.ms": "60000"])
            try await topic.partitions[1].append(RecordBatch.encode(sampleRecords(3)))
            let grown = try manager.addPartitions("grow", count: 5)
            #expect(grown.partitions.count == 5)
            #expect(grown.partitions[1] === topic.partitions[1], "existing partitions stay open as they are")
            try await grown.partitions[4].append(RecordBatch.encode(sampleRecords(2)))
            var error = #expect(throws: LogError.self) { try manager.addPartitions("grow", count: 5) }
            #expect(error?.message.contains("partitions can only be added") == true)
            error = #expect(throws: LogError.self) { try manager.addPartitions("absent", count: 5) }
            #expect(error?.code == .unknownTopic)
            try await manager.close()

            manager = try LogManager.open(dataDirectory: dir)
            let reopened = try manager.requireTopic("grow")
            #expect(reopened.partitions.map(\.logEndOffset) == [0, 3, 0, 0, 2])
            #expect(reopened.config.retentionMs == 60000)
            try await manager.close()
        }
    }

    @Test("bad input: oversized batches, invalid names and configs get clear errors; nothing is written")
    func badInput() async throws {
        try await withTemporaryDirectory { dir in
            let manager = try LogManager.open(dataDirectory: dir)
            let log = try manager.createTopic("small", partitions: 2, config: ["max.message.bytes": "1000"]).partitions[0]
            let big = try RecordBatch.encode([Record(timestamp: 0, value: [UInt8](repeating: 1, count: 2000))])
            var error = await #expect(throws: LogError.self) { try await log.append(big) }
            #expect(error?.code == .batchTooLarge)
            #expect(error?.message.contains("max.message.bytes") == true)
            var corrupt = try RecordBatch.encode(sampleRecords(2))
            corrupt[corrupt.count - 1] ^= 0xFF
            error = await #expect(throws: LogError.self) { try await log.append(corrupt) }
            #expect(error?.code == .corruptBatch)
            var short = try RecordBatch.encode(sampleRecords(2))
            short.removeLast(3)
            error = await #expect(throws: LogError.self) { try await log.append(short) }
            #expect(error?.code == .invalidBatch)
            #expect(log.logEndOffset == 0)
            #expect(log.sizeInBytes == 0)

            for name in ["", ".", "..", "a/b", "../escape", "white space", "ü", String(repeating: "x", count: 250), "a\0b"] {
                error = #expect(throws: LogError.self) { try manager.createTopic(name, partitions: 1) }
                #expect(error?.code == .invalidName, "\(name)")
            }
            #expect(TopicName.isValid("orders.v1_EU-west"))
            #expect(TopicName.isValid(String(repeating: "x", count: 249)))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/topics") == ["small"])

            error = #expect(throws: LogError.self) { try manager.createTopic("small", partitions: 1) }
            #expect(error?.code == .topicExists)
            error = #expect(throws: LogError.self) { try manager.createTopic("x", partitions: 1, config: ["segment.byte": "1"]) }
            #expect(error?.message.contains("unknown topic property 'segment.byte'") == true)
            error = #expect(throws: LogError.self) { try manager.createTopic("x", partitions: 1, config: ["segment.bytes": "lots"]) }
            #expect(error?.message.contains("segment.bytes=lots is invalid") == true)
            error = #expect(throws: LogError.self) { try manager.createTopic("x", partitions: 0) }
            #expect(error?.code == .invalidConfig)
            error = #expect(throws: LogError.self) { try manager.requireTopic("small").partition(2) }
            #expect(error?.code == .unknownPartition)
            try await manager.close()
        }
    }

    @Test("a second process cannot open a data directory in use; topics survive reopen; delete removes the files")
    func lockingAndTopics() async throws {
        try await withTemporaryDirectory { dir in
            let manager = try LogManager.open(dataDirectory: dir)
            try manager.createTopic("keep", partitions: 3, config: ["retention.ms": "1000"])
            try manager.createTopic("drop", partitions: 1)
            let result = try sluice("fsck", "--data-dir", dir)
            #expect(result.status == 1)
            #expect(result.stderr.contains("in use"))
            try await manager.deleteTopic("drop")
            #expect(!FileManager.default.fileExists(atPath: dir + "/topics/drop"))
            try await manager.close()
            let again = try LogManager.open(dataDirectory: dir)
            #expect(again.topicNames == ["keep"])
            #expect(again.topic("keep")?.partitions.count == 3)
            #expect(again.topic("keep")?.config.retentionMs == 1000)
            try await again.close()
        }
    }
}

@Suite("Topic compression.type")
struct TopicCompressionTypeTests {
    @Test("producer by default; a codec name; anything else refused with what is allowed")
    func parse() throws {
        #expect(TopicConfig().compression == nil)
        #expect(TopicConfig().properties["compression.type"] == "producer")
        for codec in CompressionCodec.allCases {
            let config = try TopicConfig().applying(["compression.type": codec.description])
            #expect(config.compression == codec)
            #expect(config.properties["compression.type"] == codec.description)
            #expect(try TopicConfig().applying(config.properties) == config)
        }
        #expect(try TopicConfig().applying(["compression.type": "producer"]).compression == nil)
        let error = #expect(throws: LogError.self) { try TopicConfig().applying(["compression.type": "brotli"]) }
        #expect(error?.message.contains("allowed: producer (keep what the producer sent) or one of none, gzip, snappy, lz4, zstd") == true)
    }
}
