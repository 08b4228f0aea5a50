import ArgumentParser
import Dispatch
import Foundation
import SluiceBroker
import SluiceLog
import SluiceTrace

/// `sluice bench traces`: the trace index with a million events in it: recording, looking a trace up, listing,
/// upkeep, memory, and reading it back after a restart.
struct TraceBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traces",
        abstract: "Trace index: record, look up and list among --events events (and a delivery per event), memory, restart.",
        discussion: """
            Records --events event hops (ten per correlation id by default) in the tailer's chunks of 2,000, and one \
            delivered attempt per event, into an index journalled in a scratch directory; then looks up --lookups \
            random traces (the index's own lookup, and the API's whole answer made into JSON), lists the stale ones, \
            runs the upkeep pass and reopens the index from its journal. Medians of --runs.
            """
    )

    @Option(name: .long, help: "Events indexed.")
    var events = 1_000_000
    @Option(name: .long, help: "Events per correlation id.")
    var perTrace = 10
    @Option(name: .long, help: "Traces looked up.")
    var lookups = 10_000
    @Option(name: .long, help: "Runs; medians are reported.")
    var runs = 3
    @Option(name: .long, help: "Scratch directory (deleted afterwards).")
    var dir: String = NSTemporaryDirectory() + "sluice-bench-traces"

    func validate() throws {
        guard runs >= 1, events >= 1, perTrace >= 1, lookups >= 1 else { throw ValidationError("--runs, --events, --per-trace and --lookups must be at least 1") }
    }

    func run() async throws {
        let traces = (events + perTrace - 1) / perTrace
        var recordRates: [Double] = [], recordCPU: [Double] = [], lookupP50: [Double] = [], lookupP99: [Double] = []
        var apiP50: [Double] = [], apiP99: [Double] = [], listMs: [Double] = [], maintainMs: [Double] = [], reopenS: [Double] = []
        var hopBytes: [Double] = [], residentDelta: [Double] = [], residentAfterUpkeep: [Double] = [], journalBytes: [Double] = []
        for _ in 0..<runs {
            try? FileManager.default.removeItem(atPath: dir)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let settings = TraceSettings(maxTraces: traces + 1, maxHopsPerTrace: max(1000, 2 * perTrace), maxBytes: Int.max, directory: dir)
            let ids = (0..<traces).map { String(format: "%08x-bench-%012d", $0, $0) }
            func correlation(_ n: Int) -> String { ids[n % traces] }
            let baseline = LagBench.residentMiB()
            var index: TraceIndex? = try TraceIndex(settings: settings)
            let now = currentTimeMillis()

            let cpuStart = PublishBench.cpuNanoseconds()
            let start = DispatchTime.now()
            var chunk: [(correlationId: String, hop: TraceHop)] = []
            chunk.reserveCapacity(2000)
            for n in 0..<events {
                var hop = TraceHop(kind: .event, time: now + Int64(n / traces))
                hop.eventId = "event-\(n)"
                hop.eventType = "order.created"
                hop.source = "/bench/shop"
                hop.causationId = n >= traces ? "event-\(n - traces)" : nil
                hop.topic = "orders"
                hop.partition = Int32(n % 3)
                hop.offset = Int64(n / 3)
                hop.expected = ["billing"]
                chunk.append((correlation(n), hop))
                if chunk.count == 2000 || n == events - 1 {
                    index!.recordEvents(chunk, positions: [TopicPartition("orders", Int32(n % 3)): Int64(n / 3 + 1)])
                    chunk.removeAll(keepingCapacity: true)
                }
                var delivery = TraceHop(kind: .delivery, time: now + Int64(n / traces) + 5)
                delivery.eventId = "event-\(n)"
                delivery.eventType = "order.created"
                delivery.topic = "orders"
                delivery.partition = Int32(n % 3)
                delivery.offset = Int64(n / 3)
                delivery.subscription = "billing"
                delivery.attempt = 1
                delivery.httpStatus = 200
                delivery.outcome = "delivered"
                delivery.latencyMs = 3.25
                delivery.final = true
                index!.record(delivery, correlationId: correlation(n))
                if n % 50_000 == 0 { index!.flush() }
            }
            index!.flush()
            let elapsed = seconds(since: start)
            recordRates.append(Double(2 * events) / elapsed)
            recordCPU.append(Double(PublishBench.cpuNanoseconds() - cpuStart) / 1000 / Double(2 * events))
            hopBytes.append(Double(index!.size.hopBytes))
            // Freed memory stays in the allocator's arenas between runs: only the first run's growth is this index's.
            if residentDelta.isEmpty { residentDelta.append(LagBench.residentMiB() - baseline) }
            journalBytes.append(Double((try? FileManager.default.attributesOfItem(atPath: dir + "/traces.journal")[.size] as? Int) ?? 0))

            var generator = SeededGenerator(seed: 7)
            var own: [Double] = [], api: [Double] = []
            for _ in 0..<lookups {
                let id = correlation(Int.random(in: 0..<traces, using: &generator))
                let t0 = DispatchTime.now()
                guard index!.trace(id) != nil else { throw CLIError.failure("trace \(id) is missing") }
                own.append(seconds(since: t0) * 1e6)
                let t1 = DispatchTime.now()
                _ = try JSONSerialization.data(withJSONObject: index!.trace(id)!.jsonObject)
                api.append(seconds(since: t1) * 1e6)
            }
            own.sort()
            api.sort()
            lookupP50.append(own[own.count / 2]); lookupP99.append(own[own.count * 99 / 100])
            apiP50.append(api[api.count / 2]); apiP99.append(api[api.count * 99 / 100])

            let t2 = DispatchTime.now()
            _ = index!.list(status: .stale, limit: 100)
            listMs.append(seconds(since: t2) * 1000)
            // The first pass marks every trace complete (and trims its buffer); the one timed is the pass after, as
            // it runs every second.
            index!.maintain(now: currentTimeMillis())
            if residentAfterUpkeep.isEmpty { residentAfterUpkeep.append(LagBench.residentMiB() - baseline) }
            let t3 = DispatchTime.now()
            index!.maintain(now: currentTimeMillis())
            maintainMs.append(seconds(since: t3) * 1000)
            index!.close()
            index = nil

            let t4 = DispatchTime.now()
            let reopened = try TraceIndex(settings: settings)
            reopenS.append(seconds(since: t4))
            guard reopened.size.traces == traces else { throw CLIError.failure("reopened with \(reopened.size.traces) traces, not \(traces)") }
            reopened.close()
        }
        func f1(_ x: Double) -> String { String(format: "%.1f", x) }
        writeLine("## Trace index: \(events) events over \(traces) correlation ids, and a delivery per event (medians of \(runs) runs)")
        writeLine("")
        writeLine("| hops recorded / s | CPU µs per hop | hop bytes held | per event (2 hops) | resident memory added (first run), after the first upkeep | journal | lookup p50 / p99 | API answer (lookup + JSON) p50 / p99 | list stale | upkeep pass (every second) | reopen from the journal |")
        writeLine("|---|---|---|---|---|---|---|---|---|---|---|")
        writeLine("| \(String(format: "%.0f", median(recordRates))) | \(f1(median(recordCPU))) | \(f1(median(hopBytes) / 1_048_576)) MiB | \(String(format: "%.0f", median(hopBytes) / Double(events))) B | "
            + "\(f1(median(residentDelta))) MiB, \(f1(median(residentAfterUpkeep))) MiB | \(f1(median(journalBytes) / 1_048_576)) MiB | \(f1(median(lookupP50))) / \(f1(median(lookupP99))) µs | "
            + "\(f1(median(apiP50))) / \(f1(median(apiP99))) µs | \(f1(median(listMs))) ms | \(f1(median(maintainMs))) ms | \(String(format: "%.2f", median(reopenS))) s |")
    }
}
