@testable import SluiceBroker
import Testing

@Suite("Idempotence index")
struct DedupIndexTests {
    static func key(_ id: String, topic: UInt32 = 1) -> DedupIndex.Key { DedupIndex.Key(topic: topic, source: "/s", id: id) }

    @Test("a publish's claims: duplicates within the request and of earlier ones are found, and slots count each partition's new events in order")
    func batchClaims() {
        let index = DedupIndex(windowMs: 1000, maxEntries: 100)
        let earlier = PublishTicket()
        #expect(index.claim(Self.key("old"), partition: 1, location: .pending(earlier, slot: 0), now: 0) == nil)
        let tickets = [PublishTicket(), PublishTicket(), nil, PublishTicket()]
        let found = index.claim([(Self.key("a"), 0), (Self.key("b"), 3), (Self.key("a"), 0), (Self.key("old"), 3), (Self.key("c"), 0), (Self.key("d"), 3),
                                 (Self.key("a", topic: 2), 1)],
                                tickets: tickets, now: 10)
        #expect(found.map { $0 == nil } == [true, true, false, false, true, true, true])
        // The repeated "a" points at the first one's slot; "old" at the earlier publish.
        guard case .pending(let ticket, let slot)? = found[2]?.location else { Issue.record("a's repeat: \(String(describing: found[2]))"); return }
        #expect(ticket === tickets[0] && slot == 0 && found[2]?.partition == 0)
        guard case .pending(let oldTicket, slot: 0)? = found[3]?.location else { Issue.record("old: \(String(describing: found[3]))"); return }
        #expect(oldTicket === earlier && found[3]?.partition == 1)
        // Later claims see where each new event went: c is partition 0's second record, d partition 3's second.
        let again = index.claim([(Self.key("c"), 0), (Self.key("d"), 0), (Self.key("a", topic: 2), 0)], tickets: tickets, now: 20)
        let places = again.map { entry -> String in
            guard case .pending(let ticket, let slot)? = entry?.location else { return "none" }
            return "\(tickets.firstIndex { $0 === ticket } ?? -1)/\(slot)"
        }
        #expect(places == ["0/1", "3/1", "1/0"])
        #expect(index.usage.entries == 6)
    }

    @Test("entries expire with their window; a key claimed again after its publication failed is not expired by its earlier claim's place")
    func expiry() {
        let index = DedupIndex(windowMs: 100, maxEntries: 100)
        let failing = PublishTicket()
        #expect(index.claim(Self.key("a"), partition: 0, location: .pending(failing, slot: 0), now: 0) == nil)
        failing.fail(BrokerError(.internal, "disk full"))
        // The failed publication does not count: this one takes its place, until 110.
        #expect(index.claim(Self.key("a"), partition: 0, location: .written(7), now: 10) == nil)
        #expect(index.claim(Self.key("b"), partition: 0, location: .written(8), now: 50) == nil)
        // At 100 the first claim's place passes; the entry is the second claim's and stays.
        #expect(index.claim(Self.key("c"), partition: 0, location: .written(9), now: 100) == nil)
        guard case .written(7)? = index.claim(Self.key("a"), partition: 0, location: .written(99), now: 105)?.location else {
            Issue.record("a was forgotten at the place of its failed claim"); return
        }
        // At 110 it is gone; b (150) and c (200) are not.
        #expect(index.claim(Self.key("d"), partition: 0, location: .written(10), now: 110) == nil)
        #expect(index.usage.entries == 3)
        #expect(index.claim(Self.key("a"), partition: 0, location: .written(11), now: 120) == nil)
        #expect(index.claim(Self.key("b"), partition: 0, location: .written(12), now: 120) != nil)
        #expect(index.usage.evicted == 0)
    }

    @Test("beyond maxEntries the oldest claims are evicted and counted once each, a key claimed again at its newer place")
    func eviction() {
        let index = DedupIndex(windowMs: 1000, maxEntries: 2)
        let failing = PublishTicket()
        _ = index.claim(Self.key("a"), partition: 0, location: .pending(failing, slot: 0), now: 0)
        failing.fail(BrokerError(.internal, "disk full"))
        _ = index.claim(Self.key("a"), partition: 0, location: .written(1), now: 1)
        _ = index.claim(Self.key("b"), partition: 0, location: .written(2), now: 2)
        #expect(index.usage == DedupIndex.Usage(entries: 2, evicted: 0, lastEvictedPublished: 0))
        _ = index.claim(Self.key("c"), partition: 0, location: .written(3), now: 3)
        // a's first place is passed over (its entry is the second claim's); the second claim is the one evicted.
        #expect(index.usage == DedupIndex.Usage(entries: 2, evicted: 1, lastEvictedPublished: 1))
        #expect(index.claim(Self.key("b"), partition: 0, location: .written(4), now: 4) != nil)
        #expect(index.claim(Self.key("a"), partition: 0, location: .written(5), now: 5) == nil)
        #expect(index.usage == DedupIndex.Usage(entries: 2, evicted: 2, lastEvictedPublished: 2))
    }
}
