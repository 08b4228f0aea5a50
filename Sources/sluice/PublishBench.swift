import ArgumentParser
import Dispatch
import Foundation
import Logging
import SluiceBroker
import SluiceTelemetry
#if canImport(Glibc)
import CMalloc
#endif

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
            parsing and for publishing, medians of --runs, and the heap the broker still holds per event once the \
            requests are answered and released: the idempotence window's entries.
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

    /// Bytes of the heap in use (glibc's count over every arena).
    static func heapInUse() -> Int {
        #if canImport(Glibc)
        let info = mallinfo2()
        return Int(info.uordblks + info.hblkhd)
        #else
        return 0
        #endif
    }

    func validate() throws {
        guard runs >= 1, batch >= 1, count >= batch else { throw ValidationError("--runs and --batch must be at least 1 and --count at least --batch") }
    }

    func run() async throws {
        guard let text = try? String(contentsOfFile: events, encoding: .utf8) else { throw CLIError.badInput("cannot read \(events)") }
        let templates = text.split(separator: "\n").map(String.init).filter { $0.contains("@@@@@@@@@@@@@@@@") }
        guard !templates.isEmpty else { throw CLIError.badInput("\(events) has no events with a 16-'@' id to fill in") }
        // The request bodies of one run, made before the clock starts: batches of unique events. Each template is
        // split around its id once (Foundation's replacingOccurrences took minutes for a million events).
        let halves = templates.map { template in
            let range = template.range(of: "@@@@@@@@@@@@@@@@")!
            return (Array(template[..<range.lowerBound].utf8), Array(template[range.upperBound...].utf8))
        }
        let digits = Array("0123456789abcdef".utf8)
        func hex(_ value: Int) -> [UInt8] {
            (0..<8).reversed().map { digits[(value >> ($0 * 4)) & 0xF] }
        }
        func bodies(run: Int) -> [[UInt8]] {
            stride(from: 0, to: count, by: batch).map { first in
                var body: [UInt8] = [UInt8(ascii: "[")]
                for n in first..<min(first + batch, count) {
                    if n > first { body.append(UInt8(ascii: ",")) }
                    let (head, tail) = halves[n % halves.count]
                    body += head
                    body += hex(run)
                    body += hex(n)
                    body += tail
                }
                body.append(UInt8(ascii: "]"))
                return body
            }
        }
        var parse: [Double] = [], publish: [Double] = [], retained: [Double] = []
        for run in 0..<runs {
            try? FileManager.default.removeItem(atPath: dir)
            let config = try SluiceConfig.load(arguments: ["--data-dir", dir, "--compression-type", compressionType, "--num-partitions", "3"])
            let broker = try Broker(config: config, metrics: SluiceMetrics(), logger: BenchProcesses.quiet)
            let heapBefore = Self.heapInUse()
            var requests = bodies(run: run)
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
            parsed = []
            requests = []
            retained.append(Double(max(0, Self.heapInUse() - heapBefore)) / Double(count))
            try await broker.shutdown()
        }
        try? FileManager.default.removeItem(atPath: dir)
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        writeLine("| events | batch | compression | parse CPU µs/event | publish CPU µs/event | together | heap retained B/event |")
        writeLine("|---|---|---|---|---|---|---|")
        writeLine("| \(count) | \(batch) | \(compressionType) | \(String(format: "%.2f", median(parse))) | \(String(format: "%.2f", median(publish))) | \(String(format: "%.2f", median(parse) + median(publish))) | \(Int(median(retained))) |")
    }
}
