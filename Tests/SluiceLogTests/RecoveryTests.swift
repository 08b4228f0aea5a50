import Foundation
@testable import SluiceLog
import Testing

/// Damage is made by hand: write a log, close it, remove the clean-shutdown marker (as a crash would leave it),
/// then cut, overwrite or delete files.
@Suite("Recovery and corruption")
struct RecoveryTests {
    /// Writes `batches` batches of 3 records into small segments and returns the records and segment files.
    static func populate(_ dir: String, batches: Int = 30) async throws -> (records: [Record], segments: [SegmentInfo]) {
        let (manager, log) = try openPartition(dir, config: ["segment.bytes": "1500", "index.interval.bytes": "256"])
        var records: [Record] = []
        for b in 0..<batches {
            let batch = sampleRecords(3, prefix: "b\(b)", timestamp: 1_700_000_000_000 + Int64(b) * 10)
            let info = try await log.append(try RecordBatch.encode(batch, compression: b % 2 == 0 ? .none : .gzip(level: 1)))
            for (i, var r) in batch.enumerated() { r.offset = info.baseOffset + Int64(i); records.append(r) }
        }
        let segments = log.segments
        try await manager.close()
        return (records, segments)
    }

    static func crash(_ dir: String) throws {
        try FileManager.default.removeItem(atPath: dir + "/" + LogManager.cleanShutdownMarker)
    }

