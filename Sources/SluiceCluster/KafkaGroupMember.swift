import CRdKafkaLoader
import Dispatch
import Foundation
import Logging
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import Synchronization

/// A member of a consumer group coordinated by the cluster: a librdkafka KafkaConsumer subscribed to the
/// subscriber's topics. Members behind different agents with the same group share the partitions; when one goes
/// away, the cluster gives its partitions to the others within `session.timeout.ms`. Offsets are committed by the
/// subscriber only (no auto-commit), so an event is never committed before it is finished.
///
/// Polls and commits run one at a time on the member's own queue (librdkafka serves the rebalance callback inside
/// a poll); librdkafka heartbeats in its background thread.
final class KafkaGroupMember: GroupMember, @unchecked Sendable {
    let group: String
    let memberId: String
    let description: String
    private let handle: OpaquePointer
    private let queue: DispatchQueue
    private let logger: Logger
    private let sessionTimeoutMs: Int64
    private let heartbeatIntervalMs: Int64
    /// The partitions the cluster gave this member, kept by the rebalance callback.
    let assignment = Mutex<Set<TopicPartition>>([])
    /// Assignments received so far (the member's own count, shown as its generation).
    private let generation = Atomic<Int>(0)
    private let left = Atomic<Bool>(false)
    private var context: Unmanaged<KafkaGroupMember>?
    private let onLeave: @Sendable () -> Void

    init(group: String, topics: [String], properties: [ClusterSettings.Property], logger: Logger, description: String,
         sessionTimeoutMs: Int64, heartbeatIntervalMs: Int64, onLeave: @escaping @Sendable () -> Void) throws(BrokerError) {
        self.onLeave = onLeave
        self.group = group
        self.memberId = "sluice-" + UUID().uuidString.lowercased()
        self.description = "\(description), group \(group)"
        self.logger = logger
        self.sessionTimeoutMs = sessionTimeoutMs
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.queue = DispatchQueue(label: "sluice.cluster.group.\(group)")
        let conf: OpaquePointer
        do {
            conf = try ClusterSettings.makeConfiguration(properties)
        } catch {
            throw BrokerError.badRequest(error.message, attribute: nil)
        }
        rd_kafka_conf_set_rebalance_cb(conf, rebalance)
        rd_kafka_conf_set_log_cb(conf, memberLog)
        var reason = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &reason, reason.count) else {
            rd_kafka_conf_destroy(conf)
            throw BrokerError(.internal, "the cluster consumer of group \(group) cannot start: \(errorText(reason))")
        }
        self.handle = handle
        let context = Unmanaged.passRetained(self)
        self.context = context
        MemberRegistry.shared.set(handle, context.toOpaque())
        rd_kafka_poll_set_consumer(handle)
        guard let list = rd_kafka_topic_partition_list_new(Int32(topics.count)) else {
            throw BrokerError(.internal, "librdkafka could not make a topic list")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let error = rd_kafka_subscribe(handle, list)
        guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
            MemberRegistry.shared.remove(handle)
            rd_kafka_destroy(handle)
            context.release()
            self.context = nil
            throw BrokerError(.unavailable, "\(self.description): subscribing to \(topics.joined(separator: ", ")) failed: \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
        }
        logger.info("cluster consumer group member joined", metadata: [
            LogField.group: .string(group), LogField.member: .string(memberId), "topics": .string(topics.joined(separator: ",")),
        ])
    }

    /// Runs `work` on the member's queue.
    private func serially<T: Sendable>(_ work: @escaping @Sendable () throws(BrokerError) -> T) async throws(BrokerError) -> T {
        try await run(on: queue, work)
    }

