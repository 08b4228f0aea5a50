import Dispatch
import Foundation
public import SluiceLog
import SluiceTelemetry
import Synchronization

/// How a group keeps up with a partition, judged over a sliding window of lag samples and commits.
/// Exported as `sluice_consumer_group_status` with these raw values.
public enum LagStatus: Int, Sendable, Comparable, CaseIterable {
    /// Caught up, or keeping up.
    case ok = 0
    /// Lag grew over the window (the last third's lowest lag is above the first third's highest) although the
    /// group commits progress.
    case warn = 1
    /// Commits arrive but the committed offset does not move while there is lag.
    case stall = 2
    /// No commit within the window while there is lag.
    case stop = 3
    /// Lag in seconds is above the group's SLO (`lag.slo.ms`, or its `consumer_groups` entry).
    case err = 4

    public var name: String {
        switch self {
        case .ok: "OK"
        case .warn: "WARN"
        case .stall: "STALL"
        case .stop: "STOP"
        case .err: "ERR"
        }
    }

    public static func < (a: LagStatus, b: LagStatus) -> Bool { a.rawValue < b.rawValue }
}

/// One group's position on one partition.
public struct PartitionLag: Sendable {
    public var key: GroupPartition
    public var committed: CommittedOffset
    public var logStartOffset: Int64
    public var logEndOffset: Int64
    /// Records between the committed offset (or the log start, if retention passed it) and the log end.
    public var lag: Int64
    /// Records deleted by retention before the group read them.
    public var expired: Int64
    /// Now minus the timestamp of the first unconsumed record; 0 when caught up.
    public var lagSeconds: Double
    public var commitAgeSeconds: Double
    public var status: LagStatus
}

public struct LagSettings: Sendable {
    public var intervalMs: Int64
    public var windowMs: Int64
    public var sloMs: Int64
    public var groupSLOs: [String: Int64]
    public var maxSeries: Int
    /// Bytes per second one partition takes, for the live partition-count recommendation.
    public var partitionThroughput: Double

    public init(config: SluiceConfig) {
        intervalMs = config.integer("lag.interval.ms")
        windowMs = config.integer("lag.window.ms")
        sloMs = config.integer("lag.slo.ms")
        groupSLOs = config.groupLagSLOs
        maxSeries = config.int("lag.max.series")
        partitionThroughput = Double(config.integer("partition.throughput.bytes"))
    }

    func slo(group: String) -> Int64 { groupSLOs[group] ?? sloMs }
}

/// Turns committed offsets into lag, lag in seconds, expired records, commit ages and a status per group and
/// partition, in the background: each pass renders the consumer-group (and partition advice) families into
/// a snapshot that `/metrics` copies out, so a scrape never touches the log.
///
/// Lag in seconds is exact: the timestamp of the first unconsumed record is read from its batch (found by the
/// offset index), and the batch's timestamps are cached so that many groups at the same offset cost one read.
public final class LagMonitor: Sendable {
    public let settings: LagSettings
    let broker: Broker
    let store: OffsetStore
    private let windows = Mutex<[GroupPartition: [Sample]]>([:])
    private let statuses = Mutex<[GroupPartition: LagStatus]>([:])
    private let timestamps = Mutex<[TopicPartition: [CachedBatch]]>([:])
    /// Duration of the last pass, exported by the next one.
    private let lastPassSeconds = Mutex<Double>(0)
    /// On a cluster: each group partition's committed offset and when it was first seen.
    private let remoteSeen = Mutex<[GroupPartition: (offset: Int64, time: Int64)]>([:])
    /// On a cluster: the timestamp of the record at a partition's first unconsumed offset, kept while it is still asked for.
    private let remoteTimestamps = Mutex<[TopicPartition: (offset: Int64, timestamp: Int64)]>([:])
    /// On a cluster: the last pass's rows per group, which group descriptions show.
    private let remoteRows = Mutex<[String: [PartitionLag]]>([:])

    /// On a cluster: the lag rows of `group` from the last pass (nil when the pass did not see the group).
    public func clusterRows(group: String) -> [PartitionLag]? { remoteRows.withLock { $0[group] } }
    /// On a cluster: the groups the last pass saw.
    public var clusterGroups: [String] { remoteRows.withLock { Array($0.keys) } }

    public struct Sample: Sendable {
        public var time: Int64
        public var committedOffset: Int64
        public var commitTime: Int64
        public var lag: Int64