    static func truncate(_ path: String, to size: Int64) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
    }

    static func patch(_ path: String, at offset: Int64, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(offset))
        handle.write(Data(bytes))
        try handle.close()
    }

    static func append(_ path: String, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        handle.write(Data(bytes))
        try handle.close()
    }

    static func fileSize(_ path: String) throws -> Int64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber).int64Value
    }

    /// Batch start positions in a segment file.
    static func batchPositions(_ path: String) throws -> [(position: Int64, header: RecordBatchHeader)] {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var out: [(Int64, RecordBatchHeader)] = []
        var position = 0
        while position < data.count {
            let header = try data[position...].withUnsafeBytes { try RecordBatchHeader.parse($0) }
            out.append((Int64(position), header))
            position += header.totalSize
        }
        return out
    }

    static func fsckClean(_ dir: String) throws -> Bool {
        try LogChecker.check(dataDirectory: dir, repair: false).allSatisfy(\.isClean)
    }

    @Test("a torn tail (a batch cut short) is truncated; everything before it survives and appends continue", arguments: [1, 20, 60, 200])
    func tornTail(cut: Int) async throws {
        try await withTemporaryDirectory { dir in
            let (records, segments) = try await Self.populate(dir)
            let active = segments.last!.path
            let last = try Self.batchPositions(active).last!
            let size = try Self.fileSize(active)
            let cutTo = max(last.position + 1, size - Int64(cut))
            try Self.truncate(active, to: cutTo)
            try Self.crash(dir)

            let (manager, log) = try openPartition(dir)
            #expect(!manager.recovery.cleanShutdown)
            #expect(manager.recovery.damages.count == 1)
            #expect(manager.recovery.damages[0].repaired)
            #expect(manager.recovery.damages[0].position == last.position)
            let survivors = records.filter { $0.offset < last.header.baseOffset }
            #expect(log.logEndOffset == last.header.baseOffset)
            #expect(try allRecords(log) == survivors)
            #expect(try Self.fileSize(active) == last.position)
            let info = try await log.append(try RecordBatch.encode(sampleRecords(2)))
            #expect(info.baseOffset == last.header.baseOffset)
            try await manager.close()
            #expect(try Self.fsckClean(dir))
        }
    }

    @Test("garbage after the last batch (zeros, random bytes, a header with a bad CRC) is truncated")
    func garbageTail() async throws {
        let tails: [[UInt8]] = [
            [UInt8](repeating: 0, count: 4096),
            (0..<777).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) },
            {
                var batch = try! RecordBatch.encode(sampleRecords(4))
                batch[batch.count - 2] ^= 0x55
                return batch
            }(),
        ]
        for tail in tails {
            try await withTemporaryDirectory { dir in
                let (records, segments) = try await Self.populate(dir, batches: 10)
                let size = try Self.fileSize(segments.last!.path)
                try Self.append(segments.last!.path, tail)
                try Self.crash(dir)
                let (manager, log) = try openPartition(dir)
                #expect(try allRecords(log) == records)
                #expect(try Self.fileSize(segments.last!.path) == size)
                #expect(manager.recovery.damages.map(\.position) == [size])
                try await manager.close()
                #expect(try Self.fsckClean(dir))
            }
        }
    }

    @Test("fsck decodes every batch: a valid CRC over records that cannot be decoded is reported, and --repair keeps it")
    func undecodableBatchIsReportedNotCut() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir)
            try await log.append(try RecordBatch.encode(sampleRecords(5), compression: .zstd()))
            // A producer's batch with a sound header and CRC but a damaged zstd section: the log takes it as sent.
            var damaged = try RecordBatch.encode(sampleRecords(5, prefix: "bad"), compression: .zstd())
            for i in 0..<4 { damaged[RecordBatchHeader.size + i] ^= 0xFF }
            try await log.append(withFreshCRC(damaged))
            try await log.append(try RecordBatch.encode(sampleRecords(3), compression: .lz4()))
            try await manager.close()
            for repair in [false, true] {
                let report = try LogChecker.check(dataDirectory: dir, repair: repair)
                let problems = report.flatMap(\.problems)
                #expect(problems.count == 1 && problems[0].contains("offsets 5–9") && problems[0].contains("cannot be decoded"), "\(problems)")
                #expect(report.allSatisfy { $0.crcErrors == 0 && $0.truncatedBytes == 0 && $0.repairs.isEmpty })
            }
            let (again, reopened) = try openPartition(dir)
            #expect(reopened.logEndOffset == 13)
            try await again.close()
        }
    }

    @Test("a flipped byte inside a sealed segment is reported, never a crash; reads there fail clearly; fsck finds and repairs it")
    func sealedSegmentDamage() async throws {
        try await withTemporaryDirectory { dir in
            let (records, segments) = try await Self.populate(dir)
            #expect(segments.count >= 3)
            let victim = segments[1]
            let batches = try Self.batchPositions(victim.path)
            let middle = batches[batches.count / 2]
            try Self.patch(victim.path, at: middle.position + 40, [0xEE])
            try Self.crash(dir)

            // The agent opens: the damage is not in a tail it checks, so it surfaces on read.
            let (manager, log) = try openPartition(dir)
            #expect(log.logEndOffset == Int64(records.count))
            let error = #expect(throws: LogError.self) { try log.readRecords(from: middle.header.baseOffset) }
            #expect(error?.code == .corruptBatch)
            #expect(error?.message.contains("CRC-32C mismatch") == true)
            #expect(error?.message.contains("sluice fsck") == true)
            // Everything else still reads, and appends go on.
            #expect(try log.readRecords(from: 0, maxRecords: 3) == Array(records.prefix(3)))
            let later = segments[2].baseOffset
            #expect(try log.readRecords(from: later, maxRecords: 1) == [records[Int(later)]])
            try await log.append(try RecordBatch.encode(sampleRecords(1)))
            try await manager.close()

            var report = try LogChecker.check(dataDirectory: dir, repair: false)
            let bad = report.filter { !$0.isClean }
            #expect(bad.count == 1)
            #expect(bad[0].file == victim.path)
            #expect(bad[0].crcErrors == 1)
            #expect(bad[0].truncatedBytes == victim.sizeBytes - middle.position)

            report = try LogChecker.check(dataDirectory: dir, repair: true)
            #expect(report.contains { $0.repairs.contains { $0.contains("truncated") } })
            #expect(try Self.fsckClean(dir))
            // After repair the cut offsets are a gap that readers skip.
            let (again, repaired) = try openPartition(dir)
            let afterGap = try repaired.readRecords(from: middle.header.baseOffset, maxRecords: 1)
            #expect(afterGap.first?.offset == later)
            try await again.close()
        }
    }

    @Test("damage at the end of a sealed segment is found at startup and reported with file, position and advice")
    func sealedTailDamageReportedAtStartup() async throws {
        try await withTemporaryDirectory { dir in
            let (_, segments) = try await Self.populate(dir)
            let victim = segments[0]
            let last = try Self.batchPositions(victim.path).last!
            try Self.patch(victim.path, at: last.position + Int64(last.header.totalSize) - 2, [0x00, 0x01])
            let (manager, log) = try openPartition(dir)
            let damage = try #require(manager.recovery.damages.first)
            #expect(!damage.repaired)
            #expect(damage.file == victim.path)
            #expect(damage.position == last.position)
            #expect(damage.description.contains("sluice fsck"))
            // Sealed segments are never truncated by recovery: only fsck --repair cuts data.
            #expect(try Self.fileSize(victim.path) == victim.sizeBytes)
            #expect(log.logEndOffset > 0)
            try await manager.close()
        }
    }

    @Test("missing, truncated or scrambled indexes are rebuilt, after a crash and after a clean stop", arguments: [true, false])
    func indexRebuild(clean: Bool) async throws {
        try await withTemporaryDirectory { dir in
            let (records, segments) = try await Self.populate(dir)
            let first = segments[0].path, second = segments[1].path, active = segments.last!.path
            try FileManager.default.removeItem(atPath: first.replacingOccurrences(of: ".log", with: ".index"))
            try FileManager.default.removeItem(atPath: first.replacingOccurrences(of: ".log", with: ".timeindex"))
            try Self.truncate(second.replacingOccurrences(of: ".log", with: ".index"), to: 5)
            try Self.patch(active.replacingOccurrences(of: ".log", with: ".index"), at: 0, [0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0])
            try Self.append(second.replacingOccurrences(of: ".log", with: ".timeindex"), [1, 2, 3])
            if !clean { try Self.crash(dir) }
            let (manager, log) = try openPartition(dir)
            #expect(manager.recovery.cleanShutdown == clean)
            #expect(try allRecords(log) == records)
            for offset in stride(from: Int64(0), to: Int64(records.count), by: 5) {
                #expect(try log.readRecords(from: offset, maxRecords: 1).first?.offset == offset)
                #expect(try log.offset(forTimestamp: records[Int(offset)].timestamp) != nil)
            }
            try await manager.close()
            #expect(try Self.fsckClean(dir))
        }
    }

    @Test("the clean-shutdown marker skips the scan; without it the active segment is validated batch by batch")
    func cleanMarkerSkipsScan() async throws {
        // Damage placed before the last index entry of the active segment is only found by a full scan:
        // with every batch indexed, a clean open walks just the last batch.
        for clean in [true, false] {
            try await withTemporaryDirectory { dir in
                let (manager0, log0) = try openPartition(dir, config: ["index.interval.bytes": "0"])
                for b in 0..<10 { try await log0.append(try RecordBatch.encode(sampleRecords(2, prefix: "c\(b)"))) }
                let path = log0.segments[0].path
                try await manager0.close()
                #expect(FileManager.default.fileExists(atPath: dir + "/" + LogManager.cleanShutdownMarker))
                let batches = try Self.batchPositions(path)
                try Self.patch(path, at: batches[2].position + 30, [0xAB])
                if !clean { try Self.crash(dir) }
                let (manager, log) = try openPartition(dir)
                #expect(!FileManager.default.fileExists(atPath: dir + "/" + LogManager.cleanShutdownMarker), "the marker is consumed at open")
                if clean {
                    #expect(log.logEndOffset == 20)
                    #expect(manager.recovery.damages.isEmpty)
                } else {
                    #expect(log.logEndOffset == batches[2].header.baseOffset)
                    #expect(manager.recovery.damages.first?.position == batches[2].position)
                }
                try await manager.close()
            }
        }
    }

    @Test("index files left behind by a deleted segment and half-created topics are cleaned up at open")
    func strayFiles() async throws {
        try await withTemporaryDirectory { dir in
            let (records, segments) = try await Self.populate(dir)
            try FileManager.default.removeItem(atPath: segments[0].path)
            try FileManager.default.createDirectory(atPath: dir + "/topics/half/0", withIntermediateDirectories: true)
            try Self.crash(dir)
            let (manager, log) = try openPartition(dir)
            #expect(manager.topicNames == ["t"])
            #expect(log.logStartOffset == segments[1].baseOffset)
            #expect(try allRecords(log) == records.filter { $0.offset >= segments[1].baseOffset })
            #expect(!FileManager.default.fileExists(atPath: segments[0].path.replacingOccurrences(of: ".log", with: ".index")))
            try await manager.close()
        }
    }
}
