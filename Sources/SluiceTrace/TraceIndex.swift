import Foundation
public import Logging
public import SluiceBroker
public import SluiceLog
public import SluiceTelemetry
import Synchronization

/// A correlation's journey as the index holds it.
public struct Trace: Sendable {
    public var correlationId: String
    public var status: TraceStatus
    /// In time order (hops of the same millisecond in the order they were recorded).
    public var hops: [TraceHop]
    /// Hops beyond `trace.max.hops`: counted, not kept.
    public var droppedHops: Int
    /// Deliveries still awaited (event and subscription pairs).
    public var pendingDeliveries: Int
    /// Sagas of the trace that are not final.
    public var openSagas: [String]
    /// Saga ids whose events belong to this trace (sagas started by one of its events).
    public var aliases: [String]
    public var firstMillis: Int64
    public var lastMillis: Int64
}

/// One line of a trace listing.
public struct TraceSummary: Sendable {
    public var correlationId: String
    public var status: TraceStatus
    public var firstMillis: Int64
    public var lastMillis: Int64
    public var firstEventType: String?
    public var events: Int
    public var hops: Int
}

/// Every correlation's journey, bounded in count (`trace.max.traces`), in bytes (`trace.max.bytes`), per trace
/// (`trace.max.hops`) and in time
/// (`trace.retention.ms`), and kept in a journal so that it survives a restart.
///
/// Hops are held in their binary form (a trace costs its hops' bytes plus a small entry); what a status needs
/// (awaited deliveries, open sagas, first and last activity) is kept beside them, so listing and the gauges never
/// decode hops. Recording only appends to memory; the journal is written by ``run()`` every 200 ms, so a crash
/// loses at most that much of delivery and saga activity (events are read back from the log: the journal keeps
/// the log positions indexed with the hops they produced).
public final class TraceIndex: Sendable {
    public let settings: TraceSettings
    let metrics: SluiceMetrics?
    private let state: Mutex<State>
    private let journal: Journal?
    let logger: Logger?
    /// Serialises journal writes and compaction; true once a failed write was logged (the journal then refuses
    /// every write until the agent restarts, as SluiceLog's journals do).
    private let writing = Mutex<Bool>(false)

    struct Entry {
        var hops: [UInt8] = []
        var hopCount = 0
        var droppedHops = 0
        var events = 0
        var first = Int64.max
        var last = Int64.min
        var firstEventTime = Int64.max
        var firstEventType: String?
        /// Deliveries awaited, by ``TraceHop/deliveryKey(topic:partition:offset:subscription:)``.
        var outstanding: [UInt64] = []
        /// Deliveries that finished before their event was indexed (the tailer runs behind the runners).
        var finishedEarly: [UInt64] = []
        var openSagas: [String] = []
        var aliases: [String] = []
        /// Whether this completion was observed in `sluice_trace_duration_seconds`.
        var reported = false

        var isEmpty: Bool { hopCount + droppedHops == 0 }

        func status(now: Int64, staleMs: Int64) -> TraceStatus {
            guard !outstanding.isEmpty || !openSagas.isEmpty else { return .complete }
            return now - last > staleMs ? .stale : .inFlight
        }
    }

    struct State {
        var entries: [String: Entry] = [:]
        var aliases: [String: String] = [:]
        var positions: [TopicPartition: Int64] = [:]
        /// Journal bytes recorded and not yet written.
        var pending: [UInt8] = []
        var hopBytes = 0
        var durationTypes: Set<String> = []
    }

    enum Tag: UInt8 {
        case hop = 1, alias = 2, position = 3
    }

    /// Opens the index, reading its journal back when `settings.directory` is set.
    public init(settings: TraceSettings, metrics: SluiceMetrics? = nil, logger: Logger? = nil) throws {
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        var state = State()
        if let directory = settings.directory {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let (journal, payloads) = try Journal.open(directory + "/traces.journal")
            self.journal = journal
            for payload in payloads { Self.replay(payload, into: &state, settings: settings) }
            let now = currentTimeMillis()
            for id in state.entries.keys where state.entries[id]!.status(now: now, staleMs: settings.staleMs) == .complete {
                state.entries[id]!.reported = true
            }
        } else {
            journal = nil
        }
        self.state = Mutex(state)
    }

    // MARK: - Recording

    /// Records a hop under a correlation id (or under the trace a saga id is linked to).
    public func record(_ hop: TraceHop, correlationId: String) {
        recordEvents([(correlationId, hop)], positions: [:])
    }