        public init(time: Int64, committedOffset: Int64, commitTime: Int64, lag: Int64) {
            self.time = time
            self.committedOffset = committedOffset
            self.commitTime = commitTime
            self.lag = lag
        }
    }

    struct CachedBatch {
        var baseOffset: Int64
        var timestamps: [Int64]
    }

    init(broker: Broker, store: OffsetStore, settings: LagSettings) {
        self.broker = broker
        self.store = store
        self.settings = settings
        broker.metrics.addExposition(key: "consumer_groups") { [weak self] in self?.snapshot ?? [] }
    }

    private let rendered = Mutex<[UInt8]>([])
    /// The text of the last pass.
    public var snapshot: [UInt8] { rendered.withLock { $0 } }

    // MARK: - Computing one partition

    /// Lag of one committed offset now; `nil` when its topic or partition no longer exists.
    public func compute(_ key: GroupPartition, _ committed: CommittedOffset, now: Int64) -> PartitionLag? {
        var pass = Pass(monitor: self)
        defer { pass.finish() }
        return pass.compute(key, committed, now: now, status: statuses.withLock { $0[key] } ?? .ok)
    }

    /// One computation over many offsets: partitions are looked up once, and batch timestamps are read at most
    /// once per partition (kept for the next pass when the committed offsets are still within them).
    struct Pass {
        let monitor: LagMonitor
        var logs: [TopicPartition: (log: PartitionLog, start: Int64, end: Int64)?] = [:]
        var cache: [TopicPartition: [CachedBatch]]
        /// Batches looked up in this pass; only they are kept for the next.
        var used: [TopicPartition: [CachedBatch]] = [:]

        init(monitor: LagMonitor) {
            self.monitor = monitor
            cache = monitor.timestamps.withLock { $0 }
        }

        mutating func compute(_ key: GroupPartition, _ committed: CommittedOffset, now: Int64, status: LagStatus) -> PartitionLag? {
            let tp = TopicPartition(key.topic, key.partition)
            let entry: (log: PartitionLog, start: Int64, end: Int64)?
            if let known = logs[tp] {
                entry = known
            } else {
                // Under read_committed, lag counts to the last stable offset: what the group can read now.
                let isolation = monitor.broker.isolation
                entry = (try? monitor.broker.partitionLog(tp)).map { ($0, $0.logStartOffset, $0.visibleEnd(isolation)) }
                logs[tp] = entry
            }
            guard let (log, start, end) = entry else { return nil }
            let first = max(committed.offset, start)
            let lag = max(0, end - first)
            var lagSeconds = 0.0
            if lag > 0, let timestamp = timestamp(tp, log, at: first) {
                lagSeconds = max(0, Double(now - timestamp) / 1000)
            }
            return PartitionLag(key: key, committed: committed, logStartOffset: start, logEndOffset: end, lag: lag,
                                expired: max(0, start - committed.offset), lagSeconds: lagSeconds,
                                commitAgeSeconds: max(0, Double(now - committed.commitTime) / 1000), status: lag == 0 ? .ok : status)
        }

        /// The timestamp of the record at `offset`: from a cached batch, else one read of the batch holding it.
        mutating func timestamp(_ tp: TopicPartition, _ log: PartitionLog, at offset: Int64) -> Int64? {
            func lookup(_ batches: [CachedBatch]?) -> CachedBatch? {
                batches?.first { offset >= $0.baseOffset && offset - $0.baseOffset < Int64($0.timestamps.count) }
            }
            var batch = lookup(used[tp])
            if batch == nil, let cached = lookup(cache[tp]) {
                batch = cached
                used[tp, default: []].append(cached)
            }
            if batch == nil {
                guard let read = try? log.read(from: offset, maxBytes: 1).first, let records = try? read.records(),
                      let firstRecord = records.first else { return nil }
                // Records of a batch have consecutive offsets.
                let cached = CachedBatch(baseOffset: firstRecord.offset, timestamps: records.map(\.timestamp))
                used[tp, default: []].append(cached)
                batch = cached
            }
            guard let batch, offset >= batch.baseOffset, offset - batch.baseOffset < Int64(batch.timestamps.count) else { return nil }
            return batch.timestamps[Int(offset - batch.baseOffset)]
        }

        /// Keeps the batches this pass used (a point lookup keeps what was there as well).
        func finish() {
            monitor.timestamps.withLock { cache in
                for (tp, batches) in used {
                    var merged = batches
                    for old in cache[tp] ?? [] where !merged.contains(where: { $0.baseOffset == old.baseOffset }) && merged.count < 64 { merged.append(old) }
                    cache[tp] = merged
                }
            }
        }
    }

