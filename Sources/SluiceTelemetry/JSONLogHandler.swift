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
        bytes += Array(String(int).utf8)
        needsComma = true
    }

    public mutating func field(_ name: String, bool: Bool) {
        key(name)
        bytes += Array((bool ? "true" : "false").utf8)
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
        bytes += Array("null".utf8)
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

    public mutating func appendString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
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
}
