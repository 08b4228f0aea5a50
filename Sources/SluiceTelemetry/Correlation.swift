public import Logging
import Synchronization

/// The ids that tie log lines of one request or one event together, carried in a task-local so that every
/// log line written while handling it gets them without passing them through every call.
public struct CorrelationContext: Sendable, Hashable {
    public var correlationId: String
    public var causationId: String?
    public var traceId: String?
    public var spanId: String?
    public var eventId: String?
    public var eventType: String?
    public var topic: String?
    public var partition: Int32?
    public var offset: Int64?

    public init(correlationId: String, causationId: String? = nil, traceId: String? = nil, spanId: String? = nil,
                eventId: String? = nil, eventType: String? = nil, topic: String? = nil, partition: Int32? = nil, offset: Int64? = nil) {
        self.correlationId = correlationId
        self.causationId = causationId
        self.traceId = traceId
        self.spanId = spanId
        self.eventId = eventId
        self.eventType = eventType
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    /// The context as log metadata, under the names in ``LogField``.
    public var metadata: Logger.Metadata {
        var out: Logger.Metadata = [LogField.correlationId: .string(correlationId)]
        if let causationId { out[LogField.causationId] = .string(causationId) }
        if let traceId { out[LogField.traceId] = .string(traceId) }
        if let spanId { out[LogField.spanId] = .string(spanId) }
        if let eventId { out[LogField.eventId] = .string(eventId) }
        if let eventType { out[LogField.eventType] = .string(eventType) }
        if let topic { out[LogField.topic] = .string(topic) }
        if let partition { out[LogField.partition] = .stringConvertible(partition) }
        if let offset { out[LogField.offset] = .stringConvertible(offset) }
        return out
    }
}

public enum Correlation {
    /// The context of the request or event being handled by the current task, if any.
    @TaskLocal public static var current: CorrelationContext?

    /// The longest correlation id accepted, as the `correlationid` attribute or the `X-Correlation-ID` header.
    public static let maxIdLength = 200

    /// Adds the current task's correlation context to every log line.
    public static let metadataProvider = Logger.MetadataProvider {
        current?.metadata ?? [:]
    }

    /// A new correlation id for a request or event that came without one: 128 random bits written like a
    /// lower-case UUID (version 4). The bits come from a generator seeded once from the system's, so an id costs
    /// no system call; ids only need to be unique, not secret.
    public static func newId() -> String {
        let (high, low) = idGenerator.withLock { state -> (UInt64, UInt64) in (state.next(), state.next()) }
        // Version 4, variant 10, as UUIDs are.
        let a = (high & ~0xF000) | 0x4000, b = (low & ~(0xC000_0000_0000_0000)) | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { out in
            let digits: StaticString = "0123456789abcdef"
            var index = 0
            func put(_ value: UInt64, nibbles: Int) {
                for shift in stride(from: (nibbles - 1) * 4, through: 0, by: -4) {
                    out[index] = digits.utf8Start[Int((value >> UInt64(shift)) & 0xF)]
                    index += 1
                }
            }
            func dash() {
                out[index] = UInt8(ascii: "-")
                index += 1
            }
            put(a >> 32, nibbles: 8); dash(); put(a >> 16, nibbles: 4); dash(); put(a, nibbles: 4); dash()
            put(b >> 48, nibbles: 4); dash(); put(b, nibbles: 12)
            return 36
        }
    }

    /// xoshiro256** seeded from the system generator.
    struct IdGenerator {
        var s: (UInt64, UInt64, UInt64, UInt64)

        init() {
            var system = SystemRandomNumberGenerator()
            s = (system.next(), system.next(), system.next(), system.next() | 1)
        }

        mutating func next() -> UInt64 {
            let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
            let t = s.1 << 17
            s.2 ^= s.0
            s.3 ^= s.1
            s.1 ^= s.2
            s.0 ^= s.3
            s.2 ^= t
            s.3 = s.3 << 45 | s.3 >> 19
            return result
        }
    }

    private static let idGenerator = Mutex(IdGenerator())

    /// Runs `body` with `context` as the current correlation context.
    public static func with<T: Sendable>(_ context: CorrelationContext, _ body: () async throws -> T) async rethrows -> T {
        try await $current.withValue(context, operation: body)
    }

    /// Parses a W3C `traceparent` header (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); the ids come
    /// back in lower case. Neither id may be all zeros.
    public static func parseTraceparent(_ value: String) -> (traceId: String, spanId: String)? {
        guard let upperCase = scanTraceparent(value) else { return nil }
        let bytes = value.utf8
        let traceStart = bytes.index(bytes.startIndex, offsetBy: 3)
        let traceEnd = bytes.index(traceStart, offsetBy: 32)
        let spanStart = bytes.index(after: traceEnd)
        let spanEnd = bytes.index(spanStart, offsetBy: 16)
        let traceId = String(Substring(bytes[traceStart..<traceEnd])), spanId = String(Substring(bytes[spanStart..<spanEnd]))
        return upperCase ? (traceId.lowercased(), spanId.lowercased()) : (traceId, spanId)
    }

    /// Whether `value` is a W3C `traceparent`, without building its ids.
    public static func isTraceparent(_ value: String) -> Bool { scanTraceparent(value) != nil }

    /// One pass over the 55 bytes: nil when it is not a traceparent, else whether it has upper-case hex.
    /// (Publishing checks every event's traceparent, so this must not allocate.)
    private static func scanTraceparent(_ value: String) -> Bool? {
        let bytes = value.utf8
        guard bytes.count == 55 else { return nil }
        var upperCase = false, traceNonZero = false, spanNonZero = false
        var position = 0
        for byte in bytes {
            defer { position += 1 }
            if position == 2 || position == 35 || position == 52 {
                guard byte == UInt8(ascii: "-") else { return nil }
                continue
            }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): break
            case UInt8(ascii: "A")...UInt8(ascii: "F"): upperCase = true
            default: return nil
            }
            if byte != UInt8(ascii: "0") {
                if position > 2 && position < 35 { traceNonZero = true } else if position > 35 && position < 52 { spanNonZero = true }
            }
        }
        return traceNonZero && spanNonZero ? upperCase : nil
    }
}
