import Foundation
import SluiceLog
import Testing
@_exported import SluiceTestSupport

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion, capturing its output.
func runProcess(_ executable: String, _ arguments: [String], stdin: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes concurrently so a chatty child cannot block on a full pipe.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

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