    /// A status from the samples of the window (oldest first, the current one last).
    public static func status(samples: [Sample], lagSeconds: Double, now: Int64, windowMs: Int64, sloMs: Int64) -> LagStatus {
        guard let current = samples.last, current.lag > 0 else { return .ok }
        if sloMs > 0 && lagSeconds * 1000 > Double(sloMs) { return .err }
        if now - current.commitTime > windowMs { return .stop }
        guard samples.count >= 3, let first = samples.first else { return .ok }
        let committedDuringWindow = current.commitTime > first.time
        if committedDuringWindow && current.committedOffset == first.committedOffset { return .stall }
        // Growing: even the lowest lag of the window's last third is above the highest of its first third, so a
        // consumer that keeps catching up between publishes is not flagged.
        let third = max(1, samples.count / 3)
        let early = samples.prefix(third).map(\.lag).max() ?? 0
        let late = samples.suffix(third).map(\.lag).min() ?? 0
        if late > early { return .warn }
        return .ok
    }

    func forget(group: String) {
        windows.withLock { $0 = $0.filter { $0.key.group != group } }
        statuses.withLock { $0 = $0.filter { $0.key.group != group } }
    }

    // MARK: - The background pass

    /// Computes every group's lag and status and renders the snapshot. `groups`: live membership per group.
    public func evaluate(groups: [String: (members: Int, state: GroupState, topics: Set<String>)], now: Int64 = currentTimeMillis()) {
        let started = DispatchTime.now().uptimeNanoseconds
        let committed = store.all
        var rows: [PartitionLag] = []
        rows.reserveCapacity(committed.count)
        var newStatuses: [GroupPartition: LagStatus] = [:]
        newStatuses.reserveCapacity(committed.count)
        // The windows are taken out and updated in place (no copy of every sample array each pass).
        var windows = self.windows.withLock { windows in
            defer { windows = [:] }
            return windows
        }
        var pass = Pass(monitor: self)
        for (key, offset) in committed {
            guard let row = pass.compute(key, offset, now: now, status: .ok) else { continue }
            rows.append(judge(row, windows: &windows, now: now))
            newStatuses[key] = rows[rows.count - 1].status
        }
        let used = pass.used
        timestamps.withLock { $0 = used }
        finish(rows: rows, statuses: newStatuses, windows: windows, groups: groups, started: started)
    }

    /// The row's status from its window of samples (the sample of this pass added).
    func judge(_ row: PartitionLag, windows: inout [GroupPartition: [Sample]], now: Int64) -> PartitionLag {
        var row = row
        let key = row.key
        let sample = Sample(time: now, committedOffset: row.committed.offset, commitTime: row.committed.commitTime, lag: row.lag)
        // At most about ten samples per window (plus the latest), whatever lag.interval.ms: memory stays
        // bounded with many partitions, and thirds of the window still have samples.
        let windowMs = settings.windowMs
        row.status = windows[key, default: []].updateWindow(with: sample, windowMs: windowMs) { samples in
            Self.status(samples: samples, lagSeconds: row.lagSeconds, now: now, windowMs: windowMs, sloMs: settings.slo(group: key.group))
        }
        return row
    }

    /// Keeps the pass's windows and statuses and renders its rows.
    func finish(rows: [PartitionLag], statuses newStatuses: [GroupPartition: LagStatus], windows: [GroupPartition: [Sample]],
                groups: [String: (members: Int, state: GroupState, topics: Set<String>)], started: UInt64) {
        var windows = windows
        if windows.count > newStatuses.count { windows = windows.filter { newStatuses[$0.key] != nil } }  // offsets deleted since
        self.windows.withLock { $0 = windows }
        statuses.withLock { $0 = newStatuses }
        let text = render(rows: rows, groups: groups)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        rendered.withLock { $0 = text.bytes }
        lastPassSeconds.withLock { $0 = seconds }
    }

    // MARK: - On a cluster