    /// Records the event hops read from the log with the positions the reads reached, in one journal entry.
    public func recordEvents(_ hops: [(correlationId: String, hop: TraceHop)], positions: [TopicPartition: Int64]) {
        let settings = self.settings
        state.withLock { state in
            for (correlationId, hop) in hops where !correlationId.isEmpty {
                // Aliases come only from sagas linked to a trace; without any, no lookup per hop.
                let id = state.aliases.isEmpty ? correlationId : state.aliases[correlationId] ?? correlationId
                // Encoded once, into the journal's buffer; the entry copies those bytes.
                state.pending.append(Tag.hop.rawValue)
                BinaryCoding.write(id, into: &state.pending)
                let start = state.pending.count
                hop.encode(into: &state.pending)
                let encoded = state.pending[start...]
                state.hopBytes += Self.apply(hop, encoded: encoded, to: &state.entries[id, default: Entry()], settings: settings)
            }
            for (tp, offset) in positions {
                state.positions[tp] = offset
                state.pending.append(Tag.position.rawValue)
                BinaryCoding.write(tp.topic, into: &state.pending)
                BinaryCoding.writeVarint(Int64(tp.partition), into: &state.pending)
                BinaryCoding.writeVarint(offset, into: &state.pending)
            }
        }
    }

    /// Makes events correlated by `sagaId` part of the trace `correlationId` (a saga started by one of its events).
    public func link(sagaId: String, to correlationId: String) {
        guard !sagaId.isEmpty, !correlationId.isEmpty, sagaId != correlationId else { return }
        state.withLock { state in
            guard state.aliases[sagaId] == nil else { return }
            let target = state.aliases[correlationId] ?? correlationId
            Self.applyAlias(sagaId, to: target, state: &state)
            state.pending.append(Tag.alias.rawValue)
            BinaryCoding.write(sagaId, into: &state.pending)
            BinaryCoding.write(target, into: &state.pending)
        }
    }

    /// Where the log reads of each partition stopped (the tailer resumes there).
    public var positions: [TopicPartition: Int64] { state.withLock { $0.positions } }

    private static func applyAlias(_ alias: String, to target: String, state: inout State) {
        state.aliases[alias] = target
        state.entries[target, default: Entry()].aliases.append(alias)
    }

    private static func apply(_ hop: TraceHop, encoded: ArraySlice<UInt8>, to id: String, state: inout State, settings: TraceSettings) {
        state.hopBytes += apply(hop, encoded: encoded, to: &state.entries[id, default: Entry()], settings: settings)
    }

    /// Adds the hop to the entry (in place: one hash of the id per hop); returns the bytes kept.
    private static func apply(_ hop: TraceHop, encoded: ArraySlice<UInt8>, to entry: inout Entry, settings: TraceSettings) -> Int {
        var kept = 0
        if entry.hopCount < settings.maxHopsPerTrace {
            entry.hops.append(contentsOf: encoded)
            entry.hopCount += 1
            kept = encoded.count
        } else {
            entry.droppedHops += 1
        }
        entry.first = min(entry.first, hop.time)
        if hop.time > entry.last {
            entry.last = hop.time
        }
        switch hop.kind {
        case .event:
            entry.events += 1
            if hop.time < entry.firstEventTime {
                entry.firstEventTime = hop.time
                entry.firstEventType = hop.eventType
            }
            if let topic = hop.topic, let partition = hop.partition, let offset = hop.offset {
                for subscription in hop.expected ?? [] {
                    let key = TraceHop.deliveryKey(topic: topic, partition: partition, offset: offset, subscription: subscription)
                    if let early = entry.finishedEarly.firstIndex(of: key) {
                        entry.finishedEarly.remove(at: early)
                    } else if !entry.outstanding.contains(key) {
                        entry.outstanding.append(key)
                    }
                }
            }
        case .delivery, .deadLetter:
            guard hop.kind == .deadLetter || hop.final == true, let topic = hop.topic, let partition = hop.partition, let offset = hop.offset,
                  let subscription = hop.subscription else { break }
            let key = TraceHop.deliveryKey(topic: topic, partition: partition, offset: offset, subscription: subscription)
            if let waiting = entry.outstanding.firstIndex(of: key) {
                entry.outstanding.remove(at: waiting)
            } else if entry.finishedEarly.count < 256, !entry.finishedEarly.contains(key) {
                entry.finishedEarly.append(key)
            }
        case .replay:
            break
        case .saga:
            guard let saga = hop.sagaId else { break }
            if hop.final == true {
                entry.openSagas.removeAll { $0 == saga }
            } else if !entry.openSagas.contains(saga) {
                entry.openSagas.append(saga)
            }
        }
        if !entry.outstanding.isEmpty || !entry.openSagas.isEmpty { entry.reported = false }
        return kept
    }

