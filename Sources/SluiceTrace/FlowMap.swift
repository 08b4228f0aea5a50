import Synchronization

/// Who produces to which topic, as the trace reader has seen it: per topic, each CloudEvents `source` with its
/// event count and when it was last seen. Bounded: at most ``maxSourcesPerTopic`` sources per topic (later ones
/// are counted under `other`). Not kept across restarts: it fills again as events are read.
public final class FlowMap: Sendable {
    public struct Producer: Sendable, Equatable {
        public var source: String
        public var topic: String
        public var events: Int
        public var lastSeenMillis: Int64
    }

    public static let maxSourcesPerTopic = 64
    public static let other = "other"
    private let state = Mutex<[String: [String: (events: Int, last: Int64)]]>([:])

    public init() {}

    /// Adds what one read pass saw: per topic and source, the events and the latest record time.
    func add(_ seen: [String: [String: (events: Int, last: Int64)]]) {
        guard !seen.isEmpty else { return }
        state.withLock { topics in
            for (topic, sources) in seen {
                var known = topics[topic] ?? [:]
                for (source, count) in sources {
                    let key = known[source] != nil || known.count < Self.maxSourcesPerTopic ? source : Self.other
                    let old = known[key] ?? (0, 0)
                    known[key] = (old.events + count.events, max(old.last, count.last))
                }
                topics[topic] = known
            }
        }
    }

    /// Forgets topics that no longer exist.
    public func retain(topics names: Set<String>) {
        state.withLock { topics in topics = topics.filter { names.contains($0.key) } }
    }

    /// Every producer seen, by topic then source.
    public var producers: [Producer] {
        state.withLock { topics in
            topics.keys.sorted().flatMap { topic in
                topics[topic]!.sorted { $0.key < $1.key }.map { Producer(source: $0.key, topic: topic, events: $0.value.events, lastSeenMillis: $0.value.last) }
            }
        }
    }
}
