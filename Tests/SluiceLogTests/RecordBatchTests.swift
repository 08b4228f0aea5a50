import CSnappyLoader
import PropertyBased
@testable import SluiceLog
import Testing

@Suite("Record batch v2 codec")
struct RecordBatchTests {
    @Test("CRC-32C matches the published check values")
    func crc32cVectors() {
        #expect(CRC32C.checksum(bytes("123456789")) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum([UInt8](0..<32)) == 0x46DD_794E)
        // Split updates agree with one pass, at every split point around the 8-byte stride.
        let data = [UInt8]((0..<100).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        for split in 0...17 {
            let first = data[..<split].withUnsafeBytes { CRC32C.update(0, $0) }
            let both = data[split...].withUnsafeBytes { CRC32C.update(first, $0) }
            #expect(both == CRC32C.checksum(data))
        }
    }

    @Test("the CPU's CRC-32C instruction (three lanes interleaved on long buffers) and the table agree on any bytes, at any length and alignment")
    func crc32cHardwareMatchesTable() {
        #if arch(x86_64)
        #expect(CRC32C.hardware, "an x86-64 CPU without SSE 4.2 is not expected on the machines we test on")
        #endif
        #expect(bytes("123456789").withUnsafeBytes { CRC32C.softwareUpdate(0, $0) } == 0xE306_9283)
        var generator = SystemRandomNumberGenerator()
        // Around the lane sizes: 3 × 256 and 3 × 8192 bytes, and long buffers that use both and a tail.
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 767, 768, 769, 1000, 4096, 24_575, 24_576, 24_583, 65_537, 1_000_003] {
            let data = (0..<(length + 7)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            for start in 0..<8 where start + length <= data.count {
                data[start..<(start + length)].withUnsafeBytes { raw in
                    #expect(CRC32C.update(0, raw) == CRC32C.softwareUpdate(0, raw), "length \(length), offset \(start)")
                    #expect(CRC32C.update(0x1234_5678, raw) == CRC32C.softwareUpdate(0x1234_5678, raw))
                }
            }
        }
    }

    @Test("zigzag varints round-trip at the edges", arguments: [Int64.min, -65, -64, -1, 0, 1, 63, 64, 300, Int64(Int32.max), Int64.max])
    func varints(value: Int64) throws {
        var writer = ByteWriter()
        writer.writeVarint(value)
        #expect(writer.count == ByteWriter.varintSize(value))
        let decoded = try writer.bytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            return try reader.readVarint()
        }
        #expect(decoded == value)
    }

    @Test("Kafka's zigzag encoding: 0→00, -1→01, 1→02, 300→d8 04")
    func varintBytes() {
        for (value, expected) in [(Int64(0), [UInt8(0)]), (-1, [1]), (1, [2]), (300, [0xD8, 0x04])] {
            var writer = ByteWriter()
            writer.writeVarint(value)
            #expect(writer.bytes == expected)
        }
    }

    @Test("header fields are where Kafka puts them", arguments: [Compression.none, .gzip(level: 1), .gzip(level: 9)])
    func headerLayout(compression: Compression) throws {
        let records = sampleRecords(5)
        let producer = ProducerInfo(producerId: 77, producerEpoch: 3, baseSequence: 12)
        let batch = try RecordBatch.encode(records, baseOffset: 1000, compression: compression, producer: producer)
        let header = try batch.withUnsafeBytes { try RecordBatch.validate($0) }
        #expect(header.baseOffset == 1000)
        #expect(header.magic == 2)
        #expect(header.totalSize == batch.count)
        #expect(header.lastOffsetDelta == 4)
        #expect(header.recordCount == 5)
        #expect(header.codec == compression.codec)
        #expect(header.baseTimestamp == records[0].timestamp)
        #expect(header.maxTimestamp == records[4].timestamp)
        #expect(header.producer == producer)
        // The CRC covers attributes..end, not the base offset: moving the batch keeps it valid.
        var moved = batch
        RecordBatch.setBaseOffset(5, in: &moved)
        let decoded = try RecordBatch.decode(moved)
        #expect(decoded.records.map(\.offset) == [5, 6, 7, 8, 9])
    }