    private static func replay(_ payload: [UInt8], into state: inout State, settings: TraceSettings) {
        var reader = BinaryReader(payload)
        do {
            while !reader.isAtEnd {
                switch Tag(rawValue: try reader.byte()) {
                case .hop:
                    let id = try reader.string()
                    let start = reader.position
                    let hop = try TraceHop.decode(&reader)
                    apply(hop, encoded: payload[start..<reader.position], to: id, state: &state, settings: settings)
                case .alias:
                    let alias = try reader.string()
                    let target = try reader.string()
                    if state.aliases[alias] == nil { applyAlias(alias, to: target, state: &state) }
                case .position:
                    let topic = try reader.string()
                    let partition = Int32(truncatingIfNeeded: try reader.varint())
                    state.positions[TopicPartition(topic, partition)] = try reader.varint()
                case nil:
                    return  // written by a newer version: the rest of this entry is skipped
                }
            }
        } catch {
            return  // the journal's CRC held, so this is a bug or a newer format; what was read stays
        }
    }

    // MARK: - Reading

    /// The trace of `id`: a correlation id, or a saga id linked to one.
    public func trace(_ id: String, now: Int64 = currentTimeMillis()) -> Trace? {
        let found: (String, Entry)? = state.withLock { state in
            let key = state.aliases[id] ?? id
            return state.entries[key].flatMap { $0.isEmpty ? nil : (key, $0) }
        }
        guard let (key, entry) = found else { return nil }
        var hops: [TraceHop] = []
        hops.reserveCapacity(entry.hopCount)
        var reader = BinaryReader(entry.hops)
        while !reader.isAtEnd, let hop = try? TraceHop.decode(&reader) { hops.append(hop) }
        // Stable: hops of one millisecond keep the order they were recorded in.
        let ordered = hops.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
        return Trace(correlationId: key, status: entry.status(now: now, staleMs: settings.staleMs), hops: ordered, droppedHops: entry.droppedHops,
                     pendingDeliveries: entry.outstanding.count, openSagas: entry.openSagas, aliases: entry.aliases,
                     firstMillis: entry.first, lastMillis: entry.last)
    }

    /// Traces with this status (all when nil), most recent activity first, and how many there are of each status.
    public func list(status: TraceStatus?, limit: Int, now: Int64 = currentTimeMillis()) -> (traces: [TraceSummary], counts: [TraceStatus: Int]) {
        let staleMs = settings.staleMs
        return state.withLock { state in
            var counts: [TraceStatus: Int] = [:]
            var matching: [TraceSummary] = []
            for (id, entry) in state.entries where !entry.isEmpty {
                let current = entry.status(now: now, staleMs: staleMs)
                counts[current, default: 0] += 1
                guard status == nil || status == current else { continue }
                matching.append(TraceSummary(correlationId: id, status: current, firstMillis: entry.first, lastMillis: entry.last,
                                             firstEventType: entry.firstEventType, events: entry.events, hops: entry.hopCount + entry.droppedHops))
            }
            matching.sort { ($0.lastMillis, $0.correlationId) > ($1.lastMillis, $1.correlationId) }
            return (Array(matching.prefix(limit)), counts)
        }
    }

    /// Traces held, and the bytes of their hops.
    public var size: (traces: Int, hopBytes: Int) { state.withLock { ($0.entries.count, $0.hopBytes) } }

    // MARK: - Upkeep