    func poll(maxRecords: Int, waitMs: Int64) async throws(BrokerError) -> PollResult {
        guard !left.load(ordering: .acquiring) else { throw BrokerError(.notFound, "\(description): the member has left") }
        let handle = UncheckedHandle(handle)
        let description = description
        let logger = logger
        let (events, positions) = try await serially { () throws(BrokerError) -> ([FetchedEvent], [TopicPartition: Int64]) in
            var events: [FetchedEvent] = []
            var wait = Int32(clamping: max(waitMs, 0))
            while events.count < maxRecords {
                guard let message = rd_kafka_consumer_poll(handle.pointer, wait) else { break }
                defer { rd_kafka_message_destroy(message) }
                wait = 0
                let error = message.pointee.err
                if error == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
                guard error == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    if error == RD_KAFKA_RESP_ERR__FATAL {
                        throw BrokerError(.notFound, "\(description): the consumer failed for good (\(String(cString: rd_kafka_err2str(error)))); joining again")
                    }
                    // Transient (a broker down, a leader moving): librdkafka recovers by itself.
                    logger.warning("cluster consumer: \(String(cString: rd_kafka_err2str(error)))", metadata: [LogField.group: .string(description)])
                    break
                }
                guard let topic = message.pointee.rkt.map({ String(cString: rd_kafka_topic_name($0)) }) else { continue }
                let record = PartitionReader.record(message)
                events.append(FetchedEvent(topic: topic, partition: message.pointee.partition, offset: record.offset, timestamp: record.timestamp,
                                           record: record, event: CloudEvent(record: record)))
            }
            return (events, Self.positions(handle.pointer))
        }
        return PollResult(member: view, events: events, positions: positions)
    }

    /// What the member owns now. The cluster does not tell a member its generation; `rebalancing` until the first
    /// assignment arrives (which a poll serves).
    var view: MemberAssignment {
        let owned = assignment.withLock { Array($0) }
        let generation = generation.load(ordering: .acquiring)
        return MemberAssignment(memberId: memberId, generation: generation, state: generation == 0 ? .rebalancing : .stable,
                                assignment: owned.sorted(), pending: [], sessionTimeoutMs: sessionTimeoutMs, heartbeatIntervalMs: heartbeatIntervalMs)
    }

    /// The consumer's next offset per assigned partition, where it has one.
    static func positions(_ handle: OpaquePointer) -> [TopicPartition: Int64] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [:] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        guard rd_kafka_position(handle, list) == RD_KAFKA_RESP_ERR_NO_ERROR else { return [:] }
        var positions: [TopicPartition: Int64] = [:]
        for index in 0..<Int(list.pointee.cnt) {
            let entry = list.pointee.elems[index]
            if entry.offset >= 0 { positions[TopicPartition(String(cString: entry.topic), entry.partition)] = entry.offset }
        }
        return positions
    }

    func commit(_ offsets: [(TopicPartition, Int64, String)]) async throws(BrokerError) {
        let owned = assignment.withLock { $0 }
        let mine = offsets.filter { owned.contains($0.0) }
        let moved = offsets.count - mine.count
        guard !mine.isEmpty else {
            if moved > 0 { throw BrokerError(.conflict, "\(description): the partitions moved to another member") }
            return
        }
        let handle = UncheckedHandle(handle)
        let description = description
        try await serially { () throws(BrokerError) in
            guard let list = rd_kafka_topic_partition_list_new(Int32(mine.count)) else { throw BrokerError(.internal, "librdkafka could not make a list") }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for (tp, offset, metadata) in mine {
                let entry = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)
                entry?.pointee.offset = offset
                // The list owns its entries' metadata (freed with it), so it gets a malloc'ed copy.
                if !metadata.isEmpty, let entry, let copy = malloc(metadata.utf8.count) {
                    let bytes = Array(metadata.utf8)
                    copy.copyMemory(from: bytes, byteCount: bytes.count)
                    entry.pointee.metadata = copy
                    entry.pointee.metadata_size = bytes.count
                }
            }
            let error = rd_kafka_commit(handle.pointer, list, 0)
            switch error {
            case RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR__NO_OFFSET:
                return
            case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
                 RD_KAFKA_RESP_ERR__STATE, RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
                throw BrokerError(.conflict, "\(description): the group rebalanced before the commit (\(String(cString: rd_kafka_err2str(error))))")
            default:
                throw BrokerError(.unavailable, "\(description): commit failed: \(String(cString: rd_kafka_err2str(error)))", retryAfter: 1)
            }
        }
        if moved > 0 { throw BrokerError(.conflict, "\(description): \(moved) partition(s) moved to another member") }
    }

    func heartbeat() async throws(BrokerError) -> MemberAssignment {
        // librdkafka heartbeats in its own thread; max.poll.interval.ms is set long, so a paused subscriber keeps its partitions.
        guard !left.load(ordering: .acquiring) else { throw BrokerError(.notFound, "\(description): the member has left") }
        return view
    }

    func leave() async {
        guard !left.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let handle = UncheckedHandle(handle)
        let context = self.context
        self.context = nil
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                // Leaves the group at once (the revoke runs in here); nothing is auto-committed.
                _ = rd_kafka_consumer_close(handle.pointer)
                MemberRegistry.shared.remove(handle.pointer)
                rd_kafka_destroy(handle.pointer)
                continuation.resume()
            }
        }
        onLeave()
        logger.info("cluster consumer group member left", metadata: [LogField.group: .string(group), LogField.member: .string(memberId)])
        context?.release()
    }

    /// The rebalance callback's work: take or give up partitions as the cluster says, for either protocol.
    func rebalanced(_ handle: OpaquePointer, _ error: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        var changed: [TopicPartition] = []
        if let partitions {
            for index in 0..<Int(partitions.pointee.cnt) {
                let entry = partitions.pointee.elems[index]
                changed.append(TopicPartition(String(cString: entry.topic), entry.partition))
            }
        }
        let cooperative = String(cString: rd_kafka_rebalance_protocol(handle)) == "COOPERATIVE"
        if error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if cooperative {
                if let failure = rd_kafka_incremental_assign(handle, partitions) { rd_kafka_error_destroy(failure) }
            } else {
                _ = rd_kafka_assign(handle, partitions)
            }
            assignment.withLock { owned in
                if !cooperative { owned = [] }
                owned.formUnion(changed)
            }
            generation.add(1, ordering: .releasing)
            logger.info("cluster group partitions assigned", metadata: [LogField.group: .string(group), LogField.member: .string(memberId),
                                                                        "partitions": .string(changed.map(\.description).sorted().joined(separator: ","))])
        } else {
            if cooperative {
                if let failure = rd_kafka_incremental_unassign(handle, partitions) { rd_kafka_error_destroy(failure) }
            } else {
                _ = rd_kafka_assign(handle, nil)
            }
            assignment.withLock { owned in
                if cooperative { owned.subtract(changed) } else { owned = [] }
            }
            logger.info("cluster group partitions revoked", metadata: [LogField.group: .string(group), LogField.member: .string(memberId),
                                                                       "partitions": .string(changed.map(\.description).sorted().joined(separator: ","))])
        }
    }
}

