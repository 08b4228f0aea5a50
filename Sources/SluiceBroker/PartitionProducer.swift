import Dispatch
public import SluiceLog
import SluiceTelemetry
import Synchronization

/// Producer settings, from the Kafka properties of the same names.
public struct ProducerSettings: Sendable {
    public var acks: Acks
    public var enableIdempotence: Bool
    public var lingerMs: Int64
    public var batchSize: Int
    public var compression: Compression
    public var bufferMemory: Int
    public var maxInFlight: Int
    public var idempotenceWindowMs: Int64
    public var idempotenceWindowMaxEvents: Int

    public init(config: SluiceConfig) {
        acks = config.acks
        enableIdempotence = config.enableIdempotence
        lingerMs = config.integer("linger.ms")
        batchSize = config.int("batch.size")
        compression = config.compression
        bufferMemory = config.int("buffer.memory")
        maxInFlight = config.int("max.in.flight.requests.per.connection")
        idempotenceWindowMs = config.integer("idempotence.window.ms")
        idempotenceWindowMaxEvents = config.int("idempotence.window.max.events")
    }
}

/// The write path of one partition: events collect in an open batch until `batch.size` bytes or `linger.ms`;
/// sealed batches are compressed concurrently (at most `max.in.flight.requests.per.connection` at a time) and
/// appended strictly in order by one drain task.
final class PartitionProducer: Sendable {
    struct Entry: Sendable {
        var record: EncodedRecord
        var size: Int
        /// Whose record this is: a slot of a publish's ticket.
        var ticket: PublishTicket
        var slot: Int
    }

    struct Sealed: Sendable {
        var entries: [Entry]
        var bytes: Int
        var encoded: Task<Result<CheckedBatch, BrokerError>, Never>
    }

    struct State {
        var open: [Entry] = []
        var openBytes = 0
        var openSince: UInt64 = 0
        var timerArmed = false
        var sealed: [Sealed] = []
        var draining = false
        var flushRequested = false
        var closed = false
    }

    let topic: String
    let log: PartitionLog
    let settings: ProducerSettings
    let buffer: ProducerBuffer
    let metrics: SluiceMetrics
    let notifier: AppendNotifier
    private let state = Mutex(State())

    init(topic: String, log: PartitionLog, settings: ProducerSettings, buffer: ProducerBuffer, metrics: SluiceMetrics, notifier: AppendNotifier) {
        self.topic = topic
        self.log = log
        self.settings = settings
        self.buffer = buffer
        self.metrics = metrics
        self.notifier = notifier
    }

    private var lingerNanos: UInt64 { UInt64(settings.lingerMs) * 1_000_000 }

    /// Adds records to the open batch, the records of `ticket`'s slots in order; the ticket resolves once the last
    /// of them is appended.
    func submit(_ records: [(record: EncodedRecord, size: Int, slot: Int)], ticket: PublishTicket) throws(BrokerError) {
        let (armTimer, startDrain) = try state.withLock { state throws(BrokerError) -> (Bool, Bool) in
            if state.closed { throw BrokerError(.unavailable, "the agent is shutting down; retry against the restarted agent", retryAfter: 1) }
            if state.open.isEmpty { state.openSince = DispatchTime.now().uptimeNanoseconds }
            for item in records {
                state.open.append(Entry(record: item.record, size: item.size, ticket: ticket, slot: item.slot))
                state.openBytes += item.size
            }
            let started = sealReady(&state)
            return (armTimerIfNeeded(&state), started)
        }
        if armTimer { startTimer() }
        if startDrain { startDrainTask() }
    }

