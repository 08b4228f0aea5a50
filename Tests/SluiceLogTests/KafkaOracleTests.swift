import Foundation
@testable import SluiceLog
import Testing

/// kafka-python's record parser is an independent implementation of the format: it must read what Sluice
/// writes, and Sluice must read what it builds.
@Suite("kafka-python oracle")
struct KafkaOracleTests {
    static let script = packageRoot + "/Tests/SluiceLogTests/Oracle/kafka_oracle.py"

    struct OracleBatch: Decodable {
        var base_offset: Int64
        var last_offset_delta: Int32
        var magic: Int
        var crc: UInt32
        var crc_valid: Bool
        var compression_type: Int
        var producer_id: Int64
        var producer_epoch: Int16
        var base_sequence: Int32
        var records_count: Int32
        var first_timestamp: Int64
        var max_timestamp: Int64
        var records: [OracleRecord]
    }

    struct OracleRecord: Codable {
        var offset: Int64
        var timestamp: Int64
        var key: String?
        var value: String?
        var headers: [[String?]]
    }

    static func hex(_ bytes: [UInt8]?) -> String? {
        bytes.map { $0.map { String(format: "%02x", $0) }.joined() }
    }

    static func unhex(_ string: String?) -> [UInt8]? {
        guard let string else { return nil }
        var out: [UInt8] = []
        var index = string.startIndex
        while index < string.endIndex {
            let next = string.index(index, offsetBy: 2)
            out.append(UInt8(string[index..<next], radix: 16)!)
            index = next
        }
        return out
    }

    @Test("segment files written by Sluice with every codec decode in kafka-python with valid CRCs and identical records")
    func sluiceWritesKafkaReads() async throws {
        try await withTemporaryDirectory { dir in
            // Small segments so the check spans several files and every codec.
            let (manager, log) = try openPartition(dir, config: ["segment.bytes": "1024"])
            var expected: [Record] = []
            var producers: [Int64: ProducerInfo] = [:]
            let codecs: [(Int) -> Compression] = [
                { _ in .none }, { .gzip(level: Int32(1 + $0 % 9)) }, { _ in .snappy }, { .lz4(level: Int32(1 + $0 % 12)) },
                { .zstd(level: Int32(1 + $0 % 22)) },
            ]
            for round in 0..<25 {
                let records = sampleRecords(1 + round % 9, prefix: "round\(round)", timestamp: 1_700_000_000_000 + Int64(round) * 1000)
                let compression = codecs[round % codecs.count](round)
                let producer = round % 4 == 0 ? ProducerInfo(producerId: 1000 + Int64(round), producerEpoch: 2, baseSequence: Int32(round * 10)) : .none
                let info = try await log.append(try RecordBatch.encode(records, compression: compression, producer: producer))
                producers[info.baseOffset] = producer
                for (i, var record) in records.enumerated() {
                    record.offset = info.baseOffset + Int64(i)
                    expected.append(record)
                }
            }
            try await manager.close()
            let files = log.segments.map(\.path)
            #expect(files.count > 3, "segments: \(log.segments.map(\.sizeBytes)) config \(log.config.segmentBytes)")

            let result = try runProcess("/usr/bin/env", ["python3", Self.script, "decode"] + files)
            #expect(result.status == 0, "oracle failed: \(result.stderr)")
            let batches = try result.stdout.split(separator: "\n").map {
                try JSONDecoder().decode(OracleBatch.self, from: Data($0.utf8))
            }
            #expect(batches.count == 25)
            var decoded: [Record] = []
            for batch in batches {
                #expect(batch.crc_valid, "kafka-python rejects the CRC of the batch at \(batch.base_offset)")
                #expect(batch.magic == 2)
                let producer = producers[batch.base_offset]!
                #expect(batch.producer_id == producer.producerId)
                #expect(batch.producer_epoch == producer.producerEpoch)
                #expect(batch.base_sequence == producer.baseSequence)
                #expect(Int(batch.records_count) == batch.records.count)
                #expect(batch.base_offset + Int64(batch.last_offset_delta) == batch.records.last!.offset)
                #expect(batch.max_timestamp == batch.records.map(\.timestamp).max())
                for record in batch.records {
                    decoded.append(Record(offset: record.offset, timestamp: record.timestamp, key: Self.unhex(record.key), value: Self.unhex(record.value),
                                          headers: record.headers.map { RecordHeader(key: $0[0]!, value: Self.unhex($0[1])) }))
                }
            }
            #expect(Set(batches.map(\.compression_type)) == [0, 1, 2, 3, 4])
            #expect(decoded == expected)
        }
    }

    @Test("batches built by kafka-python's DefaultRecordBatchBuilder with every codec are read by Sluice and accepted by the log")
    func kafkaWritesSluiceReads() async throws {
        try await withTemporaryDirectory { dir in
            struct Spec: Encodable {
                struct Batch: Encodable {
                    var compression: Int
                    var base_offset: Int64
                    var producer_id: Int64
                    var producer_epoch: Int16
                    var base_sequence: Int32
                    var records: [OracleRecord]
                }
                var batches: [Batch]
            }
            var spec = Spec(batches: [])
            var expected: [[Record]] = []
            var offset: Int64 = 0
            for b in 0..<10 {
                let records = sampleRecords(3 + b * 5, prefix: "py\(b)", timestamp: 1_650_000_000_000 + Int64(b))
                var withOffsets = records
                for i in withOffsets.indices { withOffsets[i].offset = offset + Int64(i) }
                expected.append(withOffsets)
                spec.batches.append(.init(
                    compression: b % 5, base_offset: offset, producer_id: b == 3 ? 42 : -1, producer_epoch: b == 3 ? 1 : -1,
                    base_sequence: b == 3 ? 0 : -1,
                    records: records.map { OracleRecord(offset: 0, timestamp: $0.timestamp, key: Self.hex($0.key), value: Self.hex($0.value),
                                                        headers: $0.headers.map { [$0.key, Self.hex($0.value)] }) }))
                offset += Int64(records.count)
            }
            let specPath = dir + "/spec.json"
            let outPath = dir + "/kafka-python.bin"
            try JSONEncoder().encode(spec).write(to: URL(fileURLWithPath: specPath))
            let result = try runProcess("/usr/bin/env", ["python3", Self.script, "build", specPath, outPath])
            #expect(result.status == 0, "oracle failed: \(result.stderr)")

            let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: outPath)))
            var position = 0
            var batches: [[UInt8]] = []
            for (index, want) in expected.enumerated() {
                let header = try data[position...].withUnsafeBytes { try RecordBatchHeader.parse($0) }
                let batch = Array(data[position..<position + header.totalSize])
                let decoded = try RecordBatch.decode(batch)
                #expect(decoded.records == want, "batch \(index)")
                #expect(decoded.header.codec == CompressionCodec(rawValue: Int16(index % 5)))
                if index == 3 { #expect(decoded.header.producer == ProducerInfo(producerId: 42, producerEpoch: 1, baseSequence: 0)) }
                batches.append(batch)
                position += header.totalSize
            }
            #expect(position == data.count)

            // The log accepts the foreign batches as they are and serves them back byte for byte.
            let (manager, log) = try openPartition(dir + "/data")
            for batch in batches { try await log.append(batch) }
            let stored = try log.read(from: 0, maxBytes: 1 << 20)
            #expect(stored.map(\.bytes) == batches)
            #expect(try allRecords(log) == expected.flatMap { $0 })
            try await manager.close()
        }
    }
}
