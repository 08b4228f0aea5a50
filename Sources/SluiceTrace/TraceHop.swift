/// One step of a correlation's journey: an event written to a topic, a delivery attempt, a dead letter, a replay,
/// or a saga's change. Every hop is recorded under the correlation id of the event (or saga) it concerns.
public struct TraceHop: Sendable, Hashable {
    public enum Kind: String, Sendable, CaseIterable {
        /// An event in a topic (read back from the log, so only what was written and committed).
        case event
        /// One attempt to deliver an event to a push subscription's endpoint.
        case delivery
        /// An event moved to its subscription's dead-letter topic.
        case deadLetter = "dead_letter"
        /// A dead letter delivered again by a replay.
        case replay
        /// A saga started, moved a step, compensated or finished.
        case saga

        /// The kind's number in the journal: its place in `allCases` (which decoding indexes), without building that
        /// array per hop.
        var code: UInt8 {
            switch self {
            case .event: 0
            case .delivery: 1
            case .deadLetter: 2
            case .replay: 3
            case .saga: 4
            }
        }
    }

    public var kind: Kind
    /// Milliseconds since the epoch: the record's timestamp for events, the moment of the outcome otherwise.
    public var time: Int64
    public var eventId: String?
    public var eventType: String?
    public var source: String?
    public var causationId: String?
    public var topic: String?
    public var partition: Int32?
    public var offset: Int64?
    /// Delivery, dead-letter and replay hops: the push subscription.
    public var subscription: String?
    public var attempt: Int?
    public var httpStatus: Int?
    /// Delivery: delivered, dropped, rejected, http_error, timeout, unavailable, unsupported_event_version.
    /// Dead letter: the error type. Replay: delivered, requeued, poisoned, skipped. Saga: the transition.
    public var outcome: String?
    public var latencyMs: Double?
    public var sagaId: String?
    public var sagaType: String?
    public var sagaStatus: String?
    public var step: String?
    /// Delivery hops: whether the event is done for this subscription (delivered or dropped); saga hops:
    /// whether the saga reached a final status.
    public var final: Bool?
    /// Event hops: the push subscriptions that will deliver the event (their hops finish it).
    public var expected: [String]?

    public init(kind: Kind, time: Int64) {
        self.kind = kind
        self.time = time
    }

    /// The key under which a delivery of the event at `topic/partition/offset` by `subscription` is awaited.
    static func deliveryKey(topic: String, partition: Int32, offset: Int64, subscription: String) -> UInt64 {
        var hash = FNV1a()
        hash.add(topic)
        hash.add(partition)
        hash.add(offset)
        hash.add(subscription)
        return hash.value
    }
}

/// 64-bit FNV-1a: stable across processes (Swift's `Hasher` is seeded per process), for keys rebuilt from the journal.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x0000_0100_0000_01b3
    }

    mutating func add(_ text: String) {
        for byte in text.utf8 { add(byte) }
        add(0x1F)
    }

    mutating func add<T: FixedWidthInteger>(_ number: T) {
        withUnsafeBytes(of: number.littleEndian) { for byte in $0 { add(byte) } }
    }
}

// MARK: - Binary form

/// Hops are kept in memory and in the journal in a compact binary form: a presence mask, then the fields present,
/// strings as a varint length and UTF-8, integers as zigzag varints.
extension TraceHop {
    private enum Field: Int, CaseIterable {
        case eventId, eventType, source, causationId, topic, partition, offset, subscription, attempt, httpStatus, outcome, latencyMs,
             sagaId, sagaType, sagaStatus, step, final, expected
    }

