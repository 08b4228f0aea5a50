import ArgumentParser
import Foundation
import SluiceBroker

struct PartitionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partitions",
        abstract: "Recommend a topic's partition count from throughput and consumers, with the reasoning.",
        discussion: """
            Two rules, the larger wins, clamped to [--min, --max]: the seed material's (the larger of \
            ⌈target ÷ per-partition throughput⌉ and consumers × 2) and the producer/consumer rule (the larger of \
            ⌈target ÷ per-partition producer throughput⌉ and ⌈target ÷ per-partition consumer throughput⌉). \
            Throughputs take B, KB, MB, GB, KiB, MiB or GiB per second (120MB/s, 10MiB/s), or msg/s with \
            --message-size.
            """
    )

    @Option(name: .long, help: "Throughput the topic must carry, e.g. 120MB/s or 50000msg/s.")
    var targetThroughput: String
    @Option(name: .long, help: "What one partition sustains on the producer side, e.g. 10MB/s.")
    var partitionThroughput: String
    @Option(name: .long, help: "Consumers in the group.")
    var consumers: Int
    @Option(name: .long, help: "What one consumer sustains per partition, e.g. 20MB/s.")
    var consumerThroughput: String?
    @Option(name: .long, help: "Message size for msg/s throughputs, e.g. 1KiB.")
    var messageSize: String?
    @Option(name: .long, help: "Fewest partitions to recommend.")
    var min: Int = 3
    @Option(name: .long, help: "Most partitions to recommend.")
    var max: Int = 100
    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() throws {
        let advice: PartitionAdvice
        do {
            let size = try messageSize.map { size throws(AdvisorError) in try Throughput.parseSize(size, name: "--message-size") }
            advice = try PartitionAdvice(
                target: try Throughput.parse(targetThroughput, messageSize: size, name: "--target-throughput"),
                partitionThroughput: try Throughput.parse(partitionThroughput, messageSize: size, name: "--partition-throughput"),
                consumerThroughput: try consumerThroughput.map { text throws(AdvisorError) in try Throughput.parse(text, messageSize: size, name: "--consumer-throughput") },
                consumers: consumers, minimum: min, maximum: max)
        } catch {
            throw CLIError.badInput(error.message)
        }
        if json {
            var object: [String: Any] = [
                "recommended": advice.recommended, "seed_rule": advice.seedRule, "producer_consumer_rule": advice.producerConsumerRule,
                "by_throughput": advice.byThroughput, "by_consumers": advice.byConsumers, "min": advice.minimum, "max": advice.maximum,
                "target_bytes_per_second": advice.target.bytesPerSecond, "reasoning": advice.reasoning,
            ]
            if let byConsumer = advice.byConsumerThroughput { object["by_consumer_throughput"] = byConsumer }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            writeLine(String(decoding: data, as: UTF8.self))
            return
        }
        writeLine("recommended partitions: \(advice.recommended)")
        for line in advice.reasoning { writeLine("  " + line) }
    }
}
