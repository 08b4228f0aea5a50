extension PartitionLog {
    /// Deletes whole sealed segments past `retention.ms` (by their newest record) or beyond `retention.bytes`
    /// (oldest first), advancing the log start offset. The active segment is never deleted.
    ///
    /// - Returns: the number of segments deleted.
    @discardableResult
    public func enforceRetention(now: Int64 = currentTimeMillis()) throws -> Int {
        let doomed = state.withLock { state -> [Segment] in
            var doomed: [Segment] = []
            var total = state.segments.reduce(0) { $0 + $1.size }
            while state.segments.count > 1 {
                let oldest = state.segments[0]
                let expired = config.retentionMs >= 0 && oldest.maxTimestamp < now - config.retentionMs
                let oversized = config.retentionBytes >= 0 && total - oldest.size >= config.retentionBytes
                guard expired || oversized else { break }
                state.segments.removeFirst()
                state.dirty.removeAll { $0 === oldest }
                oldest.isDeleted = true
                total -= oldest.size
                doomed.append(oldest)
            }
            state.logStartOffset = state.segments[0].baseOffset
            state.transactions.prune(before: state.logStartOffset)
            return doomed
        }
        // The `.log` goes first: index files without a log are removed at the next open, but a log without
        // its indexes would only have them rebuilt. Readers holding the segment keep their open descriptors.
        for segment in doomed {
            try FileIO.remove(segment.logPath)
            try FileIO.remove(segment.indexPath)
            try FileIO.remove(segment.timeIndexPath)
        }
        if !doomed.isEmpty { try FileIO.fsyncDirectory(directory) }
        return doomed.count
    }
}
