import Foundation
@_spi(FaultInjection) @testable import SluiceLog
import Testing

/// A fault walked over every I/O call of an operation: the Nth matching call fails with ENOSPC or EIO, for every N
/// the operation makes. Afterwards no acknowledged record may be missing, no refused record may be readable (before
/// or after a restart), no offset may be used twice, and the log either takes new appends or says why not.
@Suite("Fault injection", .serialized)
struct FaultInjectionTests {
    /// What happened to each batch handed to the log.
    struct Ledger {
        var acknowledged: [Int64: [Record]] = [:]  // base offset → records
        var refused: [[Record]] = []
        var stoppedMessages: [String] = []

        mutating func append(_ log: PartitionLog, _ records: [Record]) async {
            do {
                let info = try await log.append(try RecordBatch.encode(records, compression: .none))
                #expect(acknowledged[info.baseOffset] == nil, "offset \(info.baseOffset) acknowledged twice")
                acknowledged[info.baseOffset] = records
            } catch {
                refused.append(records)
                if error.logMessage.contains("stopped until restart") { stoppedMessages.append(error.logMessage) }
            }
        }

        /// A failed fsync cuts the log back to its last fsynced end: what was acknowledged from `offset` on
        /// without an fsync (flush.policy interval or os) is lost as in a power loss, so it counts as refused.
        mutating func fsyncFailed(since offset: Int64) {
            for (base, records) in acknowledged where base >= offset {
                acknowledged[base] = nil
                refused.append(records)
            }
        }

        /// The acknowledged records with their offsets, in offset order.
        var expected: [Record] {
            acknowledged.sorted { $0.key < $1.key }.flatMap { base, records in
                records.enumerated().map { i, record in
                    var r = record
                    r.offset = base + Int64(i)
                    return r
                }
            }
        }
    }

    /// Checks a log against the ledger: every acknowledged record present at its offset, nothing refused readable.
    static func verify(_ log: PartitionLog, _ ledger: Ledger, context: String) throws {
        let stored = try allRecords(log)
        let expected = ledger.expected.filter { $0.offset >= log.logStartOffset }
        #expect(stored == expected, "\(context): the log does not hold exactly the acknowledged records")
        let refusedValues = Set(ledger.refused.flatMap { $0.compactMap(\.value) })
        #expect(stored.allSatisfy { !refusedValues.contains($0.value ?? []) }, "\(context): a refused record is readable")
    }

    enum Restart: CaseIterable { case clean, crash }

