#if canImport(Glibc)
import Glibc
#endif

/// What `fsck` found in one segment.
public struct SegmentCheck: Sendable, Codable, Hashable {
    public var topic: String
    public var partition: Int32
    public var file: String
    public var sizeBytes: Int64
    public var batches: Int
    public var records: Int64
    public var firstOffset: Int64?
    public var lastOffset: Int64?
    /// Batches whose stored CRC-32C does not match their bytes.
    public var crcErrors: Int
    /// Bytes from the first invalid batch to the end of the file.
    public var truncatedBytes: Int64
    /// Index problems, in words; empty when both indexes are consistent with the log.
    public var indexProblems: [String]
    public var problems: [String]
    /// Batches with a valid CRC whose records cannot be decoded (also in ``problems``): reported, and left as they
    /// are by `--repair`, since they are what a client sent.
    public var undecodableBatches = 0
    /// What `--repair` changed.
    public var repairs: [String]

    public var isClean: Bool { crcErrors == 0 && truncatedBytes == 0 && indexProblems.isEmpty && problems.isEmpty }
}

/// Offline verification of a data directory: every batch of every segment, and the indexes against them.
public enum LogChecker {
    /// Checks (and with `repair`, fixes) every segment under `dataDirectory`.
    ///
    /// Repair truncates a segment at its first invalid batch and rewrites damaged indexes. Takes the data
    /// directory's lock, so it refuses to run beside a live agent.
    public static func check(dataDirectory: String, repair: Bool) throws -> [SegmentCheck] {
        guard FileIO.isDirectory(dataDirectory) else {
            throw LogError(.io, "data directory \(dataDirectory) does not exist")
        }
        let lockPath = dataDirectory + "/.lock"
        let lockFD = try FileIO.open(lockPath, flags: O_RDWR | O_CREAT)
        defer { FileIO.close(lockFD) }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            throw LogError(.io, "data directory \(dataDirectory) is in use by a running sluice process; stop it before fsck")
        }
        var results: [SegmentCheck] = []
        let topicsDirectory = dataDirectory + "/topics"
        guard FileIO.isDirectory(topicsDirectory) else { return [] }
        for name in try FileIO.list(topicsDirectory) {
            let directory = topicsDirectory + "/" + name
            guard FileIO.isDirectory(directory), FileIO.exists(directory + "/topic.json") else { continue }
            let metadata = try TopicMetadata.read(directory + "/topic.json")
            let config = (try? TopicConfig().applying(metadata.config)) ?? TopicConfig()
            for p in 0..<metadata.partitions {
                let partitionDirectory = directory + "/\(p)"
                guard FileIO.isDirectory(partitionDirectory) else {
                    var missing = SegmentCheck(topic: name, partition: Int32(p), file: partitionDirectory, sizeBytes: 0, batches: 0, records: 0,
                                               crcErrors: 0, truncatedBytes: 0, indexProblems: [], problems: ["partition directory is missing"], repairs: [])
                    if repair {
                        try FileIO.makeDirectories(partitionDirectory)
                        missing.repairs.append("created the empty partition directory")
                    }
                    results.append(missing)
                    continue
                }
                var bases = try FileIO.list(partitionDirectory).compactMap { PartitionLog.parseBaseOffset($0, suffix: ".log") }
                bases.sort()
                var previousEnd: Int64?
                for base in bases {
                    var result = try checkSegment(topic: name, partition: Int32(p), directory: partitionDirectory, base: base,
                                                  isActive: base == bases.last, indexInterval: config.indexIntervalBytes, repair: repair)
                    if let previousEnd, let first = result.firstOffset, first < previousEnd {
                        result.problems.append("first offset \(first) overlaps the previous segment, which ends at \(previousEnd - 1)")
                    }
                    previousEnd = result.lastOffset.map { $0 + 1 } ?? previousEnd
                    results.append(result)
                }
            }
        }
        return results
    }

    static func checkSegment(topic: String, partition: Int32, directory: String, base: Int64, isActive: Bool, indexInterval: Int,
                             repair: Bool) throws -> SegmentCheck {
        let segment = try Segment(directory: directory, baseOffset: base, active: true, create: false)
        return try segment.file.withDescriptor { fd in
            try checkSegment(segment, fd: fd, topic: topic, partition: partition, base: base, isActive: isActive, indexInterval: indexInterval, repair: repair)
        }
    }

    private static func checkSegment(_ segment: Segment, fd: Int32, topic: String, partition: Int32, base: Int64, isActive: Bool, indexInterval: Int,
                                     repair: Bool) throws -> SegmentCheck {
        let fileSize = try FileIO.size(fd, path: segment.logPath)
        var result = SegmentCheck(topic: topic, partition: partition, file: segment.logPath, sizeBytes: fileSize, batches: 0, records: 0,
                                  crcErrors: 0, truncatedBytes: 0, indexProblems: [], problems: [], repairs: [])
        var position: Int64 = 0
        var firstBad: Int64?
        var expected = base
        var batchPositions: [Int64: Int64] = [:]  // position → base offset
        var prefixMax: [(lastOffset: Int64, maxTimestamp: Int64)] = []
        var runningMax: Int64 = -1
        while position < fileSize {
            let available = fileSize - position
            guard available >= Int64(RecordBatchHeader.size),
                  let head = try? FileIO.pread(fd, count: RecordBatchHeader.size, at: position, path: segment.logPath),
                  let header = try? head.withUnsafeBytes({ raw throws in try RecordBatchHeader.parse(raw) }),
                  Int64(header.totalSize) <= available
            else {
                firstBad = firstBad ?? position
                result.problems.append("no valid batch header at byte \(position); \(available) bytes to the end are not batches")
                break
            }
            let bytes = try FileIO.pread(fd, count: header.totalSize, at: position, path: segment.logPath)
            do {
                try bytes.withUnsafeBytes { raw throws in _ = try RecordBatch.validate(raw) }
                if header.baseOffset < expected {
                    throw LogError(.corruptBatch, "base offset \(header.baseOffset) goes back before \(expected)")
                }
            } catch {
                if error.logCode == .corruptBatch && error.logMessage.contains("CRC") { result.crcErrors += 1 }
                result.problems.append("batch at byte \(position): \(error.logMessage)")
                firstBad = firstBad ?? position
                // The header is sane, so skip the batch and keep counting what follows.
                position += Int64(header.totalSize)
                continue
            }
            // The CRC holds, so these are the bytes a client sent: records that cannot be decoded (a damaged
            // compressed section, a codec this build does not read) are reported, never cut off by --repair.
            do {
                try bytes.withUnsafeBytes { raw throws in _ = try RecordBatch.decode(raw) }
            } catch {
                result.problems.append("batch at byte \(position) (offsets \(header.baseOffset)–\(header.lastOffset)): its records cannot be decoded: \(error.logMessage)")
                result.undecodableBatches += 1
            }
            if firstBad == nil {
                batchPositions[position] = header.baseOffset
                runningMax = max(runningMax, header.maxTimestamp)
                prefixMax.append((header.lastOffset, runningMax))
                result.batches += 1
                result.records += Int64(header.recordCount)
                result.firstOffset = result.firstOffset ?? header.baseOffset
                result.lastOffset = header.lastOffset
            }
            expected = header.nextOffset
            position += Int64(header.totalSize)
        }
        if let firstBad { result.truncatedBytes = fileSize - firstBad }
        let validEnd = firstBad ?? fileSize

        // The indexes must only name batches that exist and timestamps that bound the records before them.
        // The active segment's index files are written when it is sealed or the log closes (after a crash, recovery
        // rebuilds them), so for it only the entries present are checked, not whether they cover the whole log.
        if let offsets = SegmentIndexCodec.decodeOffsetIndex(try PartitionLog.readIndexFile(segment.indexPath), segmentSize: validEnd) {
            for entry in offsets where batchPositions[Int64(entry.position)] != base + Int64(entry.relativeOffset) {
                result.indexProblems.append("offset index entry (offset \(base + Int64(entry.relativeOffset)), byte \(entry.position)) does not name a batch start")
                break
            }
            if offsets.isEmpty && !batchPositions.isEmpty && !isActive { result.indexProblems.append("offset index is empty") }
        } else {
            result.indexProblems.append("offset index \(segment.indexPath) is damaged (wrong size, out of order, or past the end of the log)")
        }
        if let times = SegmentIndexCodec.decodeTimeIndex(try PartitionLog.readIndexFile(segment.timeIndexPath)) {
            for entry in times {
                let offset = base + Int64(entry.relativeOffset)
                let actual = prefixMax.last(where: { $0.lastOffset <= offset })?.maxTimestamp ?? -1
                if actual > entry.timestamp || offset > (result.lastOffset ?? base - 1) {
                    result.indexProblems.append("time index entry (timestamp \(entry.timestamp), offset \(offset)) does not bound the records before it")
                    break
                }
            }
        } else {
            result.indexProblems.append("time index \(segment.timeIndexPath) is damaged (wrong size or out of order)")
        }

        let repairable = firstBad != nil || !result.indexProblems.isEmpty || result.problems.count > result.undecodableBatches
        if repair && repairable {
            if let firstBad {
                try FileIO.truncate(fd, to: firstBad, path: segment.logPath)
                result.repairs.append("truncated \(fileSize - firstBad) bytes from byte \(firstBad)")
            }
            // Rebuild both indexes from the valid batches.
            var position: Int64 = 0
            segment.offsetIndex = []
            segment.timeIndex = []
            while position < validEnd {
                let batch = try Segment.readBatch(fd: fd, path: segment.logPath, at: position, limit: validEnd)
                segment.noteAppend(header: batch.header, position: position, indexInterval: indexInterval)
                position += Int64(batch.bytes.count)
            }
            if !isActive { segment.sealTimeIndex() }
            try segment.rewriteIndexFiles(durably: true)
            try FileIO.fsync(fd, path: segment.logPath)
            result.repairs.append("rebuilt the offset and time indexes")
        }
        return result
    }
}
