#if canImport(Glibc)
import Glibc
#endif
public import Prometheus
import Synchronization

/// The process's metrics: one `PrometheusCollectorRegistry`, the metric families of ``MetricName``, and a
/// render that reads only in-memory values (no disk I/O, no broker lock).
///
/// Tests make their own instance; `sluice serve` makes one per process.
public final class SluiceMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Distinct `event_type` label values kept per topic; further types are counted as `other`.
    public let maxEventTypesPerTopic: Int
    private let eventTypes = Mutex<[String: Set<String>]>([:])
    private let compression = Mutex<[String: (uncompressed: Double, stored: Double)]>([:])
    private let startTime: Double
    private let cpuSecondsCounted = Mutex<Double>(0)
    /// Handles of labelled series already made, so hot paths skip building label arrays for registry look-ups.
    private let counters = Mutex<[[String]: Counter]>([:])
    private let gauges = Mutex<[[String]: Gauge]>([:])
    private let durations = Mutex<[String: DurationHistogram]>([:])
    static let publishBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5),
    ]

    public let producerBatchBytes: ValueHistogram
    public let producerBatchRecords: ValueHistogram
    public let producerBufferBytes: Gauge
    public let producerBufferFull: Counter

    /// Text rendered by background passes (e.g. consumer-group lag), appended to each scrape as it is.
    private let expositions = Mutex<[(key: String, provider: @Sendable () -> [UInt8])]>([])

    /// The log sink whose dropped lines are exported, if any.
    private let logSink: LogSink?
    private let droppedCounted = Mutex<Int>(0)

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), maxEventTypesPerTopic: Int = 200, logSink: LogSink? = nil) {
        self.logSink = logSink
        self.registry = registry
        self.maxEventTypesPerTopic = maxEventTypesPerTopic
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        startTime = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        producerBatchBytes = registry.makeValueHistogram(descriptor: .sluice(MetricName.producerBatchBytes.name, MetricName.producerBatchBytes.help), buckets: [256, 1024, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304])
        producerBatchRecords = registry.makeValueHistogram(descriptor: .sluice(MetricName.producerBatchRecords.name, MetricName.producerBatchRecords.help), buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000])
        producerBufferBytes = registry.makeGauge(descriptor: .sluice(MetricName.producerBufferBytes.name, MetricName.producerBufferBytes.help))
        producerBufferFull = registry.makeCounter(descriptor: .sluice(MetricName.producerBufferFull.name, MetricName.producerBufferFull.help))
        _ = registry.makeCounter(descriptor: .sluice(MetricName.processCPUSeconds.name, MetricName.processCPUSeconds.help))
        for family in [MetricName.processResidentMemory, MetricName.processVirtualMemory,
                       MetricName.processOpenFDs, MetricName.processMaxFDs, MetricName.processStartTime] {
            _ = registry.makeGauge(descriptor: .sluice(family.name, family.help))
        }
        registry.makeGauge(descriptor: .sluice(MetricName.processStartTime.name, MetricName.processStartTime.help)).set(startTime)
    }

    // MARK: - Families with labels

    public func counter(_ family: MetricFamily, _ values: String...) -> Counter {
        let key = [family.name] + values
        if let cached = counters.withLock({ $0[key] }) { return cached }
        let counter = registry.makeCounter(descriptor: .sluice(family.name, family.help), labels: Array(zip(family.labels, values)))
        counters.withLock { $0[key] = counter }
        return counter
    }

    /// The gauge of `family` with these label values (cached: the write path sets partition gauges per batch).
    public func gauge(_ family: MetricFamily, _ values: String...) -> Gauge {
        gauge(family, values)
    }

    private func gauge(_ family: MetricFamily, _ values: [String]) -> Gauge {
        let key = [family.name] + values
        if let cached = gauges.withLock({ $0[key] }) { return cached }
        let gauge = registry.makeGauge(descriptor: .sluice(family.name, family.help), labels: Array(zip(family.labels, values)))
        gauges.withLock { $0[key] = gauge }
        return gauge
    }

    /// Removes a gauge's series (and forgets it, so that setting it again brings the series back).
    private func unregisterGauge(_ family: MetricFamily, _ values: String...) {
        let key = [family.name] + values
        let gauge = gauges.withLock { $0.removeValue(forKey: key) } ?? registry.makeGauge(descriptor: .sluice(family.name, family.help), labels: Array(zip(family.labels, values)))
        registry.unregisterGauge(gauge)
    }

    /// A duration histogram of `family` (cached per label values).
    public func durationHistogram(_ family: MetricFamily, _ values: String..., buckets: [Duration] = SluiceMetrics.deliveryBuckets) -> DurationHistogram {
        let key = family.name + "\u{0}" + values.joined(separator: "\u{0}")
        return durations.withLock { cache -> DurationHistogram in
            if let cached = cache[key] { return cached }
            let made = registry.makeDurationHistogram(descriptor: .sluice(family.name, family.help), labels: Array(zip(family.labels, values)), buckets: buckets)
            cache[key] = made
            return made
        }
    }

    public static let deliveryBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// The longest user-supplied label value kept (an `event_type`); longer ones are counted as `other`.
    public static let maxLabelValueLength = 100

    /// Counts a published event, keeping the `event_type` label bounded per topic (in count and length).
    public func eventPublished(topic: String, eventType: String, status: String, count: Int = 1) {
        let type = boundedEventType(topic: topic, eventType: eventType, learn: true)
        counter(MetricName.eventsPublished, topic, type, status).increment(by: Int64(count))
    }

    /// Counts a refused event without letting the refusal create label values: the topic only when it exists, the
    /// event type only when the topic has already written it (else `other`).
    public func eventRefused(topic: String, topicExists: Bool, eventType: String, status: String) {
        guard topicExists else { return }
        counter(MetricName.eventsPublished, topic, boundedEventType(topic: topic, eventType: eventType, learn: false), status).increment()
    }

    private func boundedEventType(topic: String, eventType: String, learn: Bool) -> String {
        guard eventType.utf8.count <= Self.maxLabelValueLength else { return "other" }
        return eventTypes.withLock { known in
            if known[topic, default: []].contains(eventType) { return eventType }
            if !learn || known[topic, default: []].count >= maxEventTypesPerTopic { return "other" }
            known[topic, default: []].insert(eventType)
            return eventType
        }
    }

    /// Records one publish request's latency.
    public func publishDuration(acks: String, seconds: Double) {
        let histogram = durations.withLock { cache -> DurationHistogram in
            if let cached = cache[acks] { return cached }
            let made = registry.makeDurationHistogram(
                descriptor: .sluice(MetricName.publishDuration.name, MetricName.publishDuration.help), labels: [("acks", acks)],
                buckets: Self.publishBuckets)
            cache[acks] = made
            return made
        }
        histogram.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    /// Records a batch written to `topic`.
    public func batchWritten(topic: String, records: Int, uncompressedBytes: Int, storedBytes: Int) {
        producerBatchBytes.record(Double(storedBytes))
        producerBatchRecords.record(Double(records))
        let ratio = compression.withLock { totals -> Double in
            var entry = totals[topic] ?? (0, 0)
            entry.uncompressed += Double(uncompressedBytes)
            entry.stored += Double(storedBytes)
            totals[topic] = entry
            return entry.stored > 0 ? entry.uncompressed / entry.stored : 1
        }
        gauge(MetricName.producerCompressionRatio, topic).set(ratio)
    }

    /// Updates a partition's gauges (called by the broker after appends and retention, never at scrape time).
    public func partitionChanged(topic: String, partition: Int32, startOffset: Int64, endOffset: Int64, lastStableOffset: Int64, sizeBytes: Int64, lastAppendMillis: Int64?) {
        let p = String(partition)
        gauge(MetricName.partitionLogEndOffset, topic, p).set(Double(endOffset))
        gauge(MetricName.partitionLastStableOffset, topic, p).set(Double(lastStableOffset))
        gauge(MetricName.partitionLogStartOffset, topic, p).set(Double(startOffset))
        gauge(MetricName.partitionSizeBytes, topic, p).set(Double(sizeBytes))
        if let lastAppendMillis { gauge(MetricName.partitionLastAppend, topic, p).set(Double(lastAppendMillis) / 1000) }
    }

    public func topicCreated(_ topic: String, partitions: Int) {
        gauge(MetricName.topicPartitions, topic).set(Double(partitions))
    }

    /// Removes a deleted topic's series.
    public func topicDeleted(_ topic: String, partitions: Int) {
        unregisterGauge(MetricName.topicPartitions, topic)
        unregisterGauge(MetricName.producerCompressionRatio, topic)
        for p in 0..<partitions {
            for family in [MetricName.partitionLogEndOffset, MetricName.partitionLogStartOffset, MetricName.partitionLastStableOffset, MetricName.partitionSizeBytes, MetricName.partitionLastAppend] {
                unregisterGauge(family, topic, String(p))
            }
        }
    }

    public func httpRequest(route: String, method: String, status: Int) {
        counter(MetricName.httpRequests, route, method, String(status)).increment()
    }

    // MARK: - Render

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    public func render() -> [UInt8] {
        updateProcessMetrics()
        let dropped = logSink?.droppedLines ?? 0
        let delta = droppedCounted.withLock { counted -> Int in
            defer { counted = max(counted, dropped) }
            return max(0, dropped - counted)
        }
        registry.makeCounter(descriptor: .sluice(MetricName.logLinesDropped.name, MetricName.logLinesDropped.help)).increment(by: Int64(delta))
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        registry.emit(into: &buffer)
        for (_, provider) in expositions.withLock({ $0 }) { buffer += provider() }
        return buffer
    }

    /// Adds (or replaces) a source of pre-rendered exposition text; it must not name registry families.
    public func addExposition(key: String, _ provider: @escaping @Sendable () -> [UInt8]) {
        expositions.withLock { list in
            list.removeAll { $0.key == key }
            list.append((key, provider))
        }
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Reads /proc/self (memory, CPU, descriptors): procfs, not the disk.
    private func updateProcessMetrics() {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = Self.readProc("/proc/self/stat"), let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // Fields after the command name start at field 3 (state); utime is 14, stime 15, vsize 23, rss 24.
            if fields.count > 22, let utime = Double(fields[11]), let stime = Double(fields[12]),
               let vsize = Double(fields[20]), let rss = Double(fields[21]) {
                // A counter: add what was used since the last scrape.
                let total = (utime + stime) / ticks
                let delta = cpuSecondsCounted.withLock { counted -> Double in
                    defer { counted = max(counted, total) }
                    return max(0, total - counted)
                }
                registry.makeCounter(descriptor: .sluice(MetricName.processCPUSeconds.name, MetricName.processCPUSeconds.help)).increment(by: delta)
                registry.makeGauge(descriptor: .sluice(MetricName.processVirtualMemory.name, MetricName.processVirtualMemory.help)).set(vsize)
                registry.makeGauge(descriptor: .sluice(MetricName.processResidentMemory.name, MetricName.processResidentMemory.help)).set(rss * pageSize)
            }
        }
        var count = 0
        if let dir = opendir("/proc/self/fd") {
            while readdir(dir) != nil { count += 1 }
            closedir(dir)
            count -= 3  // ".", ".." and the directory's own descriptor
        }
        registry.makeGauge(descriptor: .sluice(MetricName.processOpenFDs.name, MetricName.processOpenFDs.help)).set(Double(max(count, 0)))
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            registry.makeGauge(descriptor: .sluice(MetricName.processMaxFDs.name, MetricName.processMaxFDs.help)).set(Double(limit.rlim_cur))
        }
    }

    private static func readProc(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

extension MetricNameDescriptor {
    /// A descriptor for a full metric name from ``MetricName`` with its help text.
    public static func sluice(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)  // the unit is already part of the name
    }
}
