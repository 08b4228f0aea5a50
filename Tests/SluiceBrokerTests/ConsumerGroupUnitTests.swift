import SluiceBroker
import Testing

@Suite("Assignment and lag status")
struct ConsumerGroupUnitTests {
    func count(_ assignment: [TopicPartition: String]) -> [String: Int] {
        assignment.values.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    @Test("range: consecutive ranges per topic, the first members get the remainder")
    func range() {
        let subscriptions: [String: Set<String>] = ["a": ["x", "y"], "b": ["x", "y"], "c": ["x"]]
        let result = AssignmentStrategy.range.assign(subscriptions: subscriptions, partitions: ["x": 7, "y": 3], current: [:])
        #expect((0..<3).map { result[TopicPartition("x", $0)] } == ["a", "a", "a"])
        #expect((3..<5).map { result[TopicPartition("x", $0)] } == ["b", "b"])
        #expect((5..<7).map { result[TopicPartition("x", $0)] } == ["c", "c"])
        #expect((0..<3).map { result[TopicPartition("y", $0)] } == ["a", "a", "b"])
    }

    @Test("sticky: balanced, respects subscriptions, and moves only what balance needs", arguments: [1, 2, 3, 5, 8])
    func sticky(members: Int) {
        let names = (0..<members).map { "m\($0)" }
        var subscriptions = Dictionary(uniqueKeysWithValues: names.map { ($0, Set(["x"])) })
        let first = AssignmentStrategy.sticky.assign(subscriptions: subscriptions, partitions: ["x": 24], current: [:])
        #expect(first.count == 24)
        #expect(Set(count(first).values).count == 1 || (count(first).values.max()! - count(first).values.min()! <= 1))
        // One more member: it takes only its share; nobody else loses more than needed.
        subscriptions["new"] = ["x"]
        let second = AssignmentStrategy.sticky.assign(subscriptions: subscriptions, partitions: ["x": 24], current: first)
        let moved = first.filter { second[$0.key] != $0.value }.count
        #expect(moved == count(second)["new"])
        #expect(count(second).values.max()! - count(second).values.min()! <= 1)
        // A member that leaves: only its partitions move.
        subscriptions.removeValue(forKey: "m0")
        let third = AssignmentStrategy.sticky.assign(subscriptions: subscriptions, partitions: ["x": 24], current: second)
        #expect(second.filter { $0.value != "m0" && third[$0.key] != $0.value }.isEmpty || members == 1)
        #expect(!third.values.contains("m0"))
    }

    @Test("sticky never gives a partition to a member not subscribed to its topic")
    func stickySubscriptions() {
        let result = AssignmentStrategy.sticky.assign(subscriptions: ["a": ["x"], "b": ["y"], "c": ["x", "y"]], partitions: ["x": 5, "y": 5], current: [:])
        #expect(result.count == 10)
        #expect(result.allSatisfy { $0.value != "a" || $0.key.topic == "x" })
        #expect(result.allSatisfy { $0.value != "b" || $0.key.topic == "y" })
    }

    func samples(_ lags: [Int64], offsets: [Int64], commitTimes: [Int64]) -> [LagMonitor.Sample] {
        lags.indices.map { LagMonitor.Sample(time: Int64($0) * 100, committedOffset: offsets[$0], commitTime: commitTimes[$0], lag: lags[$0]) }
    }

    @Test("status rules: OK, WARN, STALL, STOP, ERR and their precedence")
    func status() {
        let now: Int64 = 500
        func status(_ s: [LagMonitor.Sample], seconds: Double = 0.1, slo: Int64 = 0) -> LagStatus {
            LagMonitor.status(samples: s, lagSeconds: seconds, now: now, windowMs: 1000, sloMs: slo)
        }
        // Caught up: OK whatever else.
        #expect(status(samples([5, 0], offsets: [1, 6], commitTimes: [0, 0])) == .ok)
        // Lag that goes up and down with commits: OK.
        #expect(status(samples([3, 0, 3, 0, 3, 1], offsets: [1, 4, 4, 7, 7, 9], commitTimes: [0, 100, 100, 300, 300, 500])) == .ok)
        // Lag growing while commits progress: WARN.
        #expect(status(samples([2, 3, 5, 6, 8, 9], offsets: [1, 2, 3, 4, 5, 6], commitTimes: [0, 100, 200, 300, 400, 500])) == .warn)
        // Commits without progress: STALL.
        #expect(status(samples([4, 4, 5, 5], offsets: [3, 3, 3, 3], commitTimes: [0, 100, 200, 300])) == .stall)
        // No commit within the window while lagging: STOP.
        #expect(LagMonitor.status(samples: samples([4, 4, 4], offsets: [3, 3, 3], commitTimes: [0, 0, 0]), lagSeconds: 1, now: 2000, windowMs: 1000, sloMs: 0) == .stop)
        // Over the SLO: ERR, before anything else.
        #expect(status(samples([4, 4, 5, 5], offsets: [3, 3, 3, 3], commitTimes: [0, 100, 200, 300]), seconds: 2, slo: 1000) == .err)
        // Too few samples to judge a trend: OK.
        #expect(status(samples([2, 9], offsets: [1, 2], commitTimes: [0, 100])) == .ok)
    }
}
