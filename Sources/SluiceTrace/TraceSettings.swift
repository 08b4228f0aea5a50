public import SluiceBroker

/// How the trace index is bounded and where it is kept.
public struct TraceSettings: Sendable {
    /// A trace in flight without progress for this long is stale. Default 5 minutes (`trace.stale.ms`).
    public var staleMs: Int64
    /// Most traces kept; beyond it the traces with the oldest activity are dropped. Default 20,000 (`trace.max.traces`).
    public var maxTraces: Int
    /// Traces without activity for this long are dropped. Default one day (`trace.retention.ms`).
    public var retentionMs: Int64
    /// Most hops kept per trace; later ones are counted, not kept. Default 1,000 (`trace.max.hops`).
    public var maxHopsPerTrace: Int
    /// Most bytes of hops kept (their binary form); beyond it the traces with the oldest activity are dropped.
    /// Default 32 MiB (`trace.max.bytes`); the process holds about 2.4 times this (buffers, entries, the allocator).
    public var maxBytes: Int
    /// The directory of the trace journal; nil keeps the index in memory only.
    public var directory: String?

    public init(staleMs: Int64 = 300_000, maxTraces: Int = 20_000, retentionMs: Int64 = 86_400_000, maxHopsPerTrace: Int = 1_000,
                maxBytes: Int = 32 << 20, directory: String? = nil) {
        self.staleMs = staleMs
        self.maxTraces = maxTraces
        self.retentionMs = retentionMs
        self.maxHopsPerTrace = maxHopsPerTrace
        self.maxBytes = maxBytes
        self.directory = directory
    }
}

/// Where a trace stands: in flight while one of its events waits for a delivery or one of its sagas is not final;
/// stale when in flight without progress for `trace.stale.ms`; complete otherwise.
public enum TraceStatus: String, Sendable, CaseIterable {
    case inFlight = "in_flight"
    case stale
    case complete
}

extension TraceSettings {
    /// The `trace.*` settings, with the journal in `DATA/traces`.
    public init(config: SluiceConfig) {
        self.init(staleMs: config.integer("trace.stale.ms"), maxTraces: config.int("trace.max.traces"), retentionMs: config.integer("trace.retention.ms"),
                  maxHopsPerTrace: config.int("trace.max.hops"), maxBytes: config.int("trace.max.bytes"), directory: config.dataDirectory + "/traces")
    }
}