    func encode(into out: inout [UInt8]) {
        var mask: UInt32 = 0
        func has(_ field: Field, _ present: Bool) { if present { mask |= 1 << UInt32(field.rawValue) } }
        has(.eventId, eventId != nil); has(.eventType, eventType != nil); has(.source, source != nil); has(.causationId, causationId != nil)
        has(.topic, topic != nil); has(.partition, partition != nil); has(.offset, offset != nil); has(.subscription, subscription != nil)
        has(.attempt, attempt != nil); has(.httpStatus, httpStatus != nil); has(.outcome, outcome != nil); has(.latencyMs, latencyMs != nil)
        has(.sagaId, sagaId != nil); has(.sagaType, sagaType != nil); has(.sagaStatus, sagaStatus != nil); has(.step, step != nil)
        has(.final, final != nil); has(.expected, expected != nil)
        out.append(kind.code)
        BinaryCoding.writeVarint(Int64(mask), into: &out)
        BinaryCoding.writeVarint(time, into: &out)
        // Field by field (an array of the optional strings would be allocated, and each string retained, per hop).
        func write(_ string: String?) { if let string { BinaryCoding.write(string, into: &out) } }
        write(eventId); write(eventType); write(source); write(causationId); write(topic)
        if let partition { BinaryCoding.writeVarint(Int64(partition), into: &out) }
        if let offset { BinaryCoding.writeVarint(offset, into: &out) }
        if let subscription { BinaryCoding.write(subscription, into: &out) }
        if let attempt { BinaryCoding.writeVarint(Int64(attempt), into: &out) }
        if let httpStatus { BinaryCoding.writeVarint(Int64(httpStatus), into: &out) }
        if let outcome { BinaryCoding.write(outcome, into: &out) }
        if let latencyMs { BinaryCoding.writeVarint(Int64(bitPattern: latencyMs.bitPattern), into: &out) }
        write(sagaId); write(sagaType); write(sagaStatus); write(step)
        if let final { out.append(final ? 1 : 0) }
        if let expected {
            BinaryCoding.writeVarint(Int64(expected.count), into: &out)
            for name in expected { BinaryCoding.write(name, into: &out) }
        }
    }

    static func decode(_ reader: inout BinaryReader) throws(TraceCodingError) -> TraceHop {
        let kindIndex = Int(try reader.byte())
        guard Kind.allCases.indices.contains(kindIndex) else { throw TraceCodingError("hop kind \(kindIndex) is unknown") }
        let mask = try reader.varint()
        func has(_ field: Field) -> Bool { mask & (1 << Int64(field.rawValue)) != 0 }
        var hop = TraceHop(kind: Kind.allCases[kindIndex], time: try reader.varint())
        if has(.eventId) { hop.eventId = try reader.string() }
        if has(.eventType) { hop.eventType = try reader.string() }
        if has(.source) { hop.source = try reader.string() }
        if has(.causationId) { hop.causationId = try reader.string() }
        if has(.topic) { hop.topic = try reader.string() }
        if has(.partition) { hop.partition = Int32(truncatingIfNeeded: try reader.varint()) }
        if has(.offset) { hop.offset = try reader.varint() }
        if has(.subscription) { hop.subscription = try reader.string() }
        if has(.attempt) { hop.attempt = Int(try reader.varint()) }
        if has(.httpStatus) { hop.httpStatus = Int(try reader.varint()) }
        if has(.outcome) { hop.outcome = try reader.string() }
        if has(.latencyMs) { hop.latencyMs = Double(bitPattern: UInt64(bitPattern: try reader.varint())) }
        if has(.sagaId) { hop.sagaId = try reader.string() }
        if has(.sagaType) { hop.sagaType = try reader.string() }
        if has(.sagaStatus) { hop.sagaStatus = try reader.string() }
        if has(.step) { hop.step = try reader.string() }
        if has(.final) { hop.final = try reader.byte() != 0 }
        if has(.expected) {
            let count = try reader.varint()
            guard (0...10_000).contains(count) else { throw TraceCodingError("\(count) expected subscriptions") }
            hop.expected = try (0..<count).map { _ throws(TraceCodingError) in try reader.string() }
        }
        return hop
    }
}

public struct TraceCodingError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

enum BinaryCoding {
    static func writeVarint(_ value: Int64, into out: inout [UInt8]) {
        var v = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func write(_ string: String, into out: inout [UInt8]) {
        var string = string
        string.withUTF8 { bytes in
            writeVarint(Int64(bytes.count), into: &out)
            out.append(contentsOf: bytes)
        }
    }
}

struct BinaryReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.position = start
        self.end = end ?? bytes.count
    }

    var isAtEnd: Bool { position >= end }

    mutating func byte() throws(TraceCodingError) -> UInt8 {
        guard position < end else { throw TraceCodingError("truncated at byte \(position)") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func varint() throws(TraceCodingError) -> Int64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            guard shift < 64 else { throw TraceCodingError("varint too long at byte \(position)") }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { break }
            shift += 7
        }
        return Int64(bitPattern: result >> 1) ^ -Int64(bitPattern: result & 1)
    }

    mutating func string() throws(TraceCodingError) -> String {
        let count = try varint()
        guard count >= 0, Int(count) <= end - position else { throw TraceCodingError("string of \(count) bytes past the end at byte \(position)") }
        defer { position += Int(count) }
        return String(decoding: bytes[position..<position + Int(count)], as: UTF8.self)
    }
}
