/// One entry of a segment's sparse offset index: the batch whose base offset is `segment base + relativeOffset`
/// starts at byte `position` of the segment file. Stored as 8 bytes, big-endian.
struct OffsetIndexEntry: Hashable, Sendable {
    static let size = 8
    var relativeOffset: UInt32
    var position: UInt32
}

/// One entry of a segment's time index: every record up to and including `segment base + relativeOffset`
/// has a timestamp no later than `timestamp`. Stored as 12 bytes, big-endian.
struct TimeIndexEntry: Hashable, Sendable {
    static let size = 12
    var timestamp: Int64
    var relativeOffset: UInt32
}

enum SegmentIndexCodec {
    static func encode(_ entry: OffsetIndexEntry) -> [UInt8] {
        var w = ByteWriter(capacity: OffsetIndexEntry.size)
        w.write(entry.relativeOffset)
        w.write(entry.position)
        return w.bytes
    }

    static func encode(_ entry: TimeIndexEntry) -> [UInt8] {
        var w = ByteWriter(capacity: TimeIndexEntry.size)
        w.write(entry.timestamp)
        w.write(entry.relativeOffset)
        return w.bytes
    }

    /// Parses an offset index file; `nil` when its size or order shows it is damaged.
    static func decodeOffsetIndex(_ bytes: [UInt8], segmentSize: Int64) -> [OffsetIndexEntry]? {
        guard bytes.count % OffsetIndexEntry.size == 0 else { return nil }
        var entries: [OffsetIndexEntry] = []
        entries.reserveCapacity(bytes.count / OffsetIndexEntry.size)
        let ok: Bool = bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            while r.remaining > 0 {
                guard let rel = try? r.read(UInt32.self), let pos = try? r.read(UInt32.self) else { return false }
                if let last = entries.last, rel <= last.relativeOffset || pos <= last.position { return false }
                if Int64(pos) >= segmentSize { return false }
                entries.append(OffsetIndexEntry(relativeOffset: rel, position: pos))
            }
            return true
        }
        return ok ? entries : nil
    }

    /// Parses a time index file; `nil` when its size or order shows it is damaged.
    static func decodeTimeIndex(_ bytes: [UInt8]) -> [TimeIndexEntry]? {
        guard bytes.count % TimeIndexEntry.size == 0 else { return nil }
        var entries: [TimeIndexEntry] = []
        let ok: Bool = bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            while r.remaining > 0 {
                guard let ts = try? r.read(Int64.self), let rel = try? r.read(UInt32.self) else { return false }
                if let last = entries.last, ts <= last.timestamp || rel < last.relativeOffset { return false }
                entries.append(TimeIndexEntry(timestamp: ts, relativeOffset: rel))
            }
            return true
        }
        return ok ? entries : nil
    }
}
