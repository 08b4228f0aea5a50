import Synchronization

/// Recently published CloudEvents by `source` + `id`, so a re-sent event gets its original partition and
/// offset back (idempotence). Entries expire after the window.
final class DedupIndex: Sendable {
    struct Entry: Sendable {
        var partition: Int32
        var promise: OffsetPromise
        var expires: Int64
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var order: [(key: String, expires: Int64)] = []
        var head = 0
    }

    let windowMs: Int64
    private let state = Mutex(State())

    init(windowMs: Int64) { self.windowMs = windowMs }

    static func key(source: String, id: String) -> String { source + "\u{0}" + id }

    var count: Int { state.withLock { $0.entries.count } }

    /// The earlier publication of `key`, or `nil` after recording this one as `partition`/`promise`.
    func claim(_ key: String, partition: Int32, promise: OffsetPromise, now: Int64) -> Entry? {
        state.withLock { state in
            expire(&state, now: now)
            if let existing = state.entries[key] {
                // A publication that failed does not count: this one takes its place.
                if case .failure = existing.promise.peek {} else { return existing }
            }
            let entry = Entry(partition: partition, promise: promise, expires: now + windowMs)
            state.entries[key] = entry
            state.order.append((key, entry.expires))
            return nil
        }
    }

    /// Forgets a claim whose event was never accepted (so a retry is not treated as a duplicate).
    func release(_ key: String, promise: OffsetPromise) {
        state.withLock { state in
            if let entry = state.entries[key], entry.promise === promise { state.entries[key] = nil }
        }
    }

    private func expire(_ state: inout State, now: Int64) {
        while state.head < state.order.count, state.order[state.head].expires <= now {
            let (key, expires) = state.order[state.head]
            if let entry = state.entries[key], entry.expires == expires { state.entries[key] = nil }
            state.head += 1
        }
        if state.head > 4096 && state.head * 2 > state.order.count {
            state.order.removeFirst(state.head)
            state.head = 0
        }
    }
}