    /// Writes the journal every 200 ms and, every second, drops what is past retention or over `trace.max.traces` or `trace.max.bytes`,
    /// observes completed traces and sets the gauges; until cancelled, then writes what is left and closes.
    public func run() async {
        var tick = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(200))
            tick += 1
            flush()
            if tick % 5 == 0 { maintain(now: currentTimeMillis()) }
        }
        close()
    }

    /// Writes recorded hops to the journal (page cache; the journal is not fsynced per write).
    public func flush() {
        guard let journal else { return }
        writing.withLock { reported in
            let bytes = state.withLock { state -> [UInt8] in
                defer { state.pending = [] }
                return state.pending
            }
            guard !bytes.isEmpty else { return }
            do {
                _ = try journal.append(bytes)
            } catch {
                report(error, &reported)
            }
        }
    }

    /// Retention, the count bound, completion and the gauges; compacts the journal when most of it is dead.
    public func maintain(now: Int64) {
        let settings = self.settings
        var completed: [(type: String, seconds: Double)] = []
        let (inFlight, stale, traces, bytes) = state.withLock { state -> (Int, Int, Int, Int) in
            let cutoff = now - settings.retentionMs
            if state.entries.count > settings.maxTraces || state.hopBytes > settings.maxBytes {
                // The least recently active go first (those past retention among them), down to 95% of both
                // bounds, so that this sort runs once per 5% of growth, not every pass.
                var byActivity = state.entries.map { ($0.value.last, $0.key) }
                byActivity.sort { $0 < $1 }
                for (_, id) in byActivity {
                    guard state.entries.count > settings.maxTraces * 95 / 100 || state.hopBytes > settings.maxBytes / 100 * 95 else { break }
                    Self.remove(id, state: &state)
                }
            }
            var expired: [String] = []
            var inFlight = 0
            var stale = 0
            // One pass by index: entries are read and marked in place, never hashed or copied.
            for position in state.entries.indices {
                let entry = state.entries.values[position]
                guard !entry.isEmpty else { continue }
                // An entry without hops holds a saga's link until its first event is read: it is kept.
                if entry.last < cutoff {
                    expired.append(state.entries.keys[position])
                    continue
                }
                switch entry.status(now: now, staleMs: settings.staleMs) {
                case .inFlight: inFlight += 1
                case .stale: stale += 1
                case .complete:
                    guard !entry.reported else { continue }
                    state.entries.values[position].reported = true
                    var type = entry.firstEventType ?? "none"
                    if type.utf8.count > SluiceMetrics.maxLabelValueLength || (!state.durationTypes.contains(type) && state.durationTypes.count >= 200) {
                        type = "other"
                    }
                    state.durationTypes.insert(type)
                    completed.append((type, Double(max(0, entry.last - entry.first)) / 1000))
                }
            }
            for id in expired { Self.remove(id, state: &state) }
            return (inFlight, stale, state.entries.count, state.hopBytes)
        }
        if let metrics {
            metrics.gauge(MetricName.tracesInFlight).set(Double(inFlight))
            metrics.gauge(MetricName.tracesStale).set(Double(stale))
            metrics.gauge(MetricName.traceIndexTraces).set(Double(traces))
            metrics.gauge(MetricName.traceIndexBytes).set(Double(bytes))
            for (type, seconds) in completed {
                metrics.durationHistogram(MetricName.traceDuration, type, buckets: Self.durationBuckets).record(.nanoseconds(Int64(seconds * 1e9)))
            }
        }
        compactIfDue()
    }

    static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(3600),
    ]

    private static func remove(_ id: String, state: inout State) {
        guard let entry = state.entries.removeValue(forKey: id) else { return }
        state.hopBytes -= entry.hops.count
        for alias in entry.aliases { state.aliases.removeValue(forKey: alias) }
    }

    /// Rewrites the journal with what the index holds once the journal is over 16 MiB and over twice that.
    func compactIfDue(force: Bool = false) {
        guard let journal else { return }
        writing.withLock { reported in
            let live = state.withLock { $0.hopBytes + $0.entries.count * 48 }
            guard force || (journal.size > 16 << 20 && journal.size > Int64(2 * live)) else { return }
            // The snapshot holds everything recorded so far, written or not: what is pending is dropped with it.
            let payloads = state.withLock { state -> [[UInt8]] in
                state.pending = []
                return Self.snapshot(state)
            }
            do {
                try journal.rewrite(payloads)
            } catch {
                report(error, &reported)
            }
        }
    }

    /// Logs the first failed journal write: traces go on in memory, and what the journal misses is lost at restart.
    private func report(_ error: any Error, _ reported: inout Bool) {
        guard !reported else { return }
        reported = true
        logger?.error("the trace journal cannot be written; traces are kept in memory only and are lost at the next restart",
                      metadata: ["file.path": .string(settings.directory.map { $0 + "/traces.journal" } ?? ""), "error": .string("\(error)")])
    }

    private static func snapshot(_ state: State) -> [[UInt8]] {
        var payloads: [[UInt8]] = []
        var current: [UInt8] = []
        func cut() {
            if current.count >= 1 << 20 {
                payloads.append(current)
                current = []
            }
        }
        for (id, entry) in state.entries {
            var reader = BinaryReader(entry.hops)
            while !reader.isAtEnd {
                let start = reader.position
                guard (try? TraceHop.decode(&reader)) != nil else { break }
                current.append(Tag.hop.rawValue)
                BinaryCoding.write(id, into: &current)
                current.append(contentsOf: entry.hops[start..<reader.position])
                cut()
            }
            // Hops over the per-trace bound left state behind that the kept hops do not rebuild; it is lost here.
        }
        for (alias, target) in state.aliases {
            current.append(Tag.alias.rawValue)
            BinaryCoding.write(alias, into: &current)
            BinaryCoding.write(target, into: &current)
            cut()
        }
        for (tp, offset) in state.positions {
            current.append(Tag.position.rawValue)
            BinaryCoding.write(tp.topic, into: &current)
            BinaryCoding.writeVarint(Int64(tp.partition), into: &current)
            BinaryCoding.writeVarint(offset, into: &current)
        }
        if !current.isEmpty { payloads.append(current) }
        return payloads
    }

    /// Writes what is pending and closes the journal.
    public func close() {
        flush()
        try? journal?.close()
    }
}
