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
        /// Keys in the order they were claimed, with the expiry of that claim (so that expiring looks up only the
        /// keys whose time is up). A key released or claimed again keeps its earlier place too; an earlier place
        /// removes the entry only if the entry is still that claim's.
        var order = Deque<(key: Key, expires: Int64)>()
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
            return claim(key, partition: partition, location: location, now: now, in: &state)
        }
    }

    /// Claims a publish's events in order under one lock: for each, the earlier publication, or `nil` after
    /// recording it as pending at the next slot of its partition's ticket (`tickets[partition]`). Slots count the
    /// events of that partition that are not duplicates, in order, as the publish writes them.
    func claim(_ claims: [(key: Key, partition: Int32)], tickets: [PublishTicket?], now: Int64) -> [Entry?] {
        var slots = [Int](repeating: 0, count: tickets.count)
        return state.withLock { state in
            expire(&state, now: now)
            return claims.map { key, partition in
                let slot = slots[Int(partition)]
                let earlier = claim(key, partition: partition, location: .pending(tickets[Int(partition)]!, slot: slot), now: now, in: &state)
                if earlier == nil { slots[Int(partition)] = slot + 1 }
                return earlier
            }
        }
    }

    /// One claim, with the lock held: one hash of the key when it is new.
    private func claim(_ key: Key, partition: Int32, location: Location, now: Int64, in state: inout State) -> Entry? {
        let entry = Entry(partition: partition, location: location, expires: now + windowMs)
        // A publication that failed does not count, nor one whose window has passed: this one takes its place.
        if let existing = state.entries.updateValue(entry, forKey: key), !existing.failed, existing.expires > now {
            state.entries[key] = existing
            return existing
        }
        state.order.append((key, entry.expires))
        evict(&state)
        return nil
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
        while let (key, expires) = state.order.first, expires <= now {
            state.order.removeFirst()
            // One hash when the entry is this claim's (the usual case); put back when the key was claimed again.
            if let entry = state.entries.removeValue(forKey: key), entry.expires != expires { state.entries[key] = entry }
        }
    }

    /// Forgets the oldest claims until at most `maxEntries` remain.
    private func evict(_ state: inout State) {
        while state.entries.count > maxEntries, let (key, expires) = state.order.popFirst() {
            guard let entry = state.entries.removeValue(forKey: key) else { continue }
            if entry.expires != expires {
                state.entries[key] = entry
            } else {
                state.evicted += 1
                evictedAny.store(true, ordering: .relaxed)
                state.lastEvictedPublished = max(state.lastEvictedPublished, entry.expires - windowMs)
            }
        }
    }
}
