import Foundation
@testable import SluiceBroker
import Testing

@Suite("murmur2 partitioner")
struct PartitionerTests {
    @Test("matches kafka-python's murmur2 (Kafka's algorithm) on fixed and random keys")
    func matchesKafka() throws {
        var keys: [[UInt8]] = [[], Array("a".utf8), Array("ab".utf8), Array("abc".utf8), Array("abcd".utf8), Array("cust-1".utf8), Array("😀 ключ".utf8)]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            keys.append((0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        }
        let hexKeys = keys.map { $0.map { String(format: "%02x", $0) }.joined() }
        let script = """
            import sys
            from kafka.partitioner.default import murmur2
            for line in sys.stdin.read().split():
                key = bytes.fromhex(line[1:])
                print(murmur2(key))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        // Prefix each key so that empty keys survive whitespace splitting.
        input.fileHandleForWriting.write(Data(hexKeys.map { "k" + $0 }.joined(separator: "\n").utf8))
        try input.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let expected = text.split(separator: "\n").map { UInt32($0)! }
        #expect(expected.count == keys.count)
        for (key, want) in zip(keys, expected) {
            #expect(UInt32(bitPattern: Partitioner.murmur2(key)) == want, "key \(key)")
            #expect(Partitioner.partition(forKey: key, partitions: 12) == Int32(Int(want & 0x7FFF_FFFF) % 12))
        }
    }
}
