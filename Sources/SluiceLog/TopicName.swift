/// Kafka's rules for topic names, which also keep every path inside the data directory.
public enum TopicName {
    public static let maxLength = 249

    /// Throws ``LogError/Code/invalidName`` unless `name` is 1–249 characters of `[a-zA-Z0-9._-]` and not `.` or `..`.
    public static func validate(_ name: String) throws {
        guard !name.isEmpty else {
            throw LogError(.invalidName, "topic name is empty; use 1–\(maxLength) characters of a-z, A-Z, 0-9, '.', '_' and '-'")
        }
        guard name.utf8.count <= maxLength else {
            throw LogError(.invalidName, "topic name is \(name.utf8.count) characters long; the limit is \(maxLength)")
        }
        guard name != "." && name != ".." else {
            throw LogError(.invalidName, "topic name '\(name)' is reserved; '.' and '..' cannot be topic names")
        }
        for byte in name.utf8 where !isLegal(byte) {
            let shown = byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
            throw LogError(.invalidName, "topic name contains \(shown); only a-z, A-Z, 0-9, '.', '_' and '-' are allowed")
        }
    }

    /// Whether `name` passes ``validate(_:)``.
    public static func isValid(_ name: String) -> Bool {
        (try? validate(name)) != nil
    }

    private static func isLegal(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}
