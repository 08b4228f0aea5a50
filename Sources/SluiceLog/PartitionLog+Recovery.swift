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
            let isActive = i == bases.count - 1
            let segment = try Segment(directory: directory, baseOffset: base, active: isActive, create: isActive)
            let report = try recoverSegment(segment, fullScan: isActive && mode == .recover, isActive: isActive, config: config)
            if let problem = report {
                damages.append(LogDamage(topic: topic, partition: partition, file: segment.logPath, position: problem.position,
                                     reason: problem.reason, repaired: isActive))
            }
            if isActive, segment.isEmpty, let previous = segments.last, previous.nextOffset > segment.baseOffset {
                // An empty segment file inside the previous one's offsets (a roll that failed half-way): drop it,
                // or the next append would reuse offsets the previous segment holds.
                try FileIO.remove(segment.logPath)
                try FileIO.remove(segment.indexPath)
                try FileIO.remove(segment.timeIndexPath)
                try FileIO.fsyncDirectory(directory)
                let reopened = try Segment(directory: directory, baseOffset: previous.baseOffset, active: true, create: false)
                let report = try recoverSegment(reopened, fullScan: mode == .recover, isActive: true, config: config)
                if let problem = report {
                    damages.append(LogDamage(topic: topic, partition: partition, file: reopened.logPath, position: problem.position,
                                             reason: problem.reason, repaired: true))
                }
                segments[segments.count - 1] = reopened
                break
            }
            if let previous = segments.last, previous.nextOffset > segment.baseOffset {
                damages.append(LogDamage(topic: topic, partition: partition, file: segment.logPath, position: 0,
                                         reason: "segment starts at offset \(segment.baseOffset) but the previous one ends at \(previous.nextOffset - 1)",
                                         repaired: false))
            }
            segments.append(segment)
        }
        let log = PartitionLog(topic: topic, partition: partition, directory: directory, config: config, segments: segments, damages: damages)
        try log.loadAbortedIndex()
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
        try segment.file.withDescriptor { fd in
            try recoverSegment(segment, fd: fd, fullScan: fullScan, isActive: isActive, config: config)
        }
    }

    /// Reads an index file; a missing one reads as empty (it is rebuilt).
    static func readIndexFile(_ path: String) throws -> [UInt8] {
        FileIO.exists(path) ? try FileIO.readFile(path) : []
    }

    private static func recoverSegment(_ segment: Segment, fd: Int32, fullScan: Bool, isActive: Bool, config: TopicConfig) throws -> (position: Int64, reason: String)? {
        let fileSize = try FileIO.size(fd, path: segment.logPath)
        segment.size = fileSize
        var rebuild = fullScan
        if !rebuild {
            let indexBytes = try readIndexFile(segment.indexPath)
            let timeBytes = try readIndexFile(segment.timeIndexPath)
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
            if let batch = try? Segment.readBatch(fd: fd, path: segment.logPath, at: position, limit: fileSize), batch.header.baseOffset == expectedOffset {
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
                batch = try Segment.readBatch(fd: fd, path: segment.logPath, at: position, limit: fileSize)
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
                segment.noteAppend(header: batch.header, position: position, indexInterval: config.indexIntervalBytes)
            }
            position += Int64(batch.bytes.count)
            segment.size = position
            expectedOffset = batch.header.nextOffset
        }
        if segment.size > 0, let first = try? Segment.readBatch(fd: fd, path: segment.logPath, at: 0, limit: segment.size) {
            // segment.ms counts from the first batch; after a restart its timestamp stands in for the append time.
            segment.firstAppendTime = first.header.maxTimestamp
        }

        if let found = damage, isActive {
            // A torn or corrupt tail of the active segment: cut it off so appends continue after valid data.
            try FileIO.truncate(fd, to: found.position, path: segment.logPath)
            try FileIO.fsync(fd, path: segment.logPath)
            damage = (found.position, "truncated a torn tail: \(found.reason)")
        } else if damage != nil {
            segment.damage = "damaged from byte \(damage!.position) of \(segment.logPath): \(damage!.reason)"
        }
        if !isActive { segment.sealTimeIndex() }
        // A sealed segment's index files are brought up to date now; the active one's are written at close.
        if !isActive && (rebuild || segment.indexesNeedRewrite) {
            try segment.rewriteIndexFiles(durably: true)
        }
        if fullScan { try FileIO.fsync(fd, path: segment.logPath) }
        return damage
    }
}
