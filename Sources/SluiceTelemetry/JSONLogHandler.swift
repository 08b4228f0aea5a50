#if canImport(Glibc)
import Glibc
#endif
public import Logging

/// How log lines are written.
public enum LogFormat: String, Sendable, CaseIterable {
    /// One ECS-style JSON object per line.
    case json
    /// `2026-11-22T16:00:00.123Z INFO  message key=value …`, for humans.
    case text
}

/// A swift-log `LogHandler` that writes one JSON object per line (or a text line).
///
/// Merge order is handler metadata → metadata provider → the log call's metadata. The fields in
/// ``LogField/core`` are always the handler's own: metadata with one of those keys appears as `metadata.<key>`.
/// Every string, the message included, is escaped. The handler never throws and writes each line whole.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    public let label: String
    public let serviceName: String
    let sink: LogSink
    let format: LogFormat

    public init(label: String, sink: LogSink = .standardOutput, format: LogFormat = .json, level: Logger.Level = .info,
                serviceName: String = "sluice", metadataProvider: Logger.MetadataProvider? = Correlation.metadataProvider) {
        self.label = label
        self.sink = sink
        self.format = format
        self.logLevel = level
        self.serviceName = serviceName
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var explicit = event.metadata
        if let error = event.error {
            explicit = explicit ?? [:]
            explicit!["error.message"] = .string("\(error)")
        }
        write(level: event.level, message: event.message, metadata: explicit)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?) {
        var merged = self.metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit { merged.merge(explicit) { _, new in new } }
        switch format {
        case .json: sink.write(line: jsonLine(level: level, message: message.description, metadata: merged))
        case .text: sink.write(line: textLine(level: level, message: message.description, metadata: merged))
        }
    }

    func jsonLine(level: Logger.Level, message: String, metadata: Logger.Metadata) -> [UInt8] {
        var out = JSONWriter()
        out.beginObject()
        out.field(LogField.timestamp, string: Timestamp.rfc3339Millis())
        out.field(LogField.level, string: level.rawValue)
        out.field(LogField.message, string: message)
        out.field(LogField.logger, string: label)
        out.field(LogField.serviceName, string: serviceName)
        out.field(LogField.ecsVersion, string: LogField.ecsVersionValue)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            out.key(LogField.core.contains(key) ? "metadata." + key : key)
            out.value(value)
        }
        out.endObject()
        out.bytes.append(UInt8(ascii: "\n"))
        return out.bytes
    }

    func textLine(level: Logger.Level, message: String, metadata: Logger.Metadata) -> [UInt8] {
        var line = Timestamp.rfc3339Millis() + " " + level.rawValue.uppercased().padding(to: 8) + message
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        return Array((line.replacingNewlines + "\n").utf8)
    }
}

extension String {
    func padding(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }

    var replacingNewlines: String {
        var out = ""
        for c in self { out += c == "\n" ? "\\n" : String(c) }
        return out
    }
}

/// A small JSON writer that escapes every string.
public struct JSONWriter {
    public var bytes: [UInt8] = []
    private var needsComma = false

    public init() { bytes.reserveCapacity(256) }

    public mutating func beginObject() {
        separator()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    public mutating func key(_ key: String) {
        separator()
        appendString(key)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    public mutating func field(_ name: String, string: String) {
        key(name)
        appendString(string)
        needsComma = true
    }

    public mutating func field(_ name: String, int: Int64) {
        key(name)
        appendInteger(int)
        needsComma = true
    }

    public mutating func field(_ name: String, bool: Bool) {
        key(name)
        bytes.append(contentsOf: bool ? "true".utf8 : "false".utf8)
        needsComma = true
    }

    /// A finite number (non-finite ones are written as null, which JSON has no other way to say).
    public mutating func field(_ name: String, double: Double) {
        key(name)
        bytes += Array((double.isFinite ? "\(double)" : "null").utf8)
        needsComma = true
    }

    /// A string element of an array.
    public mutating func value(string: String) {
        separator()
        appendString(string)
        needsComma = true
    }

    public mutating func fieldNull(_ name: String) {
        key(name)
        bytes.append(contentsOf: "null".utf8)
        needsComma = true
    }

    /// A field whose value is already-valid JSON, copied as it is.
    public mutating func field(_ name: String, raw: [UInt8]) {
        key(name)
        bytes += raw
        needsComma = true
    }

    public mutating func beginArray(_ name: String) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    mutating func value(_ value: Logger.MetadataValue) {
        switch value {
        case .string(let string):
            appendString(string)
        case .stringConvertible(let convertible):
            switch convertible {
            case let number as any BinaryInteger: bytes += Array("\(number)".utf8)
            case let number as Double where number.isFinite: bytes += Array("\(number)".utf8)
            case let flag as Bool: bytes += Array((flag ? "true" : "false").utf8)
            default: appendString(convertible.description)
            }
        case .array(let values):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                needsComma = false
                self.value(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            beginObject()
            for (k, v) in dictionary.sorted(by: { $0.key < $1.key }) {
                key(k)
                self.value(v)
                needsComma = true
            }
            endObject()
        }
        needsComma = true
    }

    private mutating func separator() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    /// The decimal digits of `value`, written straight into the buffer (no `String` or array made for them).
    public mutating func appendInteger(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = digits.count
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(contentsOf: UnsafeMutableBufferPointer(rebasing: digits[start...]))
        }
    }

    public mutating func appendString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        // The usual string needs no escape: copied whole.
        let copied = string.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 == 0x7F }) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied == true {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                bytes += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// RFC 3339 timestamps in UTC with milliseconds.
public enum Timestamp {
    public static func rfc3339Millis(millisecondsSinceEpoch: Int64? = nil) -> String {
        let ms: Int64
        if let millisecondsSinceEpoch {
            ms = millisecondsSinceEpoch
        } else {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            ms = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        }
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }

    /// Milliseconds since the epoch of an RFC 3339 time (`2026-11-22T19:04:48.831Z`, `…+01:00`, fraction optional).
    public static func parseRFC3339Millis(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int32? {
            guard from + count <= bytes.count else { return nil }
            var value: Int32 = 0
            for byte in bytes[from..<(from + count)] {
                guard byte >= 0x30 && byte <= 0x39 else { return nil }
                value = value * 10 + Int32(byte - 0x30)
            }
            return value
        }
        guard bytes.count >= 20, bytes[4] == 0x2D, bytes[7] == 0x2D, bytes[10] == 0x54 || bytes[10] == 0x74, bytes[13] == 0x3A, bytes[16] == 0x3A,
              let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2), let minute = number(14, 2),
              let second = number(17, 2), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var index = 19
        var millis: Int64 = 0
        if index < bytes.count, bytes[index] == 0x2E {
            index += 1
            var digits = 0
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 {
                if digits < 3 { millis = millis * 10 + Int64(bytes[index] - 0x30) }
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            if digits < 3 { for _ in digits..<3 { millis *= 10 } }
        }
        var offsetSeconds: Int64 = 0
        guard index < bytes.count else { return nil }
        if bytes[index] == 0x5A || bytes[index] == 0x7A {
            index += 1
        } else if bytes[index] == 0x2B || bytes[index] == 0x2D, let h = number(index + 1, 2), bytes.count > index + 3, bytes[index + 3] == 0x3A, let m = number(index + 4, 2) {
            offsetSeconds = Int64(h) * 3600 + Int64(m) * 60
            if bytes[index] == 0x2D { offsetSeconds = -offsetSeconds }
            index += 6
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = Int64(timegm(&parts))
        return (seconds - offsetSeconds) * 1000 + millis
    }
}
