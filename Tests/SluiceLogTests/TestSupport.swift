import Foundation
import SluiceLog
import Testing
@_exported import SluiceTestSupport

func sluice(_ arguments: String..., stdin: String? = nil) throws -> ProcessResult {
    try runProcess(sluiceBinary, arguments, stdin: stdin)
}

func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

/// Records with varied keys, values and headers.
func sampleRecords(_ count: Int, prefix: String = "r", timestamp: Int64 = 1_700_000_000_000) -> [Record] {
    (0..<count).map { i in
        Record(timestamp: timestamp + Int64(i), key: i % 3 == 0 ? nil : bytes("key-\(i % 7)"),
               value: bytes("\(prefix)-\(i) " + String(repeating: "v", count: i % 50)),
               headers: i % 2 == 0 ? [RecordHeader(key: "h", value: bytes("\(i)")), RecordHeader(key: "null", value: nil)] : [])
    }
}

/// Opens a data directory, creates `topic` if needed, and returns its partition 0.
func openPartition(_ dir: String, topic: String = "t", config: [String: String] = [:], partitions: Int = 1) throws -> (LogManager, PartitionLog) {
    let manager = try LogManager.open(dataDirectory: dir)
    let t = try manager.topic(topic) ?? manager.createTopic(topic, partitions: partitions, config: config)
    return (manager, t.partitions[0])
}

/// Every record of a partition, in offset order.
func allRecords(_ log: PartitionLog) throws -> [Record] {
    var out: [Record] = []
    var offset = log.logStartOffset
    while offset < log.logEndOffset {
        let records = try log.readRecords(from: offset, maxRecords: 10_000)
        guard let last = records.last else { break }
        out += records
        offset = last.offset + 1
    }
    return out
}