    @Test("a fixed batch round-trips with nulls, empty values and headers")
    func fixedRoundTrip() throws {
        let records = [
            Record(timestamp: 1, key: nil, value: nil),
            Record(timestamp: 5, key: [], value: [], headers: [RecordHeader(key: "", value: [])]),
            Record(timestamp: 3, key: bytes("k"), value: bytes("héllo"), headers: [RecordHeader(key: "trace", value: nil), RecordHeader(key: "ü", value: [0, 255])]),
        ]
        for compression in [Compression.none, .gzip(level: 6)] {
            let decoded = try RecordBatch.decode(try RecordBatch.encode(records, baseOffset: 40, compression: compression))
            var expected = records
            for i in expected.indices { expected[i].offset = 40 + Int64(i) }
            #expect(decoded.records == expected)
            #expect(decoded.header.maxTimestamp == 5)
        }
    }

    @Test("random batches round-trip under both codecs")
    func propertyRoundTrip() async {
        let blob = Gen.uint8(in: 0...255).array(of: 0...300)
        let header = zip(Gen.letterOrNumber.string(of: 0...12), blob.optional).map { RecordHeader(key: $0, value: $1) }
        let record = zip(Gen.int64(in: -1_000_000...1_000_000), blob.optional, blob.optional, header.array(of: 0...4))
            .map { Record(timestamp: 1_700_000_000_000 + $0, key: $1, value: $2, headers: $3) }
        let input = zip(record.array(of: 1...40), Gen.bool, Gen.int32(in: 1...9), Gen.int64(in: 0...Int64(Int32.max)))
        await propertyCheck(count: 200, input: input) { records, gzip, level, base in
            let compression = gzip ? Compression.gzip(level: level) : .none
            let decoded = try RecordBatch.decode(try RecordBatch.encode(records, baseOffset: base, compression: compression))
            #expect(decoded.records.count == records.count)
            for (i, (got, want)) in zip(decoded.records, records).enumerated() {
                #expect(got.offset == base + Int64(i))
                #expect(got.timestamp == want.timestamp)
                #expect(got.key == want.key)
                #expect(got.value == want.value)
                #expect(got.headers == want.headers)
            }
        }
    }

    @Test("a flipped bit anywhere under the CRC is caught")
    func crcCatchesCorruption() throws {
        let batch = try RecordBatch.encode(sampleRecords(10), compression: .gzip(level: 1))
        for position in stride(from: RecordBatchHeader.attributesOffset, to: batch.count, by: 7) {
            var damaged = batch
            damaged[position] ^= 0x10
            #expect(throws: LogError.self) { try RecordBatch.decode(damaged) }
        }
        var crcOnly = batch
        crcOnly[RecordBatchHeader.crcOffset] ^= 1
        let error = #expect(throws: LogError.self) { try RecordBatch.decode(crcOnly) }
        #expect(error?.code == .corruptBatch)
        #expect(error?.message.contains("CRC-32C mismatch") == true)
    }

