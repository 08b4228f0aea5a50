/// The `format`s Sluice checks (draft-07 leaves formats to the validator): RFC 3339 `date-time`, `date` and `time`,
/// RFC 5321 `email` (dot-atom local part, a domain or an address literal), RFC 3986 `uri` (absolute), RFC 4122 `uuid`,
/// `ipv4` and `ipv6`. Other formats are annotations only.
enum SchemaFormat {
    static let checks: [String: @Sendable (String) -> Bool] = [
        "date-time": isDateTime, "date": isDate, "time": { isTime($0) }, "email": isEmail, "uri": isURI, "uuid": isUUID,
        "ipv4": isIPv4, "ipv6": isIPv6,
    ]

    private static func digits(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    static func isDate(_ text: String) -> Bool { date(Array(text.utf8)[...]) }

    private static func date(_ b: ArraySlice<UInt8>) -> Bool {
        guard b.count == 10 else { return false }
        let s = b.startIndex
        guard b[s + 4] == 0x2D, b[s + 7] == 0x2D, let year = digits(b[s..<s + 4]), let month = digits(b[s + 5..<s + 7]),
              let day = digits(b[s + 8..<s + 10]), (1...12).contains(month), day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return day <= days
    }

    /// `HH:MM:SS[.frac](Z|±HH:MM)`; a leap second only where it is 23:59:60 in UTC.
    static func isTime(_ text: String) -> Bool { time(Array(text.utf8)[...]) }

    private static func time(_ b: ArraySlice<UInt8>) -> Bool {
        let s = b.startIndex
        guard b.count >= 9, b[s + 2] == 0x3A, b[s + 5] == 0x3A, let hour = digits(b[s..<s + 2]), let minute = digits(b[s + 3..<s + 5]),
              let second = digits(b[s + 6..<s + 8]), hour < 24, minute < 60, second <= 60 else { return false }
        var i = s + 8
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.endIndex, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            guard i > start else { return false }
        }
        guard i < b.endIndex else { return false }
        var offsetMinutes = 0
        if b[i] == 0x5A || b[i] == 0x7A {
            guard i + 1 == b.endIndex else { return false }
        } else if b[i] == 0x2B || b[i] == 0x2D {
            guard b.endIndex - i == 6, b[i + 3] == 0x3A, let oh = digits(b[i + 1..<i + 3]), let om = digits(b[i + 4..<i + 6]), oh < 24, om < 60 else { return false }
            offsetMinutes = (oh * 60 + om) * (b[i] == 0x2B ? 1 : -1)
        } else {
            return false
        }
        if second == 60 {
            let utc = ((hour * 60 + minute - offsetMinutes) % 1440 + 1440) % 1440
            return utc == 23 * 60 + 59
        }
        return true
    }

    static func isDateTime(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count >= 20, b[10] == 0x54 || b[10] == 0x74 else { return false }
        return date(b[0..<10]) && time(b[11...])
    }

