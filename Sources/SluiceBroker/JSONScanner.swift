#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A strict, allocation-light JSON scanner for the publish path: it walks objects and arrays, decodes strings,
/// and hands back the exact byte range of any value (so an event's `data` is stored as it was sent).
struct JSONScanner {
    /// The text, borrowed for as long as the scanner is used (see ``withScanner(over:_:)``): no reference
    /// counting and no bounds-check traps on the hot loops.
    let bytes: UnsafeBufferPointer<UInt8>
    var index: Int

    init(_ bytes: UnsafeBufferPointer<UInt8>, index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    /// Whether `bytes` are exactly one JSON value (whitespace around it aside).
    static func isJSONValue(_ bytes: [UInt8]) -> Bool {
        withScanner(over: bytes) { scanner in
            guard (try? scanner.skipValue()) != nil else { return false }
            scanner.skipWhitespace()
            return scanner.atEnd
        }
    }

    /// Runs `body` with a scanner over `bytes` from its start.
    static func withScanner<R, E: Error>(over bytes: [UInt8], _ body: (inout JSONScanner) throws(E) -> R) throws(E) -> R {
        try bytes.withUnsafeBufferPointer { (buffer) throws(E) -> R in
            var scanner = JSONScanner(buffer)
            return try body(&scanner)
        }
    }

    struct Failure: Error {
        var message: String
    }

    func fail(_ message: String) -> Failure {
        Failure(message: "\(message) at byte \(index)")
    }

    mutating func skipWhitespace() {
        var i = index
        while i < bytes.count {
            let byte = bytes[i]
            guard byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 else { break }
            i += 1
        }
        index = i
    }

    /// Where the plain ASCII run of a string's content starting at `start` ends: at its closing quote, at a
    /// backslash or non-ASCII byte (which need ``string()``), at a control character, or at the end of the text.
    private func plainRun(from start: Int) -> Int {
        var i = start
        // Sixteen bytes at a time while none of them ends the run (one vector compare of each kind), then byte by
        // byte within the block that does.
        if let base = bytes.baseAddress {
            let quote = SIMD16<UInt8>(repeating: UInt8(ascii: "\"")), backslash = SIMD16<UInt8>(repeating: UInt8(ascii: "\\"))
            let control = SIMD16<UInt8>(repeating: 0x20), nonASCII = SIMD16<UInt8>(repeating: 0x80)
            while i + 16 <= bytes.count {
                let block = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<UInt8>.self)
                let stops = (block .== quote) .| (block .== backslash) .| (block .< control) .| (block .>= nonASCII)
                // The mask's lanes as two words (`any` compiles to a reduction tree on baseline x86-64).
                let lanes = unsafeBitCast(stops, to: SIMD2<UInt64>.self)
                if lanes[0] | lanes[1] != 0 { break }
                i += 16
            }
        }
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte >= 0x80 || byte < 0x20 { break }
            i += 1
        }
        return i
    }

    var atEnd: Bool { index >= bytes.count }
    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func expect(_ byte: UInt8) throws(Failure) {
        skipWhitespace()
        guard peek == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
        index += 1
    }

    /// An object member's name: where its plain ASCII bytes are in the text, or its decoded text when it has
    /// escapes or non-ASCII characters.
    struct Key {
        var plain: Range<Int>?
        var decoded: String?

        /// The name as a `String`.
        func name(in bytes: UnsafeBufferPointer<UInt8>) -> String {
            if let decoded { return decoded }
            return String(decoding: bytes[plain!], as: UTF8.self)
        }

        /// Whether the name is `expected` (ASCII), without making a `String`.
        func `is`(_ expected: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Bool {
            guard let plain else { return decoded == expected.description }
            guard plain.count == expected.utf8CodeUnitCount else { return false }
            return memcmp(bytes.baseAddress! + plain.lowerBound, expected.utf8Start, plain.count) == 0
        }
    }

    /// A member name: its byte range when it is plain ASCII, else decoded.
    mutating func key() throws(Failure) -> Key {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        let end = plainRun(from: index + 1)
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            defer { index = end + 1 }
            return Key(plain: index + 1..<end)
        }
        return Key(decoded: try string())
    }

    /// Calls `body` with each member's key while positioned at its value; `body` must consume the value.
    mutating func object(_ body: (inout JSONScanner, String) throws(Failure) -> Void) throws(Failure) {
        try objectMembers { scanner, key throws(Failure) in try body(&scanner, key.name(in: scanner.bytes)) }
    }

    /// ``object(_:)`` with each name as a ``Key``, so that known names are matched without making a `String`.
    mutating func objectMembers(_ body: (inout JSONScanner, Key) throws(Failure) -> Void) throws(Failure) {
        try expect(UInt8(ascii: "{"))
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            skipWhitespace()
            let key = try key()
            try expect(UInt8(ascii: ":"))
            skipWhitespace()
            try body(&self, key)
            skipWhitespace()
            guard let next = peek else { throw fail("unterminated object") }
            index += 1
            if next == UInt8(ascii: "}") { return }
            guard next == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
        }
    }

    /// Calls `body` with each element's position; `body` must consume the element.
    mutating func array(_ body: (inout JSONScanner, Int) throws(Failure) -> Void) throws(Failure) {
        try expect(UInt8(ascii: "["))
        skipWhitespace()
        if peek == UInt8(ascii: "]") {
            index += 1
            return
        }
        var position = 0
        while true {
            skipWhitespace()
            try body(&self, position)
            position += 1
            skipWhitespace()
            guard let next = peek else { throw fail("unterminated array") }
            index += 1
            if next == UInt8(ascii: "]") { return }
            guard next == UInt8(ascii: ",") else { throw fail("expected ',' or ']'") }
        }
    }

    /// Decodes a string value (escapes included).
    mutating func string() throws(Failure) -> String {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        index += 1
        let start = index
        // Fastest path: plain ASCII up to the closing quote.
        let run = plainRun(from: start)
        if run < bytes.count, bytes[run] == UInt8(ascii: "\"") {
            index = run + 1
            return String(decoding: bytes[start..<run], as: UTF8.self)
        }
        // Fast path: no escapes. JSON text is UTF-8 (RFC 8259): a string that is not is refused, never repaired.
        var ascii = true
        index = run
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let raw = bytes[start..<index]
                guard let text = ascii ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self) else {
                    index = start
                    throw fail("string is not valid UTF-8 (JSON text must be UTF-8; send bytes as base64 or in binary mode)")
                }
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw fail("control character in string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        var out = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: out, as: UTF8.self) else {
                    throw fail("string is not valid UTF-8 (JSON text must be UTF-8; send bytes as base64 or in binary mode)")
                }
                return text
            case UInt8(ascii: "\\"):
                guard let escape = peek else { throw fail("unterminated escape") }
                index += 1
                switch escape {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("unpaired surrogate")
                    }
                    out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
                default:
                    throw fail("invalid escape")
                }
            default:
                if byte < 0x20 { throw fail("control character in string") }
                out.append(byte)
            }
        }
        throw fail("unterminated string")
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// Checks a string value as ``string()`` does and moves past it, without making a `String`: plain ASCII
    /// (the usual case) is checked byte by byte; anything with escapes or non-ASCII bytes goes through
    /// ``string()``, so both accept and refuse exactly the same strings.
    mutating func skipString() throws(Failure) {
        skipWhitespace()
        guard peek == UInt8(ascii: "\"") else { throw fail("expected a string") }
        let end = plainRun(from: index + 1)
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            index = end + 1
            return
        }
        _ = try string()
    }

    /// Validates and skips any value, returning its byte range. Nothing is allocated for plain ASCII text.
    @discardableResult
    mutating func skipValue(depth: Int = 0) throws(Failure) -> Range<Int> {
        guard depth < 128 else { throw fail("nesting deeper than 128") }
        skipWhitespace()
        let start = index
        guard let first = peek else { throw fail("expected a value") }
        switch first {
        case UInt8(ascii: "{"):
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "}") {
                index += 1
                break
            }
            while true {
                try skipString()
                try expect(UInt8(ascii: ":"))
                try skipValue(depth: depth + 1)
                skipWhitespace()
                guard let next = peek else { throw fail("unterminated object") }
                index += 1
                if next == UInt8(ascii: "}") { break }
                guard next == UInt8(ascii: ",") else { throw fail("expected ',' or '}'") }
            }
        case UInt8(ascii: "["):
            try array { scanner, _ throws(Failure) in try scanner.skipValue(depth: depth + 1) }
        case UInt8(ascii: "\""):
            try skipString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try number()
        default:
            throw fail("unexpected character '\(Character(Unicode.Scalar(first)))'")
        }
        return start..<index
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail("invalid literal") }
        guard memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0 else { throw fail("invalid literal") }
        index += count
    }

    private mutating func number() throws(Failure) {
        let start = index
        if peek == UInt8(ascii: "-") { index += 1 }
        func digits() -> Int {
            let from = index
            while let byte = peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
            return index - from
        }
        let integer = digits()
        guard integer > 0 else { throw fail("invalid number") }
        if integer > 1 && bytes[index - integer] == UInt8(ascii: "0") { throw fail("leading zero in number") }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        _ = start
    }
}
