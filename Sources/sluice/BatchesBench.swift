import ArgumentParser
import Dispatch
import Foundation
import SluiceLog

/// `sluice bench batches`: the in-process ceiling for the Kafka listener, on the very batches a Kafka client
/// produced. It reads every stored batch of a topic from a (stopped) agent's data directory, appends them to a
/// scratch partition log as the listener does (`appendWithoutFlush`, `flush.policy=os`), and reads them back
/// as whole batches as Fetch does.
struct BatchesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batches",
        abstract: "Append and read back, in process, the stored batches of a topic (the Kafka listener's ceiling).",
        discussion: """
            Stop the agent first: the data directory is opened (and locked) as the agent would open it, and only \
            read. Prints one line: RESULT records=… bytes=… batches=… append_us=… scan_us=… (medians of --runs).
            """
    )

    @Option(name: .long, help: "The stopped agent's data directory.")
    var dataDir: String
    @Option(name: .long, help: "The topic whose batches are replayed.")
    var topic: String
    @Option(name: .long, help: "Scratch directory (deleted afterwards).")
    var dir: String = NSTemporaryDirectory() + "sluice-bench-batches"
    @Option(name: .long, help: "Runs; medians are reported.")
    var runs: Int = 5

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
    }

    func run() async throws {
        let source = try LogManager.open(dataDirectory: dataDir)
        guard let stored = source.topic(topic) else {
            try await source.close()
            throw ValidationError("topic \(topic) does not exist in \(dataDir)")
        }
        var batches: [[[UInt8]]] = []
        for partition in stored.partitions {
            var offset = partition.logStartOffset
            var list: [[UInt8]] = []
            while offset < partition.logEndOffset {
                let fetched = try partition.read(from: offset, maxBytes: 4 << 20)
                list += fetched.map(\.bytes)
                offset = fetched.last!.header.nextOffset
            }
            batches.append(list)
        }
        let records = stored.partitions.reduce(0) { $0 + $1.logEndOffset - $1.logStartOffset }
        try await source.close()
        let bytes = batches.joined().reduce(0) { $0 + $1.count }

        var appendTimes: [Double] = []
        var scanTimes: [Double] = []
        for _ in 0..<runs {
            try? FileManager.default.removeItem(atPath: dir)
            let log = try LogManager.open(dataDirectory: dir)
            let partitions = try log.createTopic("bench", partitions: batches.count, config: ["flush.policy": "os"]).partitions
            let start = DispatchTime.now()
            for (index, list) in batches.enumerated() {
                for batch in list { _ = try partitions[index].appendWithoutFlush(batch) }
            }
            appendTimes.append(seconds(since: start))
            let scanStart = DispatchTime.now()
            var scanned = 0
            for partition in partitions {
                var offset: Int64 = 0
                while offset < partition.logEndOffset {
                    let fetched = try partition.read(from: offset, maxBytes: 1 << 20)
                    scanned += fetched.reduce(0) { $0 + $1.bytes.count }
                    offset = fetched.last!.header.nextOffset
                }
            }
            scanTimes.append(seconds(since: scanStart))
            precondition(scanned == bytes, "read back \(scanned) bytes of \(bytes)")
            try await log.close()
        }
        try? FileManager.default.removeItem(atPath: dir)
        writeLine("RESULT records=\(records) bytes=\(bytes) batches=\(batches.joined().count) append_us=\(Int(median(appendTimes) * 1e6)) scan_us=\(Int(median(scanTimes) * 1e6))")
    }
}