    static func isUUID(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard b.count == 36 else { return false }
        for (i, byte) in b.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                guard byte == 0x2D else { return false }
            } else if !isHex(byte) {
                return false
            }
        }
        return true
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }

    static func isIPv4(_ text: String) -> Bool {
        var parts = 0, digits = 0, value = 0, leadingZero = false
        for byte in text.utf8 {
            if byte == 0x2E {
                guard digits > 0 else { return false }
                parts += 1
                digits = 0
                value = 0
                continue
            }
            guard byte >= 0x30 && byte <= 0x39, digits < 3 else { return false }
            if digits == 0 { leadingZero = byte == 0x30 } else if leadingZero { return false }
            value = value * 10 + Int(byte - 0x30)
            digits += 1
            guard value <= 255 else { return false }
        }
        return parts == 3 && digits > 0
    }

    static func isIPv6(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.allSatisfy({ isHex($0) || $0 == 0x3A || $0 == 0x2E }) else { return false }
        var body = Substring(text)
        var needed = 8
        // A dotted IPv4 address at the end stands for the last two groups.
        if let lastColon = body.lastIndex(of: ":"), body[body.index(after: lastColon)...].contains(".") {
            guard isIPv4(String(body[body.index(after: lastColon)...])) else { return false }
            body = body[...lastColon]
            if !body.hasSuffix("::") { body = body.dropLast() }
            needed = 6
        } else if text.contains(".") {
            return false
        }
        let halves = body.components(separatedBy: "::")
        guard halves.count <= 2 else { return false }
        func groups(_ part: String) -> Int? {
            if part.isEmpty { return 0 }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            return pieces.allSatisfy({ (1...4).contains($0.count) }) ? pieces.count : nil
        }
        if halves.count == 1 { return groups(halves[0]) == needed }
        // "::" stands for at least one group of zeros.
        guard let before = groups(halves[0]), let after = groups(halves[1]) else { return false }
        return before + after < needed
    }

    /// A dot-atom local part and a host name (letters, digits, hyphens; labels not starting or ending with a hyphen),
    /// or an address literal `[1.2.3.4]` / `[IPv6:…]`.
    /// RFC 5322 `atext` (as bytes), the characters of a dot-atom's atoms.
    private static let atext: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~".utf8 { table[Int(byte)] = true }
        return table
    }()

    static func isEmail(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard let at = b.lastIndex(of: 0x40), at > 0, at <= 64 else { return false }
        // The local part: atoms of atext separated by single dots, none at either end.
        var previousDot = true
        for byte in b[..<at] {
            if byte == 0x2E {
                if previousDot { return false }
                previousDot = true
            } else {
                guard atext[Int(byte)] else { return false }
                previousDot = false
            }
        }
        guard !previousDot else { return false }
        let domain = b[(at + 1)...]
        if domain.first == 0x5B && domain.last == 0x5D {
            let literal = String(decoding: domain.dropFirst().dropLast(), as: UTF8.self)
            if literal.lowercased().hasPrefix("ipv6:") { return isIPv6(String(literal.dropFirst(5))) }
            return isIPv4(literal)
        }
        return isHostname(domain)
    }

    static func isHostname(_ text: String) -> Bool { isHostname(Array(text.utf8)[...]) }

    static func isHostname(_ b: ArraySlice<UInt8>) -> Bool {
        guard !b.isEmpty, b.count <= 253 else { return false }
        var labelLength = 0
        var previous: UInt8 = 0x2E
        for byte in b {
            if byte == 0x2E {
                guard labelLength > 0, previous != 0x2D else { return false }
                labelLength = 0
            } else {
                let alnum = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                guard alnum || (byte == 0x2D && labelLength > 0) else { return false }
                labelLength += 1
                guard labelLength <= 63 else { return false }
            }
            previous = byte
        }
        return labelLength > 0 && previous != 0x2D
    }

    /// An absolute URI (RFC 3986 `URI`): a scheme, then only the characters each part allows, percent signs
    /// followed by two hex digits, a numeric port, and a valid IP literal in brackets.
    static func isURI(_ text: String) -> Bool {
        let b = Array(text.utf8)
        guard let colon = b.firstIndex(of: 0x3A), colon > 0, isAlpha(b[0]),
              b[1..<colon].allSatisfy({ isAlpha($0) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2B || $0 == 0x2D || $0 == 0x2E }) else { return false }
        let unreserved = { (c: UInt8) in isAlpha(c) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E || c == 0x5F || c == 0x7E }
        let subDelims: Set<UInt8> = Set("!$&'()*+,;=".utf8)
        func valid(_ part: ArraySlice<UInt8>, extra: Set<UInt8>) -> Bool {
            var i = part.startIndex
            while i < part.endIndex {
                let c = part[i]
                if c == 0x25 {
                    guard i + 2 < part.endIndex, isHex(part[i + 1]), isHex(part[i + 2]) else { return false }
                    i += 3
                    continue
                }
                guard unreserved(c) || subDelims.contains(c) || extra.contains(c) else { return false }
                i += 1
            }
            return true
        }
        var rest = b[(colon + 1)...]
        var fragment: ArraySlice<UInt8> = []
        if let hash = rest.firstIndex(of: 0x23) {
            fragment = rest[(hash + 1)...]
            rest = rest[..<hash]
        }
        var query: ArraySlice<UInt8> = []
        if let question = rest.firstIndex(of: 0x3F) {
            query = rest[(question + 1)...]
            rest = rest[..<question]
        }
        let pchar: Set<UInt8> = [0x3A, 0x40]
        guard valid(fragment, extra: pchar.union([0x2F, 0x3F])), valid(query, extra: pchar.union([0x2F, 0x3F])) else { return false }
        var path = rest
        if rest.starts(with: [0x2F, 0x2F]) {
            let afterSlashes = rest.dropFirst(2)
            let end = afterSlashes.firstIndex(of: 0x2F) ?? afterSlashes.endIndex
            var authority = afterSlashes[..<end]
            path = afterSlashes[end...]
            if let at = authority.lastIndex(of: 0x40) {
                guard valid(authority[..<at], extra: [0x3A]) else { return false }
                authority = authority[(at + 1)...]
            }
            var host = authority
            if authority.first == 0x5B {
                guard let close = authority.firstIndex(of: 0x5D) else { return false }
                let literal = String(decoding: authority[(authority.startIndex + 1)..<close], as: UTF8.self)
                guard isIPv6(literal) || (literal.lowercased().hasPrefix("v") && literal.contains(".")) else { return false }
                host = authority[close..<close]
                let after = authority[(close + 1)...]
                if !after.isEmpty {
                    guard after.first == 0x3A, after.dropFirst().allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
                }
            } else if let portColon = authority.lastIndex(of: 0x3A) {
                guard authority[(portColon + 1)...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
                host = authority[..<portColon]
            }
            guard valid(host, extra: []) else { return false }
        }
        return valid(path, extra: pchar.union([0x2F]))
    }

    private static func isAlpha(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
}