    /// Runs `operation` once to count its I/O calls, then once per call with that call failing, and checks the
    /// log before and after a restart each time.
    static func walk(
        _ name: String, config: [String: String], errno: Int32, prefill: Int,
        operation: @escaping @Sendable (PartitionLog, inout Ledger) async throws -> Void
    ) async throws {
        var calls = 0
        for failAt in 0... {
            if failAt > calls { break }
            for restart in Restart.allCases where failAt > 0 || restart == .clean {
                try await withTemporaryDirectory { dir in
                    var ledger = Ledger()
                    let (manager, log) = try openPartition(dir, config: config)
                    for i in 0..<prefill { await ledger.append(log, sampleRecords(3, prefix: "pre\(i)")) }
                    try await log.flush()
                    FileFaults.arm(failAt: failAt, under: dir + "/", errno: errno)
                    try? await operation(log, &ledger)
                    let seen = FileFaults.disarm()
                    if failAt == 0 { calls = seen.seen }
                    let context = "\(name), I/O call \(failAt) of \(calls) failing, \(restart)"
                    try verify(log, ledger, context: context)
                    // The log goes on, or every append says why it cannot.
                    for i in 0..<3 { await ledger.append(log, sampleRecords(2, prefix: "after\(i)")) }
                    let acknowledgedAfter = ledger.acknowledged.count
                    if ledger.stoppedMessages.isEmpty {
                        #expect(ledger.refused.count <= 1, "\(context): appends after the fault were refused without saying why")
                    }
                    try verify(log, ledger, context: context + ", before restart")
                    try? await manager.close()
                    if restart == .crash { try? FileManager.default.removeItem(atPath: dir + "/" + LogManager.cleanShutdownMarker) }

                    let (reopened, again) = try openPartition(dir, config: config)
                    try verify(again, ledger, context: context + ", after restart")
                    #expect(again.logEndOffset == (ledger.expected.last.map { $0.offset + 1 } ?? 0) || ledger.acknowledged.count == acknowledgedAfter,
                            "\(context): the log end moved back past acknowledged records")
                    // After the restart, writes work again and take fresh offsets.
                    await ledger.append(again, sampleRecords(1, prefix: "restarted"))
                    #expect(ledger.refused.last?.first?.value != sampleRecords(1, prefix: "restarted").first?.value,
                            "\(context): appends still fail after a restart")
                    try verify(again, ledger, context: context + ", after restart and one more append")
                    try await reopened.close()
                    let checks = try LogChecker.check(dataDirectory: dir, repair: false)
                    let unclean = checks.filter { !$0.isClean }
                    #expect(unclean.isEmpty, "\(context): fsck found \(unclean)")
                }
            }
        }
        #expect(calls > 0, "\(name) made no I/O call to fail")
    }

    @Test("an append: any failing write or fsync leaves no refused record and no reused offset", arguments: [FileFaults.noSpace, FileFaults.ioError])
    func append(errno: Int32) async throws {
        try await Self.walk("append", config: [:], errno: errno, prefill: 2) { log, ledger in
            await ledger.append(log, sampleRecords(4, prefix: "faulted"))
        }
    }

    @Test("an append that rolls a segment, and the flush that seals it", arguments: [FileFaults.noSpace, FileFaults.ioError])
    func roll(errno: Int32) async throws {
        try await Self.walk("roll", config: ["segment.bytes": "700", "index.interval.bytes": "100"], errno: errno, prefill: 3) { log, ledger in
            await ledger.append(log, sampleRecords(4, prefix: "faulted"))
            await ledger.append(log, sampleRecords(4, prefix: "faulted2"))
        }
    }

    @Test("appends under flush.policy=interval and os, then a flush")
    func otherPolicies() async throws {
        for policy in ["interval", "os"] {
            try await Self.walk("append with \(policy)", config: ["flush.policy": policy, "segment.bytes": "700"], errno: FileFaults.ioError, prefill: 2) { log, ledger in
                let durable = log.logEndOffset
                await ledger.append(log, sampleRecords(4, prefix: "faulted"))
                do {
                    try await log.flush()
                } catch {
                    ledger.fsyncFailed(since: durable)
                    throw error
                }
            }
        }
    }

    @Test("a retention pass")
    func retention() async throws {
        try await Self.walk("retention", config: ["segment.bytes": "700", "retention.bytes": "800"], errno: FileFaults.ioError, prefill: 8) { log, _ in
            try log.enforceRetention()
        }
    }

    @Test("the issue's case: the write after a full disk neither reuses the refused batch's offset nor loses the next three")
    func fullDiskThenThree() async throws {
        try await withTemporaryDirectory { dir in
            var ledger = Ledger()
            let (manager, log) = try openPartition(dir)
            await ledger.append(log, sampleRecords(2, prefix: "before"))
            FileFaults.arm(failAt: 1, calls: [.write], under: dir + "/", sticky: true)
            await ledger.append(log, sampleRecords(1, prefix: "refused"))
            FileFaults.disarm()
            for i in 0..<3 { await ledger.append(log, sampleRecords(1, prefix: "after\(i)")) }
            #expect(ledger.refused.count == 1)
            #expect(ledger.acknowledged.keys.sorted() == [0, 2, 3, 4])
            try Self.verify(log, ledger, context: "before restart")
            try await manager.close()
            try FileManager.default.removeItem(atPath: dir + "/" + LogManager.cleanShutdownMarker)
            let (reopened, again) = try openPartition(dir)
            try Self.verify(again, ledger, context: "after restart")
            try await reopened.close()
        }
    }

    @Test("an offset commit: a refused commit is never read back, an acknowledged one always is", arguments: [FileFaults.noSpace, FileFaults.ioError])
    func offsetCommit(errno: Int32) async throws {
        let key = GroupPartition(group: "g", topic: "t", partition: 0)
        var calls = 0
        for failAt in 0... {
            if failAt > calls { break }
            try await withTemporaryDirectory { dir in
                let store = try OffsetStore.open(directory: dir)
                try await store.commit([key: CommittedOffset(offset: 5, commitTime: 1)])
                FileFaults.arm(failAt: failAt, under: dir + "/", errno: errno)
                var expected: Int64 = 5
                if (try? await store.commit([key: CommittedOffset(offset: 9, commitTime: 2)])) != nil { expected = 9 }
                let seen = FileFaults.disarm()
                if failAt == 0 { calls = seen.seen }
                #expect(store.offset(key)?.offset == expected, "call \(failAt): the store answers another offset than it acknowledged")
                // The next commit lands or says why not; either way the store reads back what was acknowledged.
                if (try? await store.commit([key: CommittedOffset(offset: 12, commitTime: 3)])) != nil { expected = 12 }
                store.close()
                let reopened = try OffsetStore.open(directory: dir)
                #expect(reopened.offset(key)?.offset == expected, "call \(failAt) failing: read back \(String(describing: reopened.offset(key))), acknowledged \(expected)")
                reopened.close()
            }
        }
        #expect(calls >= 2)
    }
}
