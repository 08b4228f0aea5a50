import Foundation
@testable import SluiceLog
import Testing

/// Transactional batches and markers in one partition: the last stable offset, aborted spans, their index
/// across restarts, and kafka-python's parser as the oracle of the control batches.
@Suite("transactions in the log")
struct TransactionLogTests {
    func transactional(_ count: Int, producerId: Int64, prefix: String) throws -> [UInt8] {
        try RecordBatch.encode(sampleRecords(count, prefix: prefix, timestamp: 1_700_000_000_000),
                               producer: ProducerInfo(producerId: producerId, producerEpoch: 3, baseSequence: 0), transactional: true)
    }

    @Test("an open transaction holds the last stable offset at its first batch; COMMIT releases it, ABORT records the span")
    func lastStableOffset() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir)
            try await log.append(try RecordBatch.encode(sampleRecords(2, prefix: "plain", timestamp: 1)))
            #expect(log.lastStableOffset == 2)
            let first = try await log.append(try transactional(3, producerId: 7, prefix: "seven"))
            #expect(first.baseOffset == 2 && log.lastStableOffset == 2 && log.logEndOffset == 5)
            try await log.append(try transactional(2, producerId: 8, prefix: "eight"))
            try await log.append(try RecordBatch.encode(sampleRecords(1, prefix: "plain2", timestamp: 1)))
            try await log.append(try transactional(1, producerId: 7, prefix: "seven-b"))
            #expect(log.openTransactions == [7: 2, 8: 5])
            let commit = try log.appendMarker(.commit, producerId: 7, producerEpoch: 3)
            #expect(commit.baseOffset == 9 && log.lastStableOffset == 5, "8 is still open from offset 5")
            let abort = try log.appendMarker(.abort, producerId: 8, producerEpoch: 3)
            #expect(log.lastStableOffset == log.logEndOffset && log.logEndOffset == 11)
            #expect(log.abortedTransactions(from: 0, upTo: 11) == [AbortedTransaction(producerId: 8, firstOffset: 5, lastOffset: abort.baseOffset)])
            #expect(log.abortedTransactions(from: 11, upTo: 20).isEmpty)
            #expect(log.isAborted(producerId: 8, offset: 5) && !log.isAborted(producerId: 7, offset: 2) && !log.isAborted(producerId: 8, offset: 11))
            let batches = try log.read(from: 0)
            #expect(batches.map { log.isHidden($0.header, isolation: .readCommitted) } == [false, false, true, false, false, true, true])
            #expect(batches.map { log.isHidden($0.header, isolation: .readUncommitted) } == [false, false, false, false, false, true, true])
            #expect(ControlBatch.type(of: batches[5].bytes) == .commit && ControlBatch.type(of: batches[6].bytes) == .abort)
            #expect(ControlBatch.type(of: batches[0].bytes) == nil)
            try await log.flush()
            try await manager.close()

            // After a restart the aborted span is read back from the index.
            let (again, reopened) = try openPartition(dir)
            #expect(reopened.abortedTransactions(from: 0, upTo: 11) == [AbortedTransaction(producerId: 8, firstOffset: 5, lastOffset: 10)])
            #expect(reopened.lastStableOffset == 11)
            try await again.close()
        }
    }

    @Test("recovery reopens a transaction from a lower bound and its ABORT covers it; an index entry whose marker was lost is dropped")
    func restoredAbort() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir)
            try await log.append(try RecordBatch.encode(sampleRecords(3, prefix: "plain", timestamp: 1)))
            try await log.append(try transactional(2, producerId: 40, prefix: "crash"))
            try await manager.close()

            // A restart forgets open transactions: the coordinator's journal restores them.
            let (again, reopened) = try openPartition(dir)
            #expect(reopened.lastStableOffset == 5 && reopened.openTransactions.isEmpty)
            reopened.restoreOpenTransaction(producerId: 40, from: 1)
            #expect(reopened.lastStableOffset == 1)
            try reopened.appendMarker(.abort, producerId: 40, producerEpoch: 3)
            #expect(reopened.isAborted(producerId: 40, offset: 3) && reopened.lastStableOffset == 6)
            try await reopened.flush()
            try await again.close()

            // An entry past the log end (its marker never reached the file) is dropped when the partition opens.
            let index = reopened.directory + "/" + AbortedIndexFile.name
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: index))
            handle.seekToEndOfFile()
            handle.write(Data(AbortedIndexFile.encode(AbortedTransaction(producerId: 41, firstOffset: 6, lastOffset: 6))))
            handle.write(Data([1, 2, 3]))  // and a torn one
            try handle.close()
            let (third, log3) = try openPartition(dir)
            #expect(log3.abortedTransactions(from: 0, upTo: 100) == [AbortedTransaction(producerId: 40, firstOffset: 1, lastOffset: 5)])
            #expect(try Data(contentsOf: URL(fileURLWithPath: index)).count == AbortedIndexFile.entrySize)
            try await third.close()
        }
    }

    @Test("kafka-python reads the transactional batches and parses the COMMIT and ABORT control batches")
    func oracleReadsMarkers() async throws {
        try await withTemporaryDirectory { dir in
            let (manager, log) = try openPartition(dir)
            try await log.append(try transactional(2, producerId: 11, prefix: "kept"))
            try log.appendMarker(.commit, producerId: 11, producerEpoch: 3, coordinatorEpoch: 5)
            try await log.append(try transactional(1, producerId: 12, prefix: "dropped"))
            try log.appendMarker(.abort, producerId: 12, producerEpoch: 3)
            try await log.flush()
            try await manager.close()
            struct Batch: Decodable {
                struct Control: Decodable { var version: Int; var commit: Bool; var abort: Bool }
                struct Record: Decodable { var offset: Int64; var key: String?; var value: String?; var control: Control? }
                var base_offset: Int64
                var crc_valid: Bool
                var producer_id: Int64
                var producer_epoch: Int16
                var is_transactional: Bool
                var is_control_batch: Bool
                var records: [Record]
            }
            let result = try runProcess("/usr/bin/env", ["python3", KafkaOracleTests.script, "decode"] + log.segments.map(\.path))
            #expect(result.status == 0, "oracle failed: \(result.stderr)")
            let batches = try result.stdout.split(separator: "\n").map { try JSONDecoder().decode(Batch.self, from: Data($0.utf8)) }
            #expect(batches.map(\.base_offset) == [0, 2, 3, 4])
            #expect(batches.allSatisfy { $0.crc_valid && $0.is_transactional && $0.producer_epoch == 3 })
            #expect(batches.map(\.is_control_batch) == [false, true, false, true])
            #expect(batches.map(\.producer_id) == [11, 11, 12, 12])
            #expect(batches[1].records.count == 1 && batches[1].records[0].control?.commit == true && batches[1].records[0].control?.version == 0)
            #expect(batches[3].records[0].control?.abort == true)
            // The marker's value: version 0 and the coordinator epoch.
            #expect(batches[1].records[0].value == "000000000005")
            #expect(batches[0].records.allSatisfy { $0.control == nil })
        }
    }
}