    @Test("a checked batch is what validation says, and encodeChecked gives the same bytes and header")
    func checkedBatch() throws {
        let records = sampleRecords(7)
        for compression in [Compression.none, .gzip(level: 6)] {
            let encoded = try RecordBatch.encode(records, compression: compression)
            let checked = try RecordBatch.encodeChecked(records, compression: compression)
            #expect(checked.bytes == encoded)
            #expect(checked.header == (try CheckedBatch(encoded).header))
            #expect(checked.header == (try encoded.withUnsafeBytes { try RecordBatch.validate($0) }))
            var damaged = encoded
            damaged[damaged.count - 1] ^= 0x04
            #expect((#expect(throws: LogError.self) { try CheckedBatch(damaged) })?.code == .corruptBatch)
        }
        var delta = try RecordBatch.encode(records)
        delta[26] = 3
        let crc = delta.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[21...])) }
        withUnsafeBytes(of: crc.bigEndian) { for i in 0..<4 { delta[17 + i] = $0[i] } }
        let error = #expect(throws: LogError.self) { try CheckedBatch(delta) }
        #expect(error?.message.contains("lastOffsetDelta 3 does not match recordCount 7") == true)
    }

    @Test("malformed batches get errors that say what is wrong")
    func malformed() throws {
        let batch = try RecordBatch.encode(sampleRecords(3))
        // Too short for a header.
        var error = #expect(throws: LogError.self) { try RecordBatch.decode(Array(batch.prefix(20))) }
        #expect(error?.message.contains("needs 61 bytes") == true)
        // Wrong length field.
        var longer = batch
        longer.append(0)
        error = #expect(throws: LogError.self) { try RecordBatch.decode(longer) }
        #expect(error?.message.contains("batchLength") == true)
        // Wrong magic.
        var magic = batch
        magic[16] = 1
        error = #expect(throws: LogError.self) { try RecordBatch.decode(magic) }
        #expect(error?.message.contains("magic byte is 1") == true)
        // A codec that does not exist, with a valid CRC.
        var unknown = batch
        unknown[22] = 6
        error = #expect(throws: LogError.self) { try RecordBatch.decode(withFreshCRC(unknown)) }
        #expect(error?.message.contains("codec 6 does not exist") == true)
        // No records.
        error = #expect(throws: LogError.self) { try RecordBatch.encode([]) }
        #expect(error?.code == .invalidBatch)
    }

    @Test("a gzip bomb is refused at the decompression limit")
    func decompressionLimit() throws {
        let huge = Record(timestamp: 0, value: [UInt8](repeating: 0, count: 4 << 20))
        let batch = try RecordBatch.encode([huge], compression: .gzip(level: 9))
        #expect(batch.count < 64 << 10)
        let error = #expect(throws: LogError.self) {
            try batch.withUnsafeBytes { try RecordBatch.decode($0, decompressedLimit: 1 << 20) }
        }
        #expect(error?.message.contains("decompresses to more than") == true)
        #expect(try RecordBatch.decode(batch).records[0].value?.count == 4 << 20)
    }

    static let codecs: [Compression] = [.gzip(level: 1), .snappy, .lz4(level: 1), .lz4(level: 9), .zstd(level: 1), .zstd(level: 19)]

    @Test("every codec round-trips batches of any size, snappy across many 32 KiB blocks and lz4 across 64 KiB blocks",
          arguments: codecs)
    func codecsRoundTrip(_ compression: Compression) throws {
        for count in [1, 7, 300, 3000] {
            let records = sampleRecords(count, prefix: "\(compression.codec)")
            let batch = try RecordBatch.encode(records, compression: compression)
            let decoded = try RecordBatch.decode(batch)
            #expect(decoded.header.codec == compression.codec)
            #expect(decoded.records.map(\.value) == records.map(\.value))
            #expect(decoded.records.map(\.headers) == records.map(\.headers))
            #expect(decoded.records.map(\.key) == records.map(\.key))
        }
    }

    @Test("snappy reads a single raw block, as librdkafka writes it, beside the xerial framing")
    func rawSnappy() throws {
        let plain = Array(String(repeating: "raw snappy block ", count: 5000).utf8)
        let raw = try plain.withUnsafeBytes { try Snappy.compress($0, framing: .raw) }
        let xerial = try plain.withUnsafeBytes { try Snappy.compress($0) }
        #expect(Array(xerial.prefix(8)) == Snappy.magic)
        #expect(raw.prefix(8).elementsEqual(Snappy.magic) == false)
        for stream in [raw, xerial] {
            #expect(try stream.withUnsafeBytes { try CompressionCodec.snappy.decompress($0, limit: 1 << 20) } == plain)
        }
    }

    @Test("a damaged compressed section gives an error for that batch, never a crash", arguments: codecs)
    func damagedSections(_ compression: Compression) throws {
        let batch = try RecordBatch.encode(sampleRecords(400), compression: compression)
        let section = RecordBatchHeader.size
        // Truncated anywhere: the batch length and CRC are made to match, so only the codec can tell.
        for cut in [1, 9, (batch.count - section) / 2, batch.count - section - 1] {
            var short = Array(batch.prefix(batch.count - cut))
            withUnsafeBytes(of: Int32(short.count - RecordBatchHeader.logOverhead).bigEndian) { for i in 0..<4 { short[8 + i] = $0[i] } }
            let error = #expect(throws: LogError.self, "\(compression.codec) cut by \(cut)") { try RecordBatch.decode(withFreshCRC(short)) }
            #expect(error?.message.contains("batch at offset") == true)
        }
        // The stream's first bytes (a frame's magic, a gzip header, snappy's framing) damaged, CRC made valid.
        var head = batch
        for i in 0..<4 { head[section + i] ^= 0x5A }
        #expect(throws: LogError.self, "\(compression.codec)") { try RecordBatch.decode(withFreshCRC(head)) }
        // Flips anywhere with a valid CRC: an error or some records, but never a crash or a hang.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var flipped = batch
            flipped[Int.random(in: section..<batch.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
            _ = try? RecordBatch.decode(withFreshCRC(flipped))
        }
        // Without a fresh CRC, any flip is the CRC's to catch.
        var plainFlip = batch
        plainFlip[batch.count - 2] ^= 0x01
        #expect((#expect(throws: LogError.self) { try RecordBatch.decode(plainFlip) })?.code == .corruptBatch)
    }

    @Test("a decompression bomb of any codec stops at the limit", arguments: codecs)
    func bombs(_ compression: Compression) throws {
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let stream = try zeros.withUnsafeBytes { try compression.compress($0) }
        #expect(stream.count < 1 << 20)
        let error = #expect(throws: DecodeError.self) {
            try stream.withUnsafeBytes { try compression.codec.decompress($0, limit: 1 << 20) }
        }
        #expect(error?.description.contains("more than 1048576 bytes") == true)
        #expect(try stream.withUnsafeBytes { try compression.codec.decompress($0, limit: 8 << 20) } == zeros)
    }

    @Test("the buffer bound for snappy blocks is snappy's own (computed without opening the library)")
    func snappyBound() throws {
        _ = try Snappy.compress(UnsafeRawBufferPointer(start: nil, count: 0))  // opens libsnappy
        #expect(Snappy.unavailable == nil)
        for count in [0, 1, 5, 6, 7, 1000, 32 * 1024, 32 * 1024 + 1, 1 << 20, 123_457] {
            #expect(Snappy.maxBlockLength(count) == snappy_max_compressed_length(count), "\(count) bytes")
        }
    }

    @Test("a snappy block that claims gigabytes is refused before anything is allocated for it")
    func snappyClaim() throws {
        // varint 4,294,967,295 and then a few bytes of nothing.
        let claim: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x01, 0x02]
        let error = #expect(throws: DecodeError.self) {
            try claim.withUnsafeBytes { try CompressionCodec.snappy.decompress($0, limit: 64 << 20) }
        }
        #expect(error?.description.contains("a block claims 4294967295") == true)
    }
}

