#if canImport(Glibc)
import Glibc
#endif

extension PartitionLog {
    /// How a partition is opened.
    public enum OpenMode: Sendable {
        /// After a clean shutdown: trust the indexes and walk only the tail after the last index entry.
        case clean
        /// After a crash: rebuild the active segment's indexes by validating every batch, truncate a torn tail.
        case recover
    }

    /// Opens (or creates) the partition in `directory`, recovering it as `mode` says.
    public static func open(
        topic: String, partition: Int32, directory: String, config: TopicConfig, mode: OpenMode
    ) throws -> PartitionLog {
        try FileIO.makeDirectories(directory)
        var bases: [Int64] = []
        for name in try FileIO.list(directory) {
            if name.hasSuffix(".log"), let base = parseBaseOffset(name, suffix: ".log") {
                bases.append(base)
            } else if name.hasSuffix(".tmp") {
                try FileIO.remove(directory + "/" + name)
            }
        }
        // Index files whose segment is gone (deleted by retention just before a crash) are removed.
        for name in try FileIO.list(directory) {
            for suffix in [".index", ".timeindex"] where name.hasSuffix(suffix) {
                if let base = parseBaseOffset(name, suffix: suffix), !bases.contains(base) {
                    try FileIO.remove(directory + "/" + name)
                }
            }
        }
        bases.sort()
        if bases.isEmpty { bases = [0] }

        var segments: [Segment] = []
        var damages: [LogDamage] = []
        for (i, base) in bases.enumerated() {
            let segment = try Segment(directory: directory, baseOffset: base)
            let isActive = i == bases.count - 1
            let report = try recoverSegment(segment, fullScan: isActive && mode == .recover, isActive: isActive, config: config)
            if let problem = report {
                damages.append(LogDamage(topic: topic, partition: partition, file: segment.logPath, position: problem.position,
                                     reason: problem.reason, repaired: isActive))
            }
            if let previous = segments.last, previous.nextOffset > segment.baseOffset {
                damages.append(LogDamage(topic: topic, partition: partition, file: segment.logPath, position: 0,
                                         reason: "segment starts at offset \(segment.baseOffset) but the previous one ends at \(previous.nextOffset - 1)",
                                         repaired: false))
            }
            segments.append(segment)
        }
        let log = PartitionLog(topic: topic, partition: partition, directory: directory, config: config, segments: segments, damages: damages)
        return log
    }

    static func parseBaseOffset(_ name: String, suffix: String) -> Int64? {
        let stem = name.dropLast(suffix.count)
        guard stem.count == 20, stem.allSatisfy(\.isASCII), let value = Int64(stem), value >= 0 else { return nil }
        return value
    }

    /// Loads one segment's indexes and validates the batches they do not vouch for.
    ///
    /// Returns the damage found in a sealed segment (which is reported, not truncated). A torn or corrupt tail
    /// of the active segment is truncated and reported too.
    static func recoverSegment(_ segment: Segment, fullScan: Bool, isActive: Bool, config: TopicConfig) throws -> (position: Int64, reason: String)? {
        let fileSize = try FileIO.size(segment.logFD, path: segment.logPath)
        segment.size = fileSize
        var rebuild = fullScan
        if !rebuild {
            let indexBytes = try FileIO.readFile(segment.indexPath)
            let timeBytes = try FileIO.readFile(segment.timeIndexPath)
            if let offsets = SegmentIndexCodec.decodeOffsetIndex(indexBytes, segmentSize: fileSize),
               let times = SegmentIndexCodec.decodeTimeIndex(timeBytes),
               !(offsets.isEmpty && fileSize > 0)
            {
                segment.offsetIndex = offsets
                segment.timeIndex = times
            } else {
                rebuild = true
            }
        }

        var position: Int64 = 0
        var expectedOffset = segment.baseOffset
        if rebuild {
            segment.offsetIndex = []
            segment.timeIndex = []
        } else if let last = segment.offsetIndex.last {
            // The last index entry must point at the batch it names; otherwise rebuild from scratch.
            position = Int64(last.position)
            expectedOffset = segment.baseOffset + Int64(last.relativeOffset)
            if let batch = try? segment.readBatch(at: position, limit: fileSize), batch.header.baseOffset == expectedOffset {
                segment.maxTimestamp = segment.timeIndex.last?.timestamp ?? -1
            } else {
                segment.offsetIndex = []
                segment.timeIndex = []
                position = 0
                expectedOffset = segment.baseOffset
                rebuild = true
            }
        }

        // Walk the batches from `position`, re-adding index entries after the last trusted one.
        var damage: (position: Int64, reason: String)?
        segment.size = position
        segment.nextOffset = expectedOffset
        var trustedEntries = segment.offsetIndex.count
        while position < fileSize {
            let batch: (header: RecordBatchHeader, bytes: [UInt8])
            do {
                batch = try segment.readBatch(at: position, limit: fileSize)
                guard batch.header.baseOffset >= expectedOffset else {
                    throw LogError(.corruptBatch, "batch base offset \(batch.header.baseOffset) goes back before \(expectedOffset)")
                }
            } catch {
                damage = (position, "\(error.logMessage) (\(fileSize - position) bytes from here are not valid batches)")
                break
            }
            if trustedEntries > 0 {
                // This batch is the one the last trusted index entry names; its entry already exists.
                trustedEntries = 0
                segment.bytesSinceIndexEntry = 0
                segment.bytesSinceIndexEntry += batch.header.totalSize
                segment.maxTimestamp = max(segment.maxTimestamp, batch.header.maxTimestamp)
                segment.nextOffset = batch.header.nextOffset
            } else {
                try segment.noteAppend(header: batch.header, position: position, indexInterval: config.indexIntervalBytes)
                segment.indexesNeedRewrite = true
            }
            position += Int64(batch.bytes.count)
            segment.size = position
            expectedOffset = batch.header.nextOffset
        }
        if segment.size > 0, let first = try? segment.readBatch(at: 0, limit: segment.size) {
            // segment.ms counts from the first batch; after a restart its timestamp stands in for the append time.
            segment.firstAppendTime = first.header.maxTimestamp
        }

        if let found = damage, isActive {
            // A torn or corrupt tail of the active segment: cut it off so appends continue after valid data.
            try FileIO.truncate(segment.logFD, to: found.position, path: segment.logPath)
            try FileIO.fsync(segment.logFD, path: segment.logPath)
            damage = (found.position, "truncated a torn tail: \(found.reason)")
        } else if damage != nil {
            segment.damage = "damaged from byte \(damage!.position) of \(segment.logPath): \(damage!.reason)"
        }
        if rebuild || segment.indexesNeedRewrite {
            try segment.rewriteIndexFiles()
        }
        if !isActive { try segment.sealTimeIndex() }
        if fullScan { try FileIO.fsync(segment.logFD, path: segment.logPath) }
        return damage
    }
}