    /// One pass over the cluster's groups (``RemoteLog/lagGroups()``): their committed offsets, each partition's
    /// offsets, and the timestamp of the first unconsumed record, cached until the committed offset moves. The
    /// cluster does not say when a commit was made, so a commit's time is when its offset was first seen; a
    /// commit that does not move the offset is not seen (STOP and STALL then read the same).
    public func evaluate(remote: any RemoteLog, now: Int64 = currentTimeMillis()) async {
        let started = DispatchTime.now().uptimeNanoseconds
        let groups = await remote.lagGroups()
        var rows: [PartitionLag] = []
        var newStatuses: [GroupPartition: LagStatus] = [:]
        var windows = self.windows.withLock { windows in
            defer { windows = [:] }
            return windows
        }
        var ends: [TopicPartition: (start: Int64, end: Int64)?] = [:]
        var seen = remoteSeen.withLock { $0 }
        var firstTimes = remoteTimestamps.withLock { $0 }
        var keptTimes: [TopicPartition: (offset: Int64, timestamp: Int64)] = [:]
        for group in groups.keys.sorted() {
            guard let committed = try? await remote.committedOffsets(group: group, topics: groups[group]?.topics ?? []) else { continue }
            for (tp, offset) in committed.sorted(by: { $0.key < $1.key }) {
                let key = GroupPartition(group: group, topic: tp.topic, partition: tp.partition)
                if ends[tp] == nil { ends[tp] = .some(try? await remote.offsets(topic: tp.topic, partition: tp.partition)) }
                guard let (start, end) = ends[tp] ?? nil else { continue }
                if seen[key]?.offset != offset { seen[key] = (offset, now) }
                let first = max(offset, start)
                let lag = max(0, end - first)
                var lagSeconds = 0.0
                if lag > 0 {
                    var timestamp = firstTimes[tp].flatMap { $0.offset == first ? $0.timestamp : nil }
                    if timestamp == nil {
                        let read = try? await remote.read(topic: tp.topic, partition: tp.partition, from: first, offsets: (start, end), maxRecords: 1,
                                                          maxBytes: 1, maxWaitMs: 0)
                        timestamp = read?.records.first?.timestamp
                    }
                    if let timestamp {
                        keptTimes[tp] = (first, timestamp)
                        lagSeconds = max(0, Double(now - timestamp) / 1000)
                    }
                }
                let row = PartitionLag(key: key, committed: CommittedOffset(offset: offset, commitTime: seen[key]!.time), logStartOffset: start,
                                       logEndOffset: end, lag: lag, expired: max(0, start - offset), lagSeconds: lagSeconds,
                                       commitAgeSeconds: max(0, Double(now - seen[key]!.time) / 1000), status: .ok)
                rows.append(judge(row, windows: &windows, now: now))
                newStatuses[key] = rows[rows.count - 1].status
            }
        }
        firstTimes = keptTimes
        seen = seen.filter { newStatuses[$0.key] != nil }
        remoteSeen.withLock { $0 = seen }
        remoteTimestamps.withLock { $0 = firstTimes }
        remoteRows.withLock { $0 = Dictionary(grouping: rows, by: \.key.group).merging(groups.keys.map { ($0, []) }) { rows, _ in rows } }
        let members = groups.mapValues { (members: $0.members, state: $0.members > 0 ? GroupState.stable : GroupState.empty, topics: $0.topics) }
        finish(rows: rows, statuses: newStatuses, windows: windows, groups: members, started: started)
    }
}

extension Array where Element == LagMonitor.Sample {
    /// Adds the latest sample (replacing the previous one when it is closer than a tenth of the window to the one
    /// before it, so a window holds about ten samples whatever the pass interval), drops samples older than the
    /// window, and judges the window.
    mutating func updateWindow(with sample: LagMonitor.Sample, windowMs: Int64, judge: ([LagMonitor.Sample]) -> LagStatus) -> LagStatus {
        if count >= 2, sample.time - self[count - 2].time < windowMs / 10 {
            self[count - 1] = sample
        } else {
            append(sample)
        }
        if let firstKept = firstIndex(where: { sample.time - $0.time <= windowMs }), firstKept > 0 {
            removeFirst(firstKept)
        }
        return judge(self)
    }
}