    /// Seals what is due while the pipeline has room; returns whether a drain task must be started.
    private func sealReady(_ state: inout State) -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        var sealedAny = false
        while !state.open.isEmpty, state.sealed.count < settings.maxInFlight,
              state.openBytes >= settings.batchSize || now - state.openSince >= lingerNanos || state.flushRequested {
            var take = 0
            var bytes = 0
            while take < state.open.count, take == 0 || bytes + state.open[take].size <= settings.batchSize {
                bytes += state.open[take].size
                take += 1
            }
            let entries = Array(state.open.prefix(take))
            state.open.removeFirst(take)
            state.openBytes -= bytes
            // The topic's compression.type, when it names a codec, over the agent's.
            let compression = log.config.compression.map { Compression(codec: $0) } ?? settings.compression
            let encoded = Task<Result<CheckedBatch, BrokerError>, Never> {
                do {
                    return .success(try RecordBatch.encodeChecked(encoded: entries.map(\.record), compression: compression))
                } catch {
                    return .failure(BrokerError(error))
                }
            }
            state.sealed.append(Sealed(entries: entries, bytes: bytes, encoded: encoded))
            sealedAny = true
        }
        if sealedAny && !state.draining {
            state.draining = true
            return true
        }
        return false
    }

    private func armTimerIfNeeded(_ state: inout State) -> Bool {
        guard !state.open.isEmpty, !state.timerArmed, !state.flushRequested else { return false }
        state.timerArmed = true
        return true
    }

    private func startTimer() {
        let deadline = state.withLock { $0.openSince } + lingerNanos
        Task {
            let now = DispatchTime.now().uptimeNanoseconds
            if deadline > now { try? await Task.sleep(nanoseconds: deadline - now) }
            self.timerFired()
        }
    }

    private func timerFired() {
        let (armTimer, startDrain) = state.withLock { state -> (Bool, Bool) in
            state.timerArmed = false
            let started = sealReady(&state)
            // Still open: either the pipeline is full (the drain seals it) or newer events arrived.
            let due = DispatchTime.now().uptimeNanoseconds - state.openSince >= lingerNanos
            return (!due && armTimerIfNeeded(&state), started)
        }
        if armTimer { startTimer() }
        if startDrain { startDrainTask() }
    }

    private func startDrainTask() {
        Task { await self.drain() }
    }

    /// Appends sealed batches in order until none is left.
    private func drain() async {
        while true {
            guard let next = state.withLock({ state -> Sealed? in
                if state.sealed.isEmpty {
                    state.draining = false
                    return nil
                }
                return state.sealed[0]
            }) else { return }

            let outcome: Result<AppendInfo, BrokerError>
            var stored = 0
            switch await next.encoded.value {
            case .failure(let error):
                outcome = .failure(error)
            case .success(let batch):
                stored = batch.bytes.count
                do {
                    outcome = .success(try log.appendWithoutFlush(batch))
                } catch {
                    outcome = .failure(BrokerError(error))
                }
            }
            state.withLock { state in
                state.sealed.removeFirst()
                _ = sealReady(&state)
            }
            buffer.release(next.bytes)
            metrics.producerBufferBytes.set(Double(buffer.bytes))
            switch outcome {
            case .success(let info):
                Self.resolve(next.entries, base: info.baseOffset)
                metrics.batchWritten(topic: topic, records: next.entries.count, uncompressedBytes: next.bytes + RecordBatchHeader.size, storedBytes: stored)
                metrics.partitionChanged(topic: topic, partition: log.partition, startOffset: log.logStartOffset, endOffset: info.lastOffset + 1, lastStableOffset: log.lastStableOffset,
                                         sizeBytes: log.sizeInBytes, lastAppendMillis: info.appendTime)
                notifier.notify()
            case .failure(let error):
                for entry in next.entries { entry.ticket.fail(error) }
            }
        }
    }

    /// Resolves the tickets of a batch's entries, appended from `base` on: one call per run of consecutive slots
    /// of the same ticket (usually one per request).
    static func resolve(_ entries: [Entry], base: Int64) {
        var start = 0
        while start < entries.count {
            var end = start + 1
            while end < entries.count, entries[end].ticket === entries[start].ticket, entries[end].slot == entries[end - 1].slot + 1 { end += 1 }
            entries[start].ticket.resolve(entries[start].slot..<entries[end - 1].slot + 1, base: base + Int64(start))
            start = end
        }
    }

    /// Seals and appends everything accepted so far, refuses new events, and waits until it is written.
    func close() async {
        let (tickets, startDrain) = state.withLock { state -> ([PublishTicket], Bool) in
            state.closed = true
            state.flushRequested = true
            let started = sealReady(&state)
            var seen = Set<ObjectIdentifier>()
            let pending = (state.sealed.flatMap(\.entries) + state.open).map(\.ticket).filter { seen.insert(ObjectIdentifier($0)).inserted }
            return (pending, started)
        }
        if startDrain { startDrainTask() }
        for ticket in tickets { _ = await ticket.value() }
    }
}
