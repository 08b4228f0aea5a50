import CRdKafkaLoader
import Dispatch
import Foundation
import SluiceBroker
import SluiceLog

/// One partition of the reader: started at the offset of the first read, kept running while reads follow on
/// where the last ended, restarted when a read asks for another offset. Reads of one partition take turns.
final class PartitionReader: @unchecked Sendable {
    private let lock = NSLock()
    private var started = false
    private var next: Int64 = 0

    /// Records from `offset`: those below `available` (the end the cluster gave just before) are waited for up to
    /// ``dataWaitMs``, since they exist; beyond them, only the first record is waited for, up to `maxWaitMs`.
    func read(_ topic: OpaquePointer, partition: Int32, from offset: Int64, available: Int64, maxRecords: Int, maxBytes: Int, maxWaitMs: Int64,
              description: String) throws(BrokerError) -> [Record] {
        lock.lock()
        defer { lock.unlock() }
        if !started || next != offset {
            if started { rd_kafka_consume_stop(topic, partition) }
            started = false
            guard rd_kafka_consume_start(topic, partition, offset) == 0 else {
                throw BrokerError(.unavailable, "\(description): reading from \(offset) could not start (\(String(cString: rd_kafka_err2str(rd_kafka_last_error()))))", retryAfter: 1)
            }
            started = true
            next = offset
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let pollDeadline = start + UInt64(max(maxWaitMs, 0)) * 1_000_000
        let dataDeadline = start + UInt64(Self.dataWaitMs) * 1_000_000
        var available = available
        var records: [Record] = []
        var bytes = 0
        while records.count < maxRecords && bytes < maxBytes {
            let now = DispatchTime.now().uptimeNanoseconds
            let deadline = next < available ? dataDeadline : (records.isEmpty ? pollDeadline : now)
            let wait = deadline > now ? Int32(min((deadline - now) / 1_000_000, 1000)) : 0
            guard let message = rd_kafka_consume(topic, partition, wait) else {
                if DispatchTime.now().uptimeNanoseconds < deadline { continue }
                break
            }
            defer { rd_kafka_message_destroy(message) }
            let error = message.pointee.err
            if error == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                // An end reached before records below `available` were appended (left in the queue by an earlier
                // read) is stale: the records are there to be read.
                if message.pointee.offset < available && next < available { continue }
                // The end as the partition's leader sees it now (under read_committed, the last stable offset).
                available = min(available, next)
                if records.isEmpty && DispatchTime.now().uptimeNanoseconds < pollDeadline { continue }
                break
            }
            guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                rd_kafka_consume_stop(topic, partition)
                started = false
                if error == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || error == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET {
                    throw BrokerError(.notFound, "\(description): offset \(offset) is out of range")
                }
                throw BrokerError(.unavailable, "\(description): \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
            }
            guard message.pointee.offset >= next else { continue }  // already returned
            let record = Self.record(message)
            bytes += (record.value?.count ?? 0) + (record.key?.count ?? 0)
            records.append(record)
            next = record.offset + 1
        }
        return records
    }

    /// How long records known to exist are waited for before the read answers with what it has.
    static let dataWaitMs = 5000

    func stop(_ topic: OpaquePointer, partition: Int32) {
        lock.lock()
        defer { lock.unlock() }
        if started { rd_kafka_consume_stop(topic, partition) }
        started = false
    }

    static func record(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> Record {
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8]? {
            guard let pointer else { return nil }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &type)
        var headers: [RecordHeader] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(RecordHeader(key: name.map { String(cString: $0) } ?? "",
                                            value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }))
                index += 1
            }
        }
        return Record(offset: message.pointee.offset, timestamp: timestamp, key: bytes(message.pointee.key, message.pointee.key_len),
                      value: bytes(message.pointee.payload, message.pointee.len), headers: headers)
    }
}
