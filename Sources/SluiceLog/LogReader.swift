#if canImport(Glibc)
import Glibc
#endif

/// Read-only access to a partition's segments on disk, without taking the data directory's lock or
/// recovering anything: what `sluice dump` uses, safe beside a running agent.
public enum LogReader {
    /// Calls `visit` for each valid batch of `topic`/`partition` that holds offsets at or after `fromOffset`,
    /// in order, until it returns `false`. Stops with an error at the first invalid batch.
    public static func scan(
        dataDirectory: String, topic: String, partition: Int32, fromOffset: Int64 = 0,
        visit: (FetchedBatch, _ file: String, _ position: Int64) throws -> Bool
    ) throws {
        try TopicName.validate(topic)
        let directory = dataDirectory + "/topics/" + topic + "/\(partition)"
        guard FileIO.exists(dataDirectory + "/topics/" + topic + "/topic.json") else {
            throw LogError(.unknownTopic, "topic \(topic) does not exist in \(dataDirectory)")
        }
        guard partition >= 0, FileIO.isDirectory(directory) else {
            throw LogError(.unknownPartition, "topic \(topic) has no partition \(partition)")
        }
        let bases = try FileIO.list(directory).compactMap { PartitionLog.parseBaseOffset($0, suffix: ".log") }.sorted()
        let startIndex = bases.lastIndex(where: { $0 <= fromOffset }) ?? 0
        for base in bases[startIndex...] {
            let path = directory + "/" + Segment.fileName(baseOffset: base) + ".log"
            let fd = try FileIO.open(path, flags: O_RDONLY)
            defer { FileIO.close(fd) }
            let size = try FileIO.size(fd, path: path)
            var position: Int64 = 0
            while position < size {
                let batch = try Segment.readBatch(fd: fd, path: path, at: position, limit: size)
                defer { position += Int64(batch.bytes.count) }
                if batch.header.nextOffset <= fromOffset { continue }
                guard try visit(FetchedBatch(header: batch.header, bytes: batch.bytes), path, position) else { return }
            }
        }
    }
}
