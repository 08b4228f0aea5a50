import Synchronization

/// Recently published CloudEvents by `source` + `id`, so a re-sent event gets its original partition and
/// offset back (idempotence). Entries expire after the window.
final class DedupIndex: Sendable {
    /// An event's identity: its source and id, kept as the event's own strings (no joined copy), with their hash
    /// computed once, so that lookups and probes compare it before the strings.
    struct Key: Hashable, Sendable {
        let source: String
        let id: String
        private let hash: Int

        init(source: String, id: String) {
            self.source = source
            self.id = id
            var hasher = Hasher()
            hasher.combine(source)
            hasher.combine(id)
            hash = hasher.finalize()
        }

        static func == (a: Key, b: Key) -> Bool { a.hash == b.hash && a.id == b.id && a.source == b.source }
        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    /// Where the earlier publication is: written at an offset, or still on its way (a slot of a publish's ticket).
    enum Location: Sendable {
        case written(Int64)
        case pending(PublishTicket, slot: Int)
    }

    struct Entry: Sendable {
        var partition: Int32
        var location: Location
        var expires: Int64

        /// Whether the publication it stands for failed, so that it no longer counts.
        var failed: Bool {
            if case .pending(let ticket, _) = location { return ticket.failed }
            return false
        }
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var order: [(key: Key, expires: Int64)] = []
        var head = 0
    }

    let windowMs: Int64
    private let state = Mutex(State())

    init(windowMs: Int64) { self.windowMs = windowMs }

    var count: Int { state.withLock { $0.entries.count } }

    /// The earlier publication of `key`, or `nil` after recording this one as `partition`/`location`.
    func claim(_ key: Key, partition: Int32, location: Location, now: Int64) -> Entry? {
        state.withLock { state in
            expire(&state, now: now)
            // A publication that failed does not count: this one takes its place.
            if let existing = state.entries[key], !existing.failed { return existing }
            let entry = Entry(partition: partition, location: location, expires: now + windowMs)
            state.entries[key] = entry
            state.order.append((key, entry.expires))
            return nil
        }
    }

    /// Forgets claims made with `ticket` whose events were never accepted (so a retry is not treated as a duplicate).
    func release(_ keys: [Key], ticket: PublishTicket) {
        state.withLock { state in
            for key in keys {
                if case .pending(let claimed, _) = state.entries[key]?.location, claimed === ticket { state.entries[key] = nil }
            }
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
