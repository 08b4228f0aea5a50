import DequeModule
import Synchronization

/// Recently published CloudEvents by topic, `source` and `id`, so a re-sent event gets its original partition
/// and offset back (idempotence). One index serves every topic of the agent. Entries expire after the window;
/// when more than `maxEntries` events were published within it, the oldest are forgotten early (evicted), so
/// the memory it takes is bounded whatever the publish rate.
final class DedupIndex: Sendable {
    /// An event's identity: a 128-bit fingerprint of its topic's registration, source and id (two SipHash
    /// values under the process's random seed), 16 bytes however long the strings are. Two different events
    /// share a fingerprint with odds of about n² / 2¹²⁹ — for a billion remembered events, 10⁻²¹.
    struct Key: Hashable, Sendable {
        let high: UInt64
        let low: UInt64

        init(topic: UInt32, source: String, id: String) {
            var first = Hasher()
            first.combine(topic)
            first.combine(source)
            first.combine(id)
            var second = Hasher()
            second.combine(~topic)
            second.combine(id)
            second.combine(source)
            high = UInt64(UInt(bitPattern: first.finalize()))
            low = UInt64(UInt(bitPattern: second.finalize()))
        }

        func hash(into hasher: inout Hasher) { hasher.combine(low) }
    }

    /// Where the earlier publication is: written at an offset, or still on its way (a slot of a publish's ticket).
    enum Location: Sendable {
        case written(Int64)
        case pending(PublishTicket, slot: Int)
    }

    /// 32 bytes. The ticket is kept while the entry lives (so a duplicate can wait for its offset); it is nil for
    /// events read back from the log at start.
    struct Entry: Sendable {
        var expires: Int64
        /// The offset once written, the ticket's slot while pending.
        private var position: Int64
        private var ticket: PublishTicket?
        var partition: Int32

        init(partition: Int32, location: Location, expires: Int64) {
            self.partition = partition
            self.expires = expires
            switch location {
            case .written(let offset): (position, ticket) = (offset, nil)
            case .pending(let ticket, let slot): (position, self.ticket) = (Int64(slot), ticket)
            }
        }

        var location: Location { ticket.map { .pending($0, slot: Int(position)) } ?? .written(position) }

        /// Whether the publication it stands for failed, so that it no longer counts.
        var failed: Bool { ticket?.failed ?? false }
    }

    /// The index's size and evictions, for the metrics.
    struct Usage: Sendable, Equatable {
        var entries: Int
        /// Entries forgotten before their window ended, since start.
        var evicted: Int
        /// When the newest evicted entry was published (its expiry minus the window); 0 if none was evicted.
        var lastEvictedPublished: Int64
    }

    /// Whether any entry was ever forgotten early (read without the lock, on every publish).
    var hasEvicted: Bool { evictedAny.load(ordering: .relaxed) }
    private let evictedAny = Atomic<Bool>(false)

    /// How far back (ms) a re-send is recognised at `now`: the window, or less while it is shortened by evictions.
    func covered(now: Int64) -> Int64 {
        let usage = usage
        return usage.evicted == 0 ? windowMs : min(windowMs, max(0, now - usage.lastEvictedPublished))
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Keys in the order they were claimed. A key released or claimed again keeps its earlier place too; an
        /// earlier place is passed over when its entry is gone, or removed with it.
        var order = Deque<Key>()
        var evicted = 0
        var lastEvictedPublished: Int64 = 0
    }

    let windowMs: Int64
    let maxEntries: Int
    private let state = Mutex(State())

    init(windowMs: Int64, maxEntries: Int) {
        self.windowMs = windowMs
        self.maxEntries = maxEntries
    }

    var usage: Usage { state.withLock { Usage(entries: $0.entries.count, evicted: $0.evicted, lastEvictedPublished: $0.lastEvictedPublished) } }

    /// The earlier publication of `key`, or `nil` after recording this one as `partition`/`location`.
    func claim(_ key: Key, partition: Int32, location: Location, now: Int64) -> Entry? {
        state.withLock { state in
            expire(&state, now: now)
            // A publication that failed does not count, nor one whose window has passed: this one takes its place.
            if let existing = state.entries[key], !existing.failed, existing.expires > now { return existing }
            let entry = Entry(partition: partition, location: location, expires: now + windowMs)
            state.entries[key] = entry
            state.order.append(key)
            evict(&state)
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
        while let key = state.order.first {
            if let entry = state.entries[key] {
                guard entry.expires <= now else { return }
                state.entries[key] = nil
            }
            state.order.removeFirst()
        }
    }

    /// Forgets the oldest claims until at most `maxEntries` remain.
    private func evict(_ state: inout State) {
        while state.entries.count > maxEntries, let key = state.order.popFirst() {
            if let entry = state.entries.removeValue(forKey: key) {
                state.evicted += 1
                evictedAny.store(true, ordering: .relaxed)
                state.lastEvictedPublished = max(state.lastEvictedPublished, entry.expires - windowMs)
            }
        }
    }
}
