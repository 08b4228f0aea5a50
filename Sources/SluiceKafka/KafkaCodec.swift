public import NIOCore
public import SluiceLog

/// A request or response that does not follow the protocol: what was wrong, for the log and the client.
public struct KafkaDecodeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads the protocol's primitive types (big-endian integers, int16-length strings, int32-length bytes and
/// arrays) from a request body, refusing lengths that run past its end.
///
/// Non-flexible encodings only: the APIs and versions Sluice serves (``KafkaAPI``) use none of the compact
/// (varint) forms.
public struct KafkaReader {
    var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }

    public var remaining: Int { buffer.readableBytes }

    public mutating func int8() throws(KafkaDecodeError) -> Int8 { try integer("int8") }
    public mutating func int16() throws(KafkaDecodeError) -> Int16 { try integer("int16") }
    public mutating func int32() throws(KafkaDecodeError) -> Int32 { try integer("int32") }
    public mutating func int64() throws(KafkaDecodeError) -> Int64 { try integer("int64") }

    public mutating func bool() throws(KafkaDecodeError) -> Bool { try int8() != 0 }

    private mutating func integer<T: FixedWidthInteger>(_ name: String) throws(KafkaDecodeError) -> T {
        guard let value = buffer.readInteger(endianness: .big, as: T.self) else {
            throw KafkaDecodeError("the request ends where an \(name) was expected")
        }
        return value
    }

    /// A nullable string: int16 length, -1 for null.
    public mutating func nullableString() throws(KafkaDecodeError) -> String? {
        let length = try int16()
        if length < 0 {
            guard length == -1 else { throw KafkaDecodeError("string length \(length) is negative") }
            return nil
        }
        guard let text = buffer.readString(length: Int(length)) else {
            throw KafkaDecodeError("a string of \(length) bytes runs past the end of the request")
        }
        return text
    }

    public mutating func string() throws(KafkaDecodeError) -> String {
        guard let text = try nullableString() else { throw KafkaDecodeError("a string that must not be null is null") }
        return text
    }

    /// Nullable bytes: int32 length, -1 for null; returned as a slice of the request (no copy).
    public mutating func nullableBytes() throws(KafkaDecodeError) -> ByteBuffer? {
        let length = try int32()
        if length < 0 {
            guard length == -1 else { throw KafkaDecodeError("bytes length \(length) is negative") }
            return nil
        }
        guard let slice = buffer.readSlice(length: Int(length)) else {
            throw KafkaDecodeError("\(length) bytes run past the end of the request")
        }
        return slice
    }

    public mutating func bytes() throws(KafkaDecodeError) -> ByteBuffer {
        guard let bytes = try nullableBytes() else { throw KafkaDecodeError("bytes that must not be null are null") }
        return bytes
    }

    /// A nullable array: int32 count, -1 for null. Each element needs at least `minimumElementSize` bytes, so a
    /// count that the rest of the request cannot hold is refused before anything is allocated.
    public mutating func nullableArray<T>(minimumElementSize: Int = 1,
                                          _ element: (inout KafkaReader) throws(KafkaDecodeError) -> T) throws(KafkaDecodeError) -> [T]? {
        let count = try int32()
        if count < 0 {
            guard count == -1 else { throw KafkaDecodeError("array length \(count) is negative") }
            return nil
        }
        guard Int(count) * max(minimumElementSize, 1) <= remaining else {
            throw KafkaDecodeError("an array of \(count) elements cannot fit in the \(remaining) bytes left of the request")
        }
        var items: [T] = []
        items.reserveCapacity(Int(count))
        for _ in 0..<count { items.append(try element(&self)) }
        return items
    }

    public mutating func array<T>(minimumElementSize: Int = 1,
                                  _ element: (inout KafkaReader) throws(KafkaDecodeError) -> T) throws(KafkaDecodeError) -> [T] {
        try nullableArray(minimumElementSize: minimumElementSize, element) ?? []
    }
}

/// Writes the protocol's primitive types into a response.
public struct KafkaWriter {
    /// What is being written now, after ``parts``.
    public var buffer: ByteBuffer
    /// What was written before `buffer`: buffers and ranges of log files, in order.
    private var parts: [KafkaResponse.Part] = []
    private var partsSize = 0

