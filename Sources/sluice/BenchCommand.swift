import ArgumentParser
import Dispatch
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the storage engine (build with -c release for meaningful numbers).",
        subcommands: [LogBench.self, MetricsBench.self, LagBench.self, DeliveryBench.self, SagaBench.self, BatchesBench.self, SchemaBench.self, PublishBench.self, TraceBench.self]
    )
}

/// `sluice bench log`: append, compression, scan and fsync throughput, with each codec library alone and plain file writes as ceilings.
struct LogBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "Append/scan throughput for 16/64/256 KiB batches with every codec (each beside the codec library alone), CRC-32C against its table version, and group-commit fsync rates.",
        discussion: """
            Events are realistic ~1 KiB CloudEvents-style JSON with varied field values (seeded, so runs are \
            comparable). Every figure is the median of --runs runs. Ceilings measured in the same run on the same \
            bytes: the codec library alone compressing each batch's records section, and plain sequential write(2) of it.
            """
    )

    @Option(name: .long, help: "Scratch directory (deleted afterwards).")
    var dir: String = NSTemporaryDirectory() + "sluice-bench"
    @Option(name: .long, help: "Runs per case; medians are reported.")
    var runs: Int = 5
    @Option(name: .long, help: "Payload MiB per append case.")
    var payloadMib: Int = 64
    @Option(name: .long, help: "Seconds per fsync case.")
    var fsyncSeconds: Double = 2
    @Option(name: .long, help: "Concurrent appender counts for the fsync cases (comma-separated).")
    var appenders: String = "1,8,64"

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        guard payloadMib >= 1 else { throw ValidationError("--payload-mib must be at least 1, got \(payloadMib)") }
        guard fsyncSeconds > 0, fsyncSeconds <= 3600 else { throw ValidationError("--fsync-seconds must be from 0 to 3600 (exclusive of 0), got \(fsyncSeconds)") }
        guard !appenderCounts.isEmpty, appenderCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--appenders must be a comma-separated list of positive integers, got '\(appenders)'")
        }
    }

    var appenderCounts: [Int] { appenders.split(separator: ",").compactMap { Int($0) } }

    func run() async throws {
        var generator = SeededGenerator(seed: 42)
        let events = (0..<4096).map { _ in EventFactory.event(using: &generator) }
        let meanSize = events.reduce(0) { $0 + $1.count } / events.count
        writeLine("# sluice bench log — \(runs) runs per case, medians; \(payloadMib) MiB payload per case; events average \(meanSize) bytes")
        writeLine("")
        writeLine("| batch | codec | append MB/s | records/s | ratio | codec alone MB/s | append ÷ codec | plain write MB/s | scan MB/s |")
        writeLine("|---|---|---|---|---|---|---|---|---|")
        let codecs: [(String, Compression)] = [
            ("none", .none), ("gzip-1", .gzip(level: 1)), ("gzip-6", .gzip(level: 6)), ("snappy", .snappy),
            ("lz4-1", .lz4(level: 1)), ("lz4-9", .lz4(level: 9)), ("zstd-1", .zstd(level: 1)), ("zstd-3", .zstd(level: 3)),
        ]
        for batchKiB in [16, 64, 256] {
            let batches = Self.makeBatches(events: events, batchBytes: batchKiB << 10, totalBytes: payloadMib << 20)
            let payload = batches.reduce(0) { $0 + $1.payload }
            let records = batches.reduce(0) { $0 + $1.records.count }
            for (name, compression) in codecs {
                var append: [Double] = [], alone: [Double] = [], plain: [Double] = [], scan: [Double] = []
                var ratio = 0.0
                for _ in 0..<runs {
                    let result = try await measureAppend(batches: batches, compression: compression)
                    append.append(result.appendSeconds)
                    scan.append(result.scanSeconds)
                    ratio = result.ratio
                    if compression.codec != .none { alone.append(try Self.measureCodec(batches: batches, compression: compression)) }
                    plain.append(try measurePlainWrite(batches: batches))
                }
                let mb = Double(payload) / 1e6
                let appendRate = mb / median(append)
                let aloneRate = alone.isEmpty ? nil : mb / median(alone)
                writeLine("| \(batchKiB) KiB | \(name) | \(f1(appendRate)) | \(f0(Double(records) / median(append))) | \(f2(ratio)) | "
                    + "\(aloneRate.map(f1) ?? "–") | \(aloneRate.map { f0(100 * appendRate / $0) + "%" } ?? "–") | "
                    + "\(f1(mb / median(plain))) | \(f1(mb / median(scan))) |")
            }
        }
        writeLine("")
        writeLine("| CRC-32C over a batch | MB/s | × table |")
        writeLine("|---|---|---|")
        for size in [16 << 10, 64 << 10, 256 << 10, 1 << 20] {
            let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
            let passes = max(1, (256 << 20) / size)
            func rate(_ update: (UInt32, UnsafeRawBufferPointer) -> UInt32) -> Double {
                var times: [Double] = []
                for _ in 0..<runs {
                    var crc: UInt32 = 0  // each pass continues the last, so no pass can be skipped
                    let start = DispatchTime.now()
                    data.withUnsafeBytes { raw in for _ in 0..<passes { crc = update(crc, raw) } }
                    times.append(seconds(since: start))
                }
                return Double(size * passes) / 1e6 / median(times)
            }
            let hardware = rate(CRC32C.update), table = rate(CRC32C.tableUpdate)
            writeLine("| \(size >> 10) KiB (\(CRC32C.hardware ? "instruction, 3 lanes" : "no instruction: table")) | \(f0(hardware)) | \(f1(hardware / table))× |")
        }
        writeLine("")
        writeLine("| appenders | fsync-before-ack appends/s | fsyncs/s | records per fsync | × single appender |")
        writeLine("|---|---|---|---|---|")
        var single: Double?
        for count in appenderCounts {
            var rates: [Double] = [], syncs: [Double] = []
            for _ in 0..<runs {
                let (rate, fsyncRate) = try await measureFsync(appenders: count, event: events[0])
                rates.append(rate)
                syncs.append(fsyncRate)
            }
            let rate = median(rates)
            if single == nil { single = rate }
            writeLine("| \(count) | \(f0(rate)) | \(f0(median(syncs))) | \(f1(rate / max(median(syncs), 1))) | \(f1(rate / single!))× |")
        }
        try? FileManager.default.removeItem(atPath: dir)
    }

    struct Batch {
        var records: [Record]
        var section: [UInt8]  // the uncompressed records section, what the codec compresses
        var payload: Int
    }

    static func makeBatches(events: [[UInt8]], batchBytes: Int, totalBytes: Int) -> [Batch] {
        var batches: [Batch] = []
        var index = 0
        var total = 0
        let now = currentTimeMillis()
        while total < totalBytes {
            var records: [Record] = []
            var size = 0
            while size < batchBytes {
                let value = events[index % events.count]
                records.append(Record(timestamp: now + Int64(index), key: Array("user-\(index % 977)".utf8), value: value,
                                      headers: [RecordHeader(key: "ce_type", value: Array("order.created".utf8))]))
                size += value.count
                index += 1
            }
            let plain = try! RecordBatch.encode(records)
            batches.append(Batch(records: records, section: Array(plain[RecordBatchHeader.size...]), payload: size))
            total += size
        }
        return batches
    }

    func measureAppend(batches: [Batch], compression: Compression) async throws -> (appendSeconds: Double, scanSeconds: Double, ratio: Double) {
        try? FileManager.default.removeItem(atPath: dir)
        let log = try LogManager.open(dataDirectory: dir)
        let partition = try log.createTopic("bench", partitions: 1, config: ["flush.policy": "os"]).partitions[0]
        var stored = 0
        var sections = 0
        let start = DispatchTime.now()
        for batch in batches {
            // As the agent's producer path does: encoded, so checked, and appended without a second CRC.
            let checked = try RecordBatch.encodeChecked(batch.records, compression: compression)
            stored += checked.bytes.count
            sections += batch.section.count + RecordBatchHeader.size
            _ = try partition.appendWithoutFlush(checked)
        }
        let appendSeconds = seconds(since: start)
        let scanStart = DispatchTime.now()
        var offset: Int64 = 0
        var count = 0
        while offset < partition.logEndOffset {
            let fetched = try partition.read(from: offset, maxBytes: 4 << 20)
            for batch in fetched { count += try batch.records().count }
            offset = fetched.last!.header.nextOffset
        }
        let scanSeconds = seconds(since: scanStart)
        precondition(count == batches.reduce(0) { $0 + $1.records.count })
        try await log.close()
        return (appendSeconds, scanSeconds, Double(sections) / Double(stored))
    }

    /// The codec library alone compressing the same records sections: the ceiling of the append.
    static func measureCodec(batches: [Batch], compression: Compression) throws -> Double {
        let start = DispatchTime.now()
        var sink = 0
        for batch in batches {
            sink &+= try batch.section.withUnsafeBytes { try compression.compress($0) }.count
        }
        precondition(sink > 0)
        return seconds(since: start)
    }

    func measurePlainWrite(batches: [Batch]) throws -> Double {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/plain.bin"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CLIError.failure("cannot open \(path)") }
        let start = DispatchTime.now()
        for batch in batches {
            _ = batch.section.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        let elapsed = seconds(since: start)
        close(fd)
        unlink(path)
        return elapsed
    }

    func measureFsync(appenders: Int, event: [UInt8]) async throws -> (appendsPerSecond: Double, fsyncsPerSecond: Double) {
        try? FileManager.default.removeItem(atPath: dir)
        let log = try LogManager.open(dataDirectory: dir)
        let partition = try log.createTopic("fsync", partitions: 1, config: ["flush.policy": "sync"]).partitions[0]
        let batch = try RecordBatch.encode([Record(timestamp: currentTimeMillis(), value: event)])
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(fsyncSeconds * 1e9)
        let start = DispatchTime.now()
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<appenders {
                group.addTask {
                    var done = 0
                    while DispatchTime.now().uptimeNanoseconds < deadline {
                        try await partition.append(batch)
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = seconds(since: start)
        let fsyncs = partition.fsyncCount
        try await log.close()
        return (Double(total) / elapsed, Double(fsyncs) / elapsed)
    }
}

/// Builds ~1 KiB CloudEvents-style JSON events whose field values vary like real traffic.
enum EventFactory {
    static let types = ["order.created", "order.paid", "payment.authorized", "inventory.reserved", "shipment.dispatched", "content.watched", "user.signed_up"]
    static let words = ["alpha", "kafka", "stream", "ledger", "basket", "invoice", "crimson", "delta", "harbor", "lantern", "meadow", "nickel",
                        "orbit", "pepper", "quartz", "ripple", "saffron", "timber", "umber", "violet", "walnut", "yonder", "zephyr", "sluice"]

    static func event(using rng: inout SeededGenerator) -> [UInt8] {
        func hex(_ n: Int) -> String { (0..<n).map { _ in String(Int.random(in: 0..<16, using: &rng), radix: 16) }.joined() }
        let id = "\(hex(8))-\(hex(4))-\(hex(4))-\(hex(4))-\(hex(12))"
        let type = types.randomElement(using: &rng)!
        var items: [String] = []
        for _ in 0..<Int.random(in: 2...5, using: &rng) {
            items.append(#"{"sku":"SKU-\#(Int.random(in: 10000...99999, using: &rng))","name":"\#(words.randomElement(using: &rng)!) \#(words.randomElement(using: &rng)!)","qty":\#(Int.random(in: 1...9, using: &rng)),"price":\#(Int.random(in: 100...99999, using: &rng))}"#)
        }
        var note = ""
        while note.utf8.count < 260 { note += words.randomElement(using: &rng)! + " " }
        let json = #"{"specversion":"1.0","id":"\#(id)","source":"/services/\#(words.randomElement(using: &rng)!)","type":"\#(type)","time":"2026-11-\#(Int.random(in: 10...28, using: &rng))T\#(Int.random(in: 10...23, using: &rng)):\#(Int.random(in: 10...59, using: &rng)):\#(Int.random(in: 10...59, using: &rng)).\#(Int.random(in: 100...999, using: &rng))Z","datacontenttype":"application/json","partitionkey":"customer-\#(Int.random(in: 1...50000, using: &rng))","correlationid":"\#(hex(32))","data":{"orderId":"ord-\#(hex(10))","customerId":"cus-\#(Int.random(in: 1...50000, using: &rng))","currency":"EUR","total":\#(Int.random(in: 100...999999, using: &rng)),"items":[\#(items.joined(separator: ","))],"note":"\#(note)"}}"#
        return Array(json.utf8)
    }
}

/// SplitMix64, so benchmark data is the same in every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

func f0(_ v: Double) -> String { String(format: "%.0f", v) }
func f1(_ v: Double) -> String { String(format: "%.1f", v) }
func f2(_ v: Double) -> String { String(format: "%.2f", v) }

/// `sluice bench metrics`: how long rendering /metrics takes, and how big it is, with many partitions.
struct MetricsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Render time and size of /metrics with TOPICS × PARTITIONS partitions (4 gauges each) plus per-topic families."
    )

    @Option(name: .long, help: "Topics.")
    var topics: Int = 1000
    @Option(name: .long, help: "Partitions per topic.")
    var partitions: Int = 10
    @Option(name: .long, help: "Renders to time; the median is reported.")
    var runs: Int = 21

    func validate() throws {
        guard topics >= 1, partitions >= 1, runs >= 1 else { throw ValidationError("--topics, --partitions and --runs must be at least 1") }
    }

    func run() {
        let metrics = SluiceMetrics()
        let now = currentTimeMillis()
        for t in 0..<topics {
            let topic = "topic-\(t)"
            metrics.topicCreated(topic, partitions: partitions)
            for p in 0..<partitions {
                metrics.partitionChanged(topic: topic, partition: Int32(p), startOffset: 0, endOffset: Int64(t * p), lastStableOffset: Int64(t * p), sizeBytes: Int64(t * 1000), lastAppendMillis: now)
            }
            for type in ["order.created", "order.paid"] { metrics.eventPublished(topic: topic, eventType: type, status: "written", count: t + 1) }
            metrics.batchWritten(topic: topic, records: 10, uncompressedBytes: 10_000, storedBytes: 3000)
        }
        metrics.publishDuration(acks: "all", seconds: 0.002)
        var times: [Double] = []
        var size = 0
        for _ in 0..<runs {
            let start = DispatchTime.now()
            size = metrics.render().count
            times.append(seconds(since: start))
        }
        let series = metrics.render().split(separator: UInt8(ascii: "\n")).filter { $0.first != UInt8(ascii: "#") }.count
        writeLine("| topics × partitions | series | size | render median | render max |")
        writeLine("|---|---|---|---|---|")
        writeLine("| \(topics) × \(partitions) | \(series) | \(f1(Double(size) / 1_048_576)) MiB | \(f1(median(times) * 1000)) ms | \(f1(times.max()! * 1000)) ms |")
    }
}

/// `sluice bench lag`: the background lag pass and the /metrics render with GROUPS groups each committed on every
/// partition of a PARTITIONS-partition topic, without a budget and with `--lag-max-series`.
struct LagBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lag",
        abstract: "Cost of the background consumer-lag pass and /metrics render time with many groups and partitions."
    )

    @Option(name: .long, help: "Consumer groups, each committed on every partition.")
    var groups: Int = 50
    @Option(name: .long, help: "Partitions of the topic.")
    var partitions: Int = 1000
    @Option(name: .long, help: "Records per partition.")
    var records: Int = 20
    @Option(name: .long, help: "The budget of the second measurement (lag.max.series).")
    var maxSeries: Int = 1000
    @Option(name: .long, help: "Passes and renders to time; medians are reported.")
    var runs: Int = 11

    func validate() throws {
        guard groups >= 1, partitions >= 1, records >= 1, maxSeries >= 1, runs >= 1 else {
            throw ValidationError("--groups, --partitions, --records, --max-series and --runs must be at least 1")
        }
    }

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-lag-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
        writeLine("| groups × partitions | lag.max.series | series | first pass | pass median | render median | size | RSS before → after |")
        writeLine("|---|---|---|---|---|---|---|---|")
        for budget in [0, maxSeries] {
            let config = try SluiceConfig.load(arguments: ["--data-dir", dir, "--acks", "1", "--enable-idempotence", "false", "--linger-ms", "0",
                                                           "--lag-max-series", String(budget), "--log-level", "error"])
            let metrics = SluiceMetrics()
            let broker = try Broker(config: config, metrics: metrics, logger: logger)
            let coordinator = try GroupCoordinator(broker: broker)
            if broker.topic("bench") == nil {
                try broker.createTopic("bench", partitions: partitions)
                // Unkeyed events of one request go to one partition, round-robin per request: one batch per partition per round.
                for round in 0..<records {
                    for _ in 0..<partitions {
                        let event = CloudEvent(id: UUID().uuidString, source: "/bench", type: "bench.event", data: Array("{\"round\":\(round)}".utf8))
                        _ = try await broker.publish(topic: "bench", events: [event])
                    }
                }
                for g in 0..<groups {
                    let offsets = (0..<partitions).map { (TopicPartition("bench", Int32($0)), Int64((g + $0) % (records + 1)), "") }
                    _ = try await coordinator.commit(group: "group-\(g)", member: nil, offsets: offsets)
                }
            }
            let members = coordinator.memberCounts()
            let baseline = Self.residentMiB()
            var start = DispatchTime.now()
            coordinator.lag.evaluate(groups: members)
            let first = seconds(since: start)
            var passes: [Double] = []
            for _ in 0..<runs {
                start = DispatchTime.now()
                coordinator.lag.evaluate(groups: members)
                passes.append(seconds(since: start))
            }
            var renders: [Double] = []
            var size = 0
            for _ in 0..<runs {
                start = DispatchTime.now()
                size = metrics.render().count
                renders.append(seconds(since: start))
            }
            let series = metrics.render().split(separator: UInt8(ascii: "\n")).filter { $0.first != UInt8(ascii: "#") }.count
            writeLine("| \(groups) × \(partitions) | \(budget == 0 ? "0 (all)" : String(budget)) | \(series) | \(f0(first * 1000)) ms | \(f0(median(passes) * 1000)) ms | \(f1(median(renders) * 1000)) ms | \(f1(Double(size) / 1_048_576)) MiB | \(f0(baseline)) → \(f0(Self.residentMiB())) MiB |")
            try await broker.shutdown()
            coordinator.store.close()
        }
    }

    /// Resident memory of this process, from /proc/self/statm.
    static func residentMiB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }
}