/// The batch with its CRC-32C recomputed, so that a test reaches the checks after it.
func withFreshCRC(_ batch: [UInt8]) -> [UInt8] {
    var batch = batch
    let crc = batch.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchHeader.attributesOffset...])) }
    withUnsafeBytes(of: crc.bigEndian) { for i in 0..<4 { batch[RecordBatchHeader.crcOffset + i] = $0[i] } }
    return batch
}

@Suite("Record batch scan")
struct RecordBatchScanTests {
    @Test("scan visits what decode returns — offsets, timestamps, values, headers — for every codec, and fails where decode fails")
    func scanMatchesDecode() throws {
        var generator = SystemRandomNumberGenerator()
        for codec in CompressionCodec.allCases {
            for _ in 0..<40 {
                let records = (0..<Int.random(in: 1...30, using: &generator)).map { n in
                    Record(timestamp: 1_700_000_000_000 + Int64(n * Int.random(in: 0...5)), key: Bool.random() ? Array("k\(n)".utf8) : nil,
                           value: Bool.random() ? (0..<Int.random(in: 0...300)).map { _ in UInt8.random(in: 0...255) } : nil,
                           headers: (0..<Int.random(in: 0...6)).map { h in RecordHeader(key: "h\(h)", value: Bool.random() ? Array("v\(h)".utf8) : nil) })
                }
                let bytes = try RecordBatch.encode(records, baseOffset: Int64.random(in: 0...1_000_000), compression: Compression(codec: codec))
                let decoded = try RecordBatch.decode(bytes).records
                var scanned: [Record] = []
                try RecordBatch.scan(bytes) { view in
                    var headers: [RecordHeader] = []
                    try view.forEachHeader { key, value in headers.append(RecordHeader(key: String(decoding: key, as: UTF8.self), value: value.map(Array.init))) }
                    scanned.append(Record(offset: view.offset, timestamp: view.timestamp, key: nil, value: view.value.map(Array.init), headers: headers))
                }
                #expect(scanned.count == decoded.count)
                for (s, d) in zip(scanned, decoded) {
                    #expect(s.offset == d.offset && s.timestamp == d.timestamp && s.value == d.value && s.headers == d.headers)
                }
                var damaged = bytes
                damaged[damaged.count / 2] ^= 0x5A
                #expect(throws: (any Error).self) { try RecordBatch.scan(damaged) { _ in } }
            }
        }
    }
}