    public init(capacity: Int = 256) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    /// Bytes written so far.
    public var size: Int { partsSize + buffer.readableBytes }

    /// A range of a log file, sent from the file itself (sendfile) rather than copied into the response.
    public mutating func fileRange(_ range: StoredRange) {
        if buffer.readableBytes > 0 {
            parts.append(.bytes(buffer))
            partsSize += buffer.readableBytes
            buffer = ByteBufferAllocator().buffer(capacity: 256)
        }
        parts.append(.file(range))
        partsSize += range.length
    }

    /// A writer for a response frame: a size, filled in by ``finishFrame()``, then the correlation id.
    public static func frame(correlationId: Int32) -> KafkaWriter {
        var w = KafkaWriter()
        w.int32(0)
        w.int32(correlationId)
        return w
    }

    /// The frame begun by ``frame(correlationId:)``, with its size set.
    public func finishFrame() -> KafkaResponse {
        var all = parts
        if buffer.readableBytes > 0 || all.isEmpty { all.append(.bytes(buffer)) }
        if case .bytes(var first) = all[0] {
            first.setInteger(Int32(size - 4), at: first.readerIndex, endianness: .big)
            all[0] = .bytes(first)
        }
        return KafkaResponse(parts: all, size: size)
    }

    public mutating func int8(_ value: Int8) { buffer.writeInteger(value, endianness: .big) }
    public mutating func int16(_ value: Int16) { buffer.writeInteger(value, endianness: .big) }
    public mutating func int32(_ value: Int32) { buffer.writeInteger(value, endianness: .big) }
    public mutating func int64(_ value: Int64) { buffer.writeInteger(value, endianness: .big) }
    public mutating func bool(_ value: Bool) { int8(value ? 1 : 0) }

    public mutating func int32(_ value: Int) { int32(Int32(clamping: value)) }

    public mutating func string(_ value: String) {
        // Names and messages Sluice writes are far below 32 KiB; a longer one is cut at a character boundary.
        var text = value
        while text.utf8.count > Int(Int16.max) { text.removeLast() }
        int16(Int16(text.utf8.count))
        buffer.writeString(text)
    }

    public mutating func nullableString(_ value: String?) {
        guard let value else { return int16(-1) }
        string(value)
    }

    public mutating func nullableBytes(_ value: ByteBuffer?) {
        guard var value else { return int32(-1) }
        int32(Int32(value.readableBytes))
        buffer.writeBuffer(&value)
    }

    public mutating func bytes(_ value: [UInt8]) {
        int32(Int32(value.count))
        buffer.writeBytes(value)
    }

    public mutating func array<T>(_ items: [T], _ element: (inout KafkaWriter, T) -> Void) {
        int32(Int32(items.count))
        for item in items { element(&self, item) }
    }

    public mutating func nullableArray<T>(_ items: [T]?, _ element: (inout KafkaWriter, T) -> Void) {
        guard let items else { return int32(-1) }
        array(items, element)
    }
}

/// A response frame ready to send, size prefix included: buffers and ranges of log files.
public struct KafkaResponse: Sendable {
    public enum Part: Sendable {
        case bytes(ByteBuffer)
        /// Stored batches, sent from the segment file as they are.
        case file(StoredRange)
    }
    public var parts: [Part]
    /// Bytes in all, size prefix included.
    public var size: Int
}

/// The header every request starts with (request header v1: no tagged fields).
public struct KafkaRequestHeader: Sendable, Hashable {
    public var apiKey: Int16
    public var apiVersion: Int16
    public var correlationId: Int32
    public var clientId: String?

    /// Reads the header from the start of a frame, leaving `reader` at the body.
    ///
    /// A flexible request (header v2) has tagged fields after the client id; the only one Sluice reads is
    /// an ApiVersions request of a version it does not serve, which it answers from the header alone.
    public static func decode(_ reader: inout KafkaReader) throws(KafkaDecodeError) -> KafkaRequestHeader {
        KafkaRequestHeader(apiKey: try reader.int16(), apiVersion: try reader.int16(), correlationId: try reader.int32(),
                           clientId: try reader.nullableString())
    }
}
