import ArgumentParser
import Dispatch
import Foundation
import Logging
import SluiceBroker
import SluiceTelemetry

/// `sluice bench publish`: the publish path's own cost per event, in process and without HTTP: parsing batched
/// CloudEvents as the API receives them, and publishing them through the broker (partitioning, idempotence,
/// record encoding, batching, compression, the append). The rest of an HTTP publish is the server's per-request
/// cost, which `scripts/bench/peers.sh` measures with the rest.
struct PublishBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Per-event cost of parsing and publishing batched CloudEvents, in process (no HTTP).",
        discussion: """
            EVENTS is a file of CloudEvents, one JSON object per line, whose id is 16 '@' (scripts/bench/events.py); \
            each use gets a unique id. The broker runs on a scratch directory with acks=all and idempotence (the \
            defaults) and the codec given. Prints the process's CPU µs per event (user and system, all threads) for \
            parsing and for publishing, medians of --runs.
            """
    )

    @Argument(help: "CloudEvents, one per line.")
    var events: String
    @Option(name: .long, help: "Events per request.")
    var batch = 100
    @Option(name: .long, help: "Events published per run.")
    var count = 100_000
    @Option(name: .long, help: "Runs; medians are reported.")
    var runs = 5
    @Option(name: .long, help: "compression.type for the agent (none, gzip, snappy, lz4, zstd).")
    var compressionType = "none"
    @Option(name: .long, help: "Scratch directory (deleted afterwards).")
    var dir: String = NSTemporaryDirectory() + "sluice-bench-publish"

    /// CPU time of the whole process (every thread: the flusher's fsyncs and the encoding tasks count).
    static func cpuNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    func validate() throws {
        guard runs >= 1, batch >= 1, count >= batch else { throw ValidationError("--runs and --batch must be at least 1 and --count at least --batch") }
    }

    func run() async throws {
        guard let text = try? String(contentsOfFile: events, encoding: .utf8) else { throw CLIError.badInput("cannot read \(events)") }
        let templates = text.split(separator: "\n").map(String.init).filter { $0.contains("@@@@@@@@@@@@@@@@") }
        guard !templates.isEmpty else { throw CLIError.badInput("\(events) has no events with a 16-'@' id to fill in") }
        // The request bodies of one run, made before the clock starts: batches of unique events.
        func bodies(run: Int) -> [[UInt8]] {
            stride(from: 0, to: count, by: batch).map { first in
                let members = (first..<min(first + batch, count)).map { n in
                    templates[n % templates.count].replacingOccurrences(of: "@@@@@@@@@@@@@@@@", with: String(format: "%08x%08x", run, n))
                }
                return Array(("[" + members.joined(separator: ",") + "]").utf8)
            }
        }
        var parse: [Double] = [], publish: [Double] = []
        for run in 0..<runs {
            try? FileManager.default.removeItem(atPath: dir)
            let config = try SluiceConfig.load(arguments: ["--data-dir", dir, "--compression-type", compressionType, "--num-partitions", "3"])
            let broker = try Broker(config: config, metrics: SluiceMetrics(), logger: BenchProcesses.quiet)
            let requests = bodies(run: run)
            var start = Self.cpuNanoseconds()
            var parsed: [[CloudEvent]] = []
            parsed.reserveCapacity(requests.count)
            for body in requests { parsed.append(try CloudEvent.parseBatch(json: body)) }
            parse.append(Double(Self.cpuNanoseconds() - start) / 1000 / Double(count))
            start = Self.cpuNanoseconds()
            // Eight requests at a time, as concurrent clients would send them (their fsyncs are shared).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, events) in parsed.enumerated() {
                    if index >= 8 { try await group.next() }
                    group.addTask { _ = try await broker.publish(topic: "bench", events: events) }
                }
                try await group.waitForAll()
            }
            publish.append(Double(Self.cpuNanoseconds() - start) / 1000 / Double(count))
            try await broker.shutdown()
        }
        try? FileManager.default.removeItem(atPath: dir)
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        writeLine("| events | batch | compression | parse CPU µs/event | publish CPU µs/event | together |")
        writeLine("|---|---|---|---|---|---|")
        writeLine("| \(count) | \(batch) | \(compressionType) | \(String(format: "%.2f", median(parse))) | \(String(format: "%.2f", median(publish))) | \(String(format: "%.2f", median(parse) + median(publish))) |")
    }
}