extension LagMonitor {
    fileprivate func render(rows: [PartitionLag], groups: [String: (members: Int, state: GroupState, topics: Set<String>)]) -> (bytes: [UInt8], omitted: Int) {
        let budgeted = settings.maxSeries > 0 ? min(rows.count, settings.maxSeries) : rows.count
        var out = ExpositionWriter(capacity: budgeted * 450 + rows.count / 10 * 120 + 8192)
        // Per-partition series, within the budget: the most lagging partitions first.
        var kept = rows
        var omitted = 0
        let perPartition = [MetricName.groupLag, MetricName.groupLagSeconds, MetricName.groupExpiredRecords,
                            MetricName.groupCommittedOffset, MetricName.groupCommitAge]
        if settings.maxSeries > 0 && rows.count > settings.maxSeries {
            kept = rows.sorted { ($0.lagSeconds, $0.lag) > ($1.lagSeconds, $1.lag) }
            kept.removeLast(rows.count - settings.maxSeries)
            omitted = (rows.count - settings.maxSeries) * perPartition.count
        }
        kept.sort { $0.key < $1.key }
        let values: [(PartitionLag) -> Double] = [
            { Double($0.lag) }, { $0.lagSeconds }, { Double($0.expired) }, { Double($0.committed.offset) }, { $0.commitAgeSeconds },
        ]
        for (family, value) in zip(perPartition, values) {
            out.header(family, type: "gauge")
            for row in kept { out.sample(family, [row.key.group, row.key.topic, String(row.key.partition)], value(row)) }
        }

        // Sums and maxima per group and topic, always.
        var sums: [[String]: (lag: Int64, maxSeconds: Double)] = [:]
        var groupStatus: [String: LagStatus] = [:]
        for row in rows {
            let key = [row.key.group, row.key.topic]
            var entry = sums[key] ?? (0, 0)
            entry.lag += row.lag
            entry.maxSeconds = max(entry.maxSeconds, row.lagSeconds)
            sums[key] = entry
            groupStatus[row.key.group] = max(groupStatus[row.key.group] ?? .ok, row.status)
        }
        let sumKeys = sums.keys.sorted { $0.lexicographicallyPrecedes($1) }
        out.header(MetricName.groupLagSum, type: "gauge")
        for key in sumKeys { out.sample(MetricName.groupLagSum, key, Double(sums[key]!.lag)) }
        out.header(MetricName.groupLagSecondsMax, type: "gauge")
        for key in sumKeys { out.sample(MetricName.groupLagSecondsMax, key, sums[key]!.maxSeconds) }

        let names = Set(groups.filter { $0.value.members > 0 }.keys).union(groupStatus.keys).sorted()
        out.header(MetricName.groupMembers, type: "gauge")
        for name in names { out.sample(MetricName.groupMembers, [name], Double(groups[name]?.members ?? 0)) }
        out.header(MetricName.groupState, type: "gauge")
        for name in names {
            let state = (groups[name]?.members ?? 0) > 0 ? groups[name]!.state : .empty
            for candidate in GroupState.allCases {
                out.sample(MetricName.groupState, [name, candidate.rawValue], candidate == state ? 1 : 0)
            }
        }
        out.header(MetricName.groupStatus, type: "gauge")
        for name in names { out.sample(MetricName.groupStatus, [name], Double((groupStatus[name] ?? .ok).rawValue)) }
        out.header(MetricName.groupSeriesOmitted, type: "gauge")
        out.sample(MetricName.groupSeriesOmitted, [], Double(omitted))

        // Partition advice per topic, from observed throughput and the consumer count of its groups.
        var consumers: [String: Int] = [:]
        for (_, group) in groups {
            for topic in group.topics { consumers[topic] = max(consumers[topic] ?? 0, group.members) }
        }
        out.header(MetricName.topicProduceRate, type: "gauge")
        var advice: [(String, Int)] = []
        for topic in broker.topicNames {
            let rates = broker.produceRates(topic: topic)
            out.sample(MetricName.topicProduceRate, [topic, "1m"], rates.oneMinute)
            out.sample(MetricName.topicProduceRate, [topic, "5m"], rates.fiveMinutes)
            let peak = max(rates.oneMinute, rates.fiveMinutes)
            if let recommendation = try? PartitionAdvice(target: Throughput(bytesPerSecond: peak), partitionThroughput: Throughput(bytesPerSecond: settings.partitionThroughput),
                                                        consumerThroughput: nil, consumers: max(consumers[topic] ?? 0, 1)) {
                advice.append((topic, recommendation.recommended))
            }
        }
        out.header(MetricName.topicPartitionsRecommended, type: "gauge")
        for (topic, count) in advice { out.sample(MetricName.topicPartitionsRecommended, [topic], Double(count)) }
        out.header(MetricName.lagEvaluationDuration, type: "gauge")
        out.sample(MetricName.lagEvaluationDuration, [], lastPassSeconds.withLock { $0 })
        return (out.bytes, omitted)
    }
}
