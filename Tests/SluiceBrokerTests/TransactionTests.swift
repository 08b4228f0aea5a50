import Foundation
@testable import SluiceBroker
import SluiceLog
import Testing

/// Atomic publishing through the broker: all or nothing for read_committed readers, aborts, timeouts, and what
/// a restart does with a transaction the journal shows unfinished.
@Suite("transactions")
struct TransactionTests {
    func fetch(_ broker: Broker, _ topic: String, _ isolation: IsolationLevel) async throws -> FetchResult {
        try await broker.fetch(topic: topic, partition: 0, offset: 0, maxRecords: 1000, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 0,
                               isolation: isolation)
    }

    func records(_ prefix: String, _ count: Int) -> [Record] {
        (0..<count).map { event("\(prefix)-\($0)").record(timestamp: currentTimeMillis()) }
    }

    @Test("an atomic publish over three topics is one transaction: every event visible with its COMMIT, readers move past the markers")
    func atomicAcrossTopics() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--num-partitions", "1"])
            let results = try await broker.publishAtomic([
                ("orders", (0..<4).map { event("o\($0)") }), ("payments", (0..<3).map { event("p\($0)") }), ("shipments", (0..<3).map { event("s\($0)") }),
            ])
            #expect(results.map(\.topic) == Array(repeating: "orders", count: 4) + Array(repeating: "payments", count: 3) + Array(repeating: "shipments", count: 3))
            #expect(results.map(\.offset) == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2])
            for (topic, count) in [("orders", 4), ("payments", 3), ("shipments", 3)] {
                let committed = try await self.fetch(broker, topic, .readCommitted)
                #expect(committed.events.map(\.offset) == (0..<Int64(count)).map { $0 })
                #expect(committed.logEndOffset == Int64(count) + 1, "the events and a COMMIT marker")
                #expect(committed.nextOffset == committed.logEndOffset && committed.lastStableOffset == committed.logEndOffset)
                let batches = try broker.partitionLog(TopicPartition(topic, 0)).read(from: 0)
                #expect(batches.map(\.header.isTransactional) == [true, true] && batches.map(\.header.isControl) == [false, true])
                #expect(ControlBatch.type(of: batches[1].bytes) == .commit)
                #expect(Set(batches.map(\.header.producer.producerId)).count == 1)
            }
            #expect(broker.transactions.open.withLock { $0.isEmpty })
            try await broker.shutdown()
        }
    }

    @Test("an open transaction holds read_committed readers at the last stable offset; ABORT hides its events from them for good")
    func openThenAborted() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--num-partitions", "1"])
            _ = try await broker.publish(topic: "feed", events: [event("before")])
            let txn = try await broker.beginTransaction(partitions: [TopicPartition("feed", 0)])
            try broker.appendTransactional(txn, to: TopicPartition("feed", 0), records: records("inside", 3))
            _ = try await broker.publish(topic: "feed", events: [event("after")])

            let held = try await self.fetch(broker, "feed", .readCommitted)
            #expect(held.events.map(\.offset) == [0], "the plain event after the open transaction waits behind it")
            #expect(held.lastStableOffset == 1 && held.nextOffset == 1 && held.logEndOffset == 5)
            let everything = try await self.fetch(broker, "feed", .readUncommitted)
            #expect(everything.events.map(\.offset) == [0, 1, 2, 3, 4])
            // The configured default is read_committed.
            #expect(try await broker.fetch(topic: "feed", partition: 0, offset: 0, maxRecords: 10, maxBytes: 1 << 20, minBytes: 1, maxWaitMs: 0).events.count == 1)

            try await broker.endTransaction(txn, commit: false)
            let after = try await self.fetch(broker, "feed", .readCommitted)
            #expect(after.events.compactMap(\.event?.id) == ["before", "after"])
            #expect(after.nextOffset == 6 && after.lastStableOffset == 6)
            #expect(try await self.fetch(broker, "feed", .readUncommitted).events.count == 5, "read_uncommitted sees aborted events, as in Kafka")
            // Ending it again is refused; appending to it too.
            await #expect(throws: BrokerError.self) { try await broker.endTransaction(txn, commit: true) }
            #expect(throws: BrokerError.self) { try broker.appendTransactional(txn, to: TopicPartition("feed", 0), records: records("late", 1)) }
            try await broker.shutdown()
        }
    }

    @Test("a transaction open longer than transaction.timeout.ms is aborted and its commit refused")
    func timeout() async throws {
        try await withTemporaryDirectory { dir in
            let broker = try makeBroker(dir, ["--num-partitions", "1", "--transaction-timeout-ms", "1000"])
            let txn = try await broker.beginTransaction(partitions: [TopicPartition("slow", 0)])
            try broker.appendTransactional(txn, to: TopicPartition("slow", 0), records: records("slow", 2))
            await broker.expireTransactions(now: txn.started + 500)
            #expect(broker.transactions.open.withLock { $0.count } == 1, "not yet")
            await broker.expireTransactions(now: txn.started + 1500)
            #expect(broker.transactions.open.withLock { $0.isEmpty })
            do {
                try await broker.endTransaction(txn, commit: true)
                Issue.record("a timed-out transaction committed")
            } catch let error as BrokerError {
                #expect(error.kind == .requestTimeout && error.message.contains("transaction.timeout.ms"), "\(error.message)")
            }
            let committed = try await self.fetch(broker, "slow", .readCommitted)
            #expect(committed.events.isEmpty && committed.nextOffset == 3 && committed.lastStableOffset == 3)
            try await broker.shutdown()
        }
    }

    @Test("after a crash, the journal finishes transactions: an open one is aborted, a decided commit is committed")
    func recovery() async throws {
        try await withTemporaryDirectory { dir in
            let crashed = try makeBroker(dir, ["--num-partitions", "1"])
            let open = try await crashed.beginTransaction(partitions: [TopicPartition("a", 0), TopicPartition("b", 0)])
            try crashed.appendTransactional(open, to: TopicPartition("a", 0), records: records("open-a", 2))
            try crashed.appendTransactional(open, to: TopicPartition("b", 0), records: records("open-b", 1))
            let decided = try await crashed.beginTransaction(partitions: [TopicPartition("b", 0)])
            try crashed.appendTransactional(decided, to: TopicPartition("b", 0), records: records("decided", 2))
            decided.state.withLock { $0.phase = .prepareCommit }
            try await crashed.transactions.write(decided.entry(.prepareCommit), durably: true)
            // The process dies here: no markers, no shutdown. A new broker opens a copy of the files as they are.
            let copy = dir + "/after-crash"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: dir + "/data", toPath: copy + "/data")
            try FileManager.default.removeItem(atPath: copy + "/data/.lock")
            let broker = try makeBroker(copy, ["--num-partitions", "1"])
            #expect(broker.transactions.recovered.withLock { $0.map(\.id) } == [open.id, decided.id])
            try await broker.recoverTransactions()
            let a = try await self.fetch(broker, "a", .readCommitted)
            #expect(a.events.isEmpty && a.nextOffset == 3 && a.lastStableOffset == 3)
            let b = try await self.fetch(broker, "b", .readCommitted)
            #expect(b.events.compactMap(\.event?.id) == ["decided-0", "decided-1"])
            #expect(b.nextOffset == b.logEndOffset)
            try await broker.shutdown()
            // Finished means finished: the next start has nothing to do.
            let third = try makeBroker(copy, ["--num-partitions", "1"])
            #expect(third.transactions.recovered.withLock { $0.isEmpty })
            try await third.shutdown()
            try await crashed.shutdown()
        }
    }
}
