@testable import SluiceBroker
import Testing

@Suite("Partition-count advice")
struct PartitionAdvisorTests {
    func advice(_ target: String, _ partition: String, consumers: Int, consumer: String? = nil, size: Double? = nil, min: Int = 3, max: Int = 100) throws -> PartitionAdvice {
        try PartitionAdvice(
            target: Throughput.parse(target, messageSize: size, name: "target"),
            partitionThroughput: Throughput.parse(partition, messageSize: size, name: "partition"),
            consumerThroughput: consumer.map { try Throughput.parse($0, messageSize: size, name: "consumer") },
            consumers: consumers, minimum: min, maximum: max)
    }

    @Test("the seed material's rule and the producer/consumer rule; the larger wins")
    func rules() throws {
        var a = try advice("120MB/s", "10MB/s", consumers: 6)
        #expect(a.byThroughput == 12 && a.byConsumers == 12 && a.recommended == 12)
        a = try advice("120MB/s", "10MB/s", consumers: 10)
        #expect(a.seedRule == 20 && a.recommended == 20, "consumers × 2 dominates")
        a = try advice("120MB/s", "10MB/s", consumers: 1, consumer: "4MB/s")
        #expect(a.byConsumerThroughput == 30 && a.producerConsumerRule == 30 && a.recommended == 30, "slow consumers dominate")
        a = try advice("121MB/s", "10MB/s", consumers: 1)
        #expect(a.byThroughput == 13, "ceil")
        #expect(a.reasoning.last == "recommended: max(13, 13) = 13 → 13")
    }

    @Test("clamped to [min, max], for tiny and huge throughputs")
    func clamps() throws {
        var a = try advice("1B/s", "1GB/s", consumers: 1)
        #expect(a.byThroughput == 1 && a.recommended == 3)
        #expect(a.reasoning.last?.contains("raised to --min 3") == true)
        a = try advice("10GB/s", "1KB/s", consumers: 1)
        #expect(a.byThroughput == 10_000_000 && a.recommended == 100)
        #expect(a.reasoning.last?.contains("capped at --max 100") == true)
        a = try advice("10GB/s", "1KB/s", consumers: 1, min: 1, max: 5000)
        #expect(a.recommended == 5000)
        a = try advice("1MB/s", "1MB/s", consumers: 1, min: 1, max: 1)
        #expect(a.recommended == 1)
    }

    @Test("every unit", arguments: [
        ("500B/s", 500.0), ("2KB/s", 2000), ("1.5MB/s", 1_500_000), ("2GB/s", 2e9), ("1KiB/s", 1024), ("10MiB/s", 10_485_760),
        ("1GiB/s", 1_073_741_824), ("10 MB/s", 10e6), ("1000msg/s", 1_024_000),
    ])
    func units(text: String, bytes: Double) throws {
        #expect(try Throughput.parse(text, messageSize: 1024, name: "x").bytesPerSecond == bytes)
    }

    @Test("bad input says what is wrong", arguments: [
        ("0MB/s", "must be greater than zero"), ("-5MB/s", "must be greater than zero"), ("10MB", "needs a per-second unit"),
        ("10furlongs/s", "unknown unit"), ("MB/s", "unknown unit"), ("5msg/s", "--message-size is needed"), ("0msg/s", "positive number of messages"),
    ])
    func badThroughput(text: String, message: String) {
        let error = #expect(throws: AdvisorError.self) { try Throughput.parse(text, messageSize: text == "0msg/s" ? 100 : nil, name: "--target-throughput") }
        #expect(error?.message.contains(message) == true, "got \(error?.message ?? "-")")
        #expect(error?.message.contains("--target-throughput") == true)
    }

    @Test("bad counts and bounds; zero consumers is a topic nobody reads yet")
    func badCounts() throws {
        #expect(throws: AdvisorError.self) { try advice("1MB/s", "1MB/s", consumers: -1) }
        #expect(throws: AdvisorError.self) { try advice("1MB/s", "1MB/s", consumers: Int.max) }  // consumers × 2 would overflow
        // A topic nobody consumes yet: the throughput rule alone, clamped to the minimum.
        let unconsumed = try advice("50MB/s", "10MB/s", consumers: 0)
        #expect(unconsumed.byConsumers == 0)
        #expect(unconsumed.recommended == 5)
        #expect(try advice("1MB/s", "10MB/s", consumers: 0).recommended == 3)
        #expect(throws: AdvisorError.self) { try advice("1MB/s", "1MB/s", consumers: 1, min: 0) }
        let error = #expect(throws: AdvisorError.self) { try advice("1MB/s", "1MB/s", consumers: 1, min: 10, max: 5) }
        #expect(error?.message == "--max (5) must not be below --min (10)")
        #expect(throws: AdvisorError.self) { try Throughput.parseSize("0KiB", name: "--message-size") }
        #expect(throws: AdvisorError.self) { try Throughput.parseSize("1 parsec", name: "--message-size") }
    }
}
