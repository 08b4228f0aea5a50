import ArgumentParser
import Foundation
import SluiceLog

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print a partition's batches and records as JSON lines.",
        discussion: """
            Each batch prints a line with "type":"batch" (offsets, codec, CRC, file position, producer fields), \
            followed by one "type":"record" line per record. Keys, values and header values print as UTF-8 \
            strings when they are valid UTF-8, otherwise base64 in *_base64 fields. Reads the files directly \
            and is safe beside a running agent.
            """
    )

    @Option(name: .long, help: "Directory holding the log.")
    var dataDir: String = "./sluice-data"
    @Option(name: .long, help: "Topic name.")
    var topic: String
    @Option(name: .long, help: "Partition number.")
    var partition: Int32 = 0
    @Option(name: .long, help: "First offset to print.")
    var fromOffset: Int64 = 0
    @Option(name: .long, help: "Stop after this many records (default: all).")
    var maxRecords: Int?
    @Flag(name: .long, help: "Print batch lines only.")
    var batchesOnly = false

    func validate() throws {
        guard fromOffset >= 0 else { throw ValidationError("--from-offset must not be negative, got \(fromOffset)") }
        guard partition >= 0 else { throw ValidationError("--partition must not be negative, got \(partition)") }
        if let maxRecords, maxRecords < 1 { throw ValidationError("--max-records must be at least 1, got \(maxRecords)") }
        if let problem = Self.nameError(topic).nilIfEmpty { throw ValidationError(problem) }
    }

    static func nameError(_ topic: String) -> String {
        do { try TopicName.validate(topic) } catch { return "--topic: \((error as? LogError)?.message ?? "\(error)")" }
        return ""
    }

    func run() throws {
        var printed = 0
        do {
            try LogReader.scan(dataDirectory: dataDir, topic: topic, partition: partition, fromOffset: fromOffset) { batch, file, position in
                let h = batch.header
                writeLine(jsonLine(BatchLine(
                    type: "batch", baseOffset: h.baseOffset, lastOffset: h.lastOffset, records: h.recordCount,
                    codec: h.codec?.description ?? "unknown(\(h.compressionCodecRaw))", crc: String(h.crc, radix: 16),
                    sizeBytes: h.totalSize, file: file, position: position, baseTimestamp: h.baseTimestamp, maxTimestamp: h.maxTimestamp,
                    producerId: h.producer.producerId, producerEpoch: h.producer.producerEpoch, baseSequence: h.producer.baseSequence)))
                if batchesOnly { return true }
                for record in try batch.records() where record.offset >= fromOffset {
                    writeLine(jsonLine(RecordLine(record)))
                    printed += 1
                    if let maxRecords, printed >= maxRecords { return false }
                }
                return true
            }
        } catch {
            throw cliError(error)
        }
    }

    struct BatchLine: Encodable {
        var type: String
        var baseOffset: Int64
        var lastOffset: Int64
        var records: Int32
        var codec: String
        var crc: String
        var sizeBytes: Int
        var file: String
        var position: Int64
        var baseTimestamp: Int64
        var maxTimestamp: Int64
        var producerId: Int64
        var producerEpoch: Int16
        var baseSequence: Int32
    }

    struct RecordLine: Encodable {
        var type = "record"
        var offset: Int64
        var timestamp: Int64
        var key: String?
        var key_base64: String?
        var value: String?
        var value_base64: String?
        var headers: [HeaderLine]

        init(_ record: Record) {
            offset = record.offset
            timestamp = record.timestamp
            (key, key_base64) = Self.text(record.key)
            (value, value_base64) = Self.text(record.value)
            headers = record.headers.map { header in
                let (text, base64) = Self.text(header.value)
                return HeaderLine(key: header.key, value: text, value_base64: base64)
            }
        }

        static func text(_ bytes: [UInt8]?) -> (String?, String?) {
            guard let bytes else { return (nil, nil) }
            if let text = String(validating: bytes, as: UTF8.self) { return (text, nil) }
            return (nil, Data(bytes).base64EncodedString())
        }
    }

    struct HeaderLine: Encodable {
        var key: String
        var value: String?
        var value_base64: String?
    }
}
