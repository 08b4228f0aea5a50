#if canImport(Glibc)
import Glibc
#endif

/// A JSON parser straight into ``JSONValue`` (RFC 8259; any value at the top, as JSONSerialization's
/// `fragmentsAllowed`): one pass over the bytes, no Foundation objects in between, nesting bounded.
struct JSONParser {
    static let maxDepth = 512

    private let bytes: UnsafeBufferPointer<UInt8>
    /// The cursor (``StreamingCheck`` moves it back to read a value again).
    var index = 0
    /// The members of the objects being read, innermost last: one buffer for all of them, so that each object's
    /// dictionary is made once at its final size.
    private var members: [(String, JSONValue)] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The byte at the cursor, nil at the end.
    var current: UInt8? { index < bytes.count ? bytes[index] : nil }
    var atEnd: Bool { index == bytes.count }

    /// The value of `bytes`, or nil when they are not exactly one JSON value (whitespace around it allowed).
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> JSONValue? {
        var parser = JSONParser(bytes)
        guard let value = parser.value(depth: 0) else { return nil }
        parser.skipWhitespace()
        return parser.index == bytes.count ? value : nil
    }

    mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 { index += 1 }
    }

    private mutating func literal(_ word: StaticString, _ value: JSONValue) -> JSONValue? {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return nil }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return nil }
        index += count
        return value
    }

    /// The value at the cursor (after whitespace), `depth` levels down; nil when it is not JSON.
    mutating func value(depth: Int) -> JSONValue? {
        guard depth < Self.maxDepth else { return nil }
        skipWhitespace()
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case 0x7B: return object(depth: depth)
        case 0x5B: return array(depth: depth)
        case 0x22: return string().map { .string($0) }
        case 0x74: return literal("true", .bool(true))
        case 0x66: return literal("false", .bool(false))
        case 0x6E: return literal("null", .null)
        default: return number()
        }
    }

    private mutating func object(depth: Int) -> JSONValue? {
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == 0x7D {
            index += 1
            return .object([:])
        }
        let first = members.count
        defer { members.removeSubrange(first...) }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == 0x22, let key = string() else { return nil }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == 0x3A else { return nil }
            index += 1
            guard let member = value(depth: depth + 1) else { return nil }
            members.append((key, member))
            skipWhitespace()
            guard index < bytes.count else { return nil }
            if bytes[index] == 0x2C { index += 1; continue }
            guard bytes[index] == 0x7D else { return nil }
            index += 1
            var object = [String: JSONValue](minimumCapacity: members.count - first)
            // A repeated name keeps its last value, as JSONSerialization does.
            for (name, value) in members[first...] { object[name] = value }
            return .object(object)
        }
    }

    private mutating func array(depth: Int) -> JSONValue? {
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == 0x5D {
            index += 1
            return .array(items)
        }
        while true {
            guard let item = value(depth: depth + 1) else { return nil }
            items.append(item)
            skipWhitespace()
            guard index < bytes.count else { return nil }
            if bytes[index] == 0x2C { index += 1; continue }
            guard bytes[index] == 0x5D else { return nil }
            index += 1
            return .array(items)
        }
    }

    private static func hex(_ byte: UInt8) -> UInt32? {
        switch byte {
        case 0x30...0x39: UInt32(byte - 0x30)
        case 0x41...0x46: UInt32(byte - 0x41 + 10)
        case 0x61...0x66: UInt32(byte - 0x61 + 10)
        default: nil
        }
    }

    private mutating func fourHex() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 {
            guard let digit = Self.hex(bytes[index + offset]) else { return nil }
            value = value << 4 | digit
        }
        index += 4
        return value
    }

    /// The bytes of a plain string at `index` (its opening quote) — ASCII, no escapes — without making a String, and
    /// the cursor past it; nil (cursor unmoved) for any other string, which ``string()`` reads.
    mutating func plainString() -> Range<Int>? {
        var end = index + 1
        while end < bytes.count, bytes[end] != 0x22 {
            let byte = bytes[end]
            guard byte >= 0x20, byte < 0x80, byte != 0x5C else { return nil }
            end += 1
        }
        guard end < bytes.count else { return nil }
        defer { index = end + 1 }
        return (index + 1)..<end
    }

    /// Whether the bytes in `range` are `key`.
    func bytes(_ range: Range<Int>, equal key: [UInt8]) -> Bool {
        guard range.count == key.count else { return false }
        return key.withUnsafeBufferPointer { memcmp(bytes.baseAddress! + range.lowerBound, $0.baseAddress!, key.count) == 0 }
    }

    func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }

    /// A string at `index` (its opening quote): unescaped runs are copied whole; invalid UTF-8 is refused.
    mutating func string() -> String? {
        index += 1
        let start = index
        // Fast path: no escapes.
        var ascii = true
        while index < bytes.count, bytes[index] != 0x22, bytes[index] != 0x5C, bytes[index] >= 0x20 {
            ascii = ascii && bytes[index] < 0x80
            index += 1
        }
        guard index < bytes.count else { return nil }
        if bytes[index] == 0x22 {
            let run = UnsafeBufferPointer(rebasing: bytes[start..<index])
            // ASCII needs no validation (and String(decoding:) has a fast path for it); the rest is validated.
            let text = ascii ? String(decoding: run, as: UTF8.self) : String(validating: run, as: UTF8.self)
            index += 1
            return text
        }
        var out = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x22 {
                index += 1
                return String(validating: out, as: UTF8.self)
            }
            guard byte >= 0x20 else { return nil }
            if byte != 0x5C {
                out.append(byte)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { return nil }
            let escape = bytes[index]
            index += 1
            switch escape {
            case 0x22, 0x5C, 0x2F: out.append(escape)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x75:
                guard var scalar = fourHex() else { return nil }
                if (0xD800...0xDBFF).contains(scalar) {
                    // A surrogate pair; a lone surrogate cannot be a Swift string, so it is refused.
                    guard index + 2 <= bytes.count, bytes[index] == 0x5C, bytes[index + 1] == 0x75 else { return nil }
                    index += 2
                    guard let low = fourHex(), (0xDC00...0xDFFF).contains(low) else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    return nil
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                out.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                return nil
            }
        }
        return nil
    }

    /// A number per RFC 8259's grammar, converted with strtod.
    private mutating func number() -> JSONValue? {
        let start = index
        if index < bytes.count, bytes[index] == 0x2D { index += 1 }
        guard index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 else { return nil }
        if bytes[index] == 0x30 {
            index += 1
        } else {
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
        }
        if index < bytes.count, bytes[index] == 0x2E {
            index += 1
            let digits = index
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
            guard index > digits else { return nil }
        }
        if index < bytes.count, bytes[index] == 0x65 || bytes[index] == 0x45 {
            index += 1
            if index < bytes.count, bytes[index] == 0x2B || bytes[index] == 0x2D { index += 1 }
            let digits = index
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
            guard index > digits else { return nil }
        }
        let length = index - start
        // Short integers (the common case) without strtod.
        if length <= 15, !bytes[start..<index].contains(where: { $0 == 0x2E || $0 == 0x65 || $0 == 0x45 }) {
            var value: Int64 = 0
            var negative = false
            for byte in bytes[start..<index] {
                if byte == 0x2D { negative = true } else { value = value * 10 + Int64(byte - 0x30) }
            }
            return .number(Double(negative ? -value : value))
        }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: length + 1) { buffer in
            for offset in 0..<length { buffer[offset] = CChar(bitPattern: bytes[start + offset]) }
            buffer[length] = 0
            return .number(strtod(buffer.baseAddress!, nil))
        }
    }
}
