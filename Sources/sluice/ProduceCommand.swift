import ArgumentParser
import Foundation
import SluiceLog

struct ProduceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Append lines from standard input to a topic, one record per line (offline: the agent must not be running).",
        discussion: "With --key-separator, the text before the first separator is the record key. The topic is created when missing."
    )

    @Option(name: .long, help: "Directory holding the log.")
    var dataDir: String = "./sluice-data"
    @Option(name: .long, help: "Topic name.")
    var topic: String
    @Option(name: .long, help: "Partition to append to.")
    var partition: Int32 = 0
    @Option(name: .long, help: "Partitions of the topic when it has to be created.")
    var partitions: Int = 1
    @Option(name: .long, help: "Records per batch.")
    var batchRecords: Int = 100
    @Option(name: .long, help: "Compression: none, gzip, snappy, lz4 or zstd.")
    var compression: String = "none"
    @Option(name: .long, help: "The codec's level, 1 fastest: gzip 1–9 (default 6), lz4 1–12 (default 9), zstd 1–22 (default 3), as Kafka's.")
    var compressionLevel: Int32?
    @Option(name: .long, help: "Split each line into key and value at the first occurrence of this string.")
    var keySeparator: String?

    func validate() throws {
        if let problem = DumpCommand.nameError(topic).nilIfEmpty { throw ValidationError(problem) }
        guard let codec = CompressionCodec(name: compression) else {
            throw ValidationError("--compression must be one of \(CompressionCodec.names), got '\(compression)'")
        }
        if let compressionLevel {
            guard let levels = codec.levels else { throw ValidationError("--compression \(codec) has no levels; leave out --compression-level") }
            guard levels.contains(compressionLevel) else {
                throw ValidationError("--compression-level for \(codec) must be \(levels.lowerBound)...\(levels.upperBound), got \(compressionLevel)")
            }
        }
        guard batchRecords >= 1 else { throw ValidationError("--batch-records must be at least 1, got \(batchRecords)") }
        guard partition >= 0, partition < partitions || partitions < 1 else {
            throw ValidationError("--partition \(partition) is outside 0..<\(partitions) (--partitions)")
        }
    }

    func run() async throws {
        do {
            let log = try LogManager.open(dataDirectory: dataDir)
            let topicLog = try log.topic(topic) ?? log.createTopic(topic, partitions: partitions)
            let target = try topicLog.partition(partition)
            let codec = Compression(codec: CompressionCodec(name: compression)!, level: compressionLevel)
            var pending: [Record] = []
            var appended = 0
            func flushBatch() async throws {
                guard !pending.isEmpty else { return }
                let info = try await target.append(try RecordBatch.encode(pending, compression: codec))
                appended += pending.count
                writeLine(jsonLine(["baseOffset": info.baseOffset, "lastOffset": info.lastOffset]))
                pending.removeAll()
            }
            while let line = readLine(strippingNewline: true) {
                var key: [UInt8]?
                var value = line
                if let separator = keySeparator, let range = line.range(of: separator) {
                    key = Array(line[..<range.lowerBound].utf8)
                    value = String(line[range.upperBound...])
                }
                pending.append(Record(timestamp: currentTimeMillis(), key: key, value: Array(value.utf8)))
                if pending.count >= batchRecords { try await flushBatch() }
            }
            try await flushBatch()
            try await log.close()
        } catch let error as LogError {
            throw cliError(error)
        }
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