/// Finds a member from its handle in librdkafka's callbacks (the member's opaque pointer is not settable once
/// the handle exists, and the handle is made before the member is whole).
final class MemberRegistry: Sendable {
    static let shared = MemberRegistry()
    private let members = Mutex<[UInt: UInt]>([:])

    func set(_ handle: OpaquePointer, _ member: UnsafeMutableRawPointer) {
        members.withLock { $0[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))] = UInt(bitPattern: Int(bitPattern: member)) }
    }

    func remove(_ handle: OpaquePointer) {
        _ = members.withLock { $0.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))) }
    }

    func member(_ handle: OpaquePointer) -> KafkaGroupMember? {
        guard let address = members.withLock({ $0[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))] }),
              let pointer = UnsafeRawPointer(bitPattern: address) else { return nil }
        return Unmanaged<KafkaGroupMember>.fromOpaque(pointer).takeUnretainedValue()
    }
}

let rebalance: @convention(c) (OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?) -> Void = { handle, error, partitions, _ in
    guard let handle else { return }
    guard let member = MemberRegistry.shared.member(handle) else {
        // Not registered yet or already gone: follow the cluster without bookkeeping.
        if error == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS { _ = rd_kafka_assign(handle, partitions) } else { _ = rd_kafka_assign(handle, nil) }
        return
    }
    member.rebalanced(handle, error, partitions)
}

let memberLog: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { handle, level, _, line in
    guard let handle, let line, level <= 4, let member = MemberRegistry.shared.member(handle) else { return }
    let text = String(cString: line)
    if text.contains("will be ignored by this") { return }
    member.log(level: level, text)
}

extension KafkaGroupMember {
    func log(level: Int32, _ text: String) {
        let metadata: Logger.Metadata = [LogField.group: .string(group)]
        if level <= 3 { logger.error("librdkafka: \(text)", metadata: metadata) } else { logger.warning("librdkafka: \(text)", metadata: metadata) }
    }
}
