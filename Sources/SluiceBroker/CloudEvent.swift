import Foundation
public import SluiceLog
public import SluiceTelemetry

/// A CloudEvents 1.0 event as Sluice stores it: the attributes become record headers (the CloudEvents Kafka
/// binding's binary mode: `ce_<attribute>`, `content-type`), `partitionkey` becomes the record key, and the
/// data becomes the record value.
public struct CloudEvent: Sendable, Hashable {
    public var id: String
    public var source: String
    public var type: String
    public var specversion = "1.0"
    public var time: String?
    public var subject: String?
    public var dataschema: String?
    public var datacontenttype: String?
    /// The data as bytes (JSON data serialised; `data_base64` decoded; text as UTF-8).
    public var data: [UInt8]?
    /// Extension attributes, e.g. `partitionkey`, `correlationid`, `causationid`, `traceparent`.
    public var extensions: [String: String] = [:]

    public init(id: String, source: String, type: String, data: [UInt8]? = nil, datacontenttype: String? = nil, extensions: [String: String] = [:]) {
        self.id = id
        self.source = source
        self.type = type
        self.data = data
        self.datacontenttype = datacontenttype
        self.extensions = extensions
    }

    public var partitionKey: String? { extensions["partitionkey"] }
    public var correlationId: String? { extensions["correlationid"] }
    public var causationId: String? { extensions["causationid"] }
    public var traceparent: String? { extensions["traceparent"] }

    static let contextAttributes: Set<String> = ["id", "source", "type", "specversion", "time", "subject", "dataschema", "datacontenttype", "data", "data_base64"]

    /// Whether a record's `content-type` marks a structured-mode CloudEvent in JSON (parameters such as
    /// `charset` aside, any letter case).
    public static func isStructured(contentType: String) -> Bool {
        if contentType == "application/cloudevents+json" { return true }  // the usual spelling, without the work below
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return mediaType.lowercased() == "application/cloudevents+json"
    }

    /// Whether the data is JSON, going by the content type (absent means JSON, as in structured mode).
    public var isJSONData: Bool { Self.isJSON(contentType: datacontenttype) }

    static func isJSON(contentType: String?) -> Bool {
        guard let contentType else { return true }
        // The usual spellings first: this is asked for every event a schema checks.
        if contentType == "application/json" || contentType == "application/json; charset=utf-8" { return true }
        let lowered = contentType.lowercased()
        let media = lowered.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return media == "application/json" || media.hasSuffix("+json") || media == "text/json"
    }

    static func isText(contentType: String?) -> Bool {
        guard let contentType = contentType?.lowercased() else { return false }
        return contentType.hasPrefix("text/") || contentType.contains("xml")
    }

    // MARK: - Record mapping

    /// The record for this event, stamped with `timestamp` (milliseconds).
    public func record(timestamp: Int64) -> Record {
        var headers: [RecordHeader] = [
            RecordHeader(key: "ce_specversion", value: Array(specversion.utf8)),
            RecordHeader(key: "ce_id", value: Array(id.utf8)),
            RecordHeader(key: "ce_source", value: Array(source.utf8)),
            RecordHeader(key: "ce_type", value: Array(type.utf8)),
        ]
        for (name, value) in [("time", time), ("subject", subject), ("dataschema", dataschema)] {
            if let value { headers.append(RecordHeader(key: "ce_" + name, value: Array(value.utf8))) }
        }
        if let datacontenttype { headers.append(RecordHeader(key: "content-type", value: Array(datacontenttype.utf8))) }
        for (name, value) in extensions.sorted(by: { $0.key < $1.key }) where name != "partitionkey" {
            headers.append(RecordHeader(key: "ce_" + name, value: Array(value.utf8)))
        }
        return Record(timestamp: timestamp, key: partitionKey.map { Array($0.utf8) }, value: data, headers: headers)
    }

    /// Writes this event's record as ``record(timestamp:)`` makes it (key, value and headers in the same order),
    /// straight into `tails`, without building the record.
    public func writeRecordTail(into tails: inout RecordTails) {
        let keyed = extensions["partitionkey"]
        let optional = (time == nil ? 0 : 1) + (subject == nil ? 0 : 1) + (dataschema == nil ? 0 : 1) + (datacontenttype == nil ? 0 : 1)
        let headerCount = 4 + optional + extensions.count - (keyed == nil ? 0 : 1)
        tails.beginRecord(key: keyed, value: data, headerCount: headerCount)
        tails.header("ce_specversion", text: specversion)
        tails.header("ce_id", text: id)
        tails.header("ce_source", text: source)
        tails.header("ce_type", text: type)
        if let time { tails.header("ce_time", text: time) }
        if let subject { tails.header("ce_subject", text: subject) }
        if let dataschema { tails.header("ce_dataschema", text: dataschema) }
        if let datacontenttype { tails.header("content-type", text: datacontenttype) }
        guard !extensions.isEmpty else { return }
        // Sorted by name, on the stack: most events carry a handful of extensions.
        withUnsafeTemporaryAllocation(of: (key: String, value: String).self, capacity: extensions.count) { sorted in
            var count = 0
            for pair in extensions where pair.key != "partitionkey" {
                (sorted.baseAddress! + count).initialize(to: pair)
                count += 1
            }
            var used = UnsafeMutableBufferPointer(rebasing: sorted[..<count])
            used.sort { $0.key < $1.key }
            for (name, value) in used { tails.header(prefix: "ce_", key: name, text: value) }
            _ = used.deinitialize()
        }
    }

    /// Rebuilds the event from a record written by ``record(timestamp:)`` or by any producer using the
    /// CloudEvents Kafka binding: binary mode (`ce_*` headers) or structured mode (`content-type:
    /// application/cloudevents+json`, the whole event as the value; the record key is its `partitionkey` unless
    /// the event names one). Returns `nil` for a plain record: no `ce_id`/`ce_source`/`ce_type` headers and no
    /// structured value that parses as an event.
    public init?(record: Record) {
        var attributes: [String: String] = [:]
        var contentType: String?
        for header in record.headers {
            let value = header.value.map { String(decoding: $0, as: UTF8.self) } ?? ""
            if header.key == "content-type" {
                contentType = value
            } else if header.key.hasPrefix("ce_") {
                attributes[String(header.key.dropFirst(3))] = value
            }
        }
        guard let id = attributes.removeValue(forKey: "id"), let source = attributes.removeValue(forKey: "source"),
              let type = attributes.removeValue(forKey: "type") else {
            guard let contentType, Self.isStructured(contentType: contentType), let value = record.value,
                  var event = try? CloudEvent.parse(json: value) else { return nil }
            if event.extensions["partitionkey"] == nil, let key = record.key {
                event.extensions["partitionkey"] = String(decoding: key, as: UTF8.self)
            }
            self = event
            return
        }
        self.init(id: id, source: source, type: type, data: record.value, datacontenttype: contentType)
        specversion = attributes.removeValue(forKey: "specversion") ?? "1.0"
        time = attributes.removeValue(forKey: "time")
        subject = attributes.removeValue(forKey: "subject")
        dataschema = attributes.removeValue(forKey: "dataschema")
        extensions = attributes
        if let key = record.key { extensions["partitionkey"] = String(decoding: key, as: UTF8.self) }
    }

    // MARK: - JSON (structured mode)

    /// The structured-mode JSON object (for tools and tests; the server writes bytes with ``writeJSON(into:)``).
    public func jsonObject() -> [String: Any] {
        var writer = JSONWriter()
        writeJSON(into: &writer)
        return (try? JSONSerialization.jsonObject(with: Data(writer.bytes))) as? [String: Any] ?? [:]
    }

    /// Writes the structured-mode JSON: `data` inline when it is JSON (as stored) or text, else `data_base64`.
    public func writeJSON(into out: inout JSONWriter) {
        out.beginObject()
        out.field("specversion", string: specversion)
        out.field("id", string: id)
        out.field("source", string: source)
        out.field("type", string: type)
        if let time { out.field("time", string: time) }
        if let subject { out.field("subject", string: subject) }
        if let dataschema { out.field("dataschema", string: dataschema) }
        if let datacontenttype { out.field("datacontenttype", string: datacontenttype) }
        for (name, value) in extensions.sorted(by: { $0.key < $1.key }) { out.field(name, string: value) }
        if let data {
            if isJSONData, JSONScanner.isJSONValue(data) {
                out.field("data", raw: data)
            } else if Self.isText(contentType: datacontenttype), let text = String(validating: data, as: UTF8.self) {
                out.field("data", string: text)
            } else {
                out.field("data_base64", string: Data(data).base64EncodedString())
            }
        }
        out.endObject()
    }


    /// The structured-mode JSON object, with `data` inline when it is JSON (or text) and `data_base64` otherwise.
    /// Parses one structured-mode event from a JSON object (tests and tools; the server parses bytes).
    public static func parse(jsonObject object: Any, index: Int? = nil) throws(BrokerError) -> CloudEvent {
        guard JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]) else {
            throw BrokerError.badRequest("\(index.map { "event \($0): " } ?? "")a CloudEvent must be a JSON object", attribute: nil)
        }
        return try JSONScanner.withScanner(over: Array(data)) { (scanner) throws(BrokerError) in try parseObject(&scanner, index: index) }
    }

    /// Parses a structured-mode body: exactly one JSON object.
    public static func parse(json bytes: [UInt8]) throws(BrokerError) -> CloudEvent {
        try JSONScanner.withScanner(over: bytes) { (scanner) throws(BrokerError) in
            let event = try parseObject(&scanner, index: nil)
            try expectEnd(&scanner)
            return event
        }
    }

    /// Parses a batched-mode body: a JSON array of one or more objects.
    public static func parseBatch(json bytes: [UInt8]) throws(BrokerError) -> [CloudEvent] {
        try JSONScanner.withScanner(over: bytes) { (scanner) throws(BrokerError) in try parseBatch(&scanner) }
    }

    private static func parseBatch(_ scanner: inout JSONScanner) throws(BrokerError) -> [CloudEvent] {
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "[") else {
            throw BrokerError.badRequest("a batch (application/cloudevents-batch+json) must be a JSON array of CloudEvents", attribute: nil)
        }
        scanner.index += 1
        var events: [CloudEvent] = []
        events.reserveCapacity(min(scanner.bytes.count / 512 + 1, 4096))  // realistic events are 0.5–2 KB
        scanner.skipWhitespace()
        if scanner.peek == UInt8(ascii: "]") {
            scanner.index += 1
        } else {
            while true {
                events.append(try parseObject(&scanner, index: events.count))
                scanner.skipWhitespace()
                guard let next = scanner.peek else {
                    throw BrokerError.badRequest("the body is not valid JSON: unterminated array at byte \(scanner.index)", attribute: nil)
                }
                scanner.index += 1
                if next == UInt8(ascii: "]") { break }
                guard next == UInt8(ascii: ",") else {
                    throw BrokerError.badRequest("the body is not valid JSON: expected ',' or ']' at byte \(scanner.index - 1)", attribute: nil)
                }
            }
        }
        try expectEnd(&scanner)
        guard !events.isEmpty else { throw BrokerError.badRequest("the batch is empty", attribute: nil) }
        return events
    }

    private static func expectEnd(_ scanner: inout JSONScanner) throws(BrokerError) {
        scanner.skipWhitespace()
        guard scanner.atEnd else { throw BrokerError.badRequest("the body is not valid JSON: unexpected data after the value at byte \(scanner.index)", attribute: nil) }
    }

    /// The string context attributes of one event as sent, in any mode, before they are checked.
    struct Attributes {
        var specversion: String?
        var id: String?
        var source: String?
        var type: String?
        var time: String?
        var subject: String?
        var dataschema: String?
        var datacontenttype: String?
        var dataBase64: String?

        enum Field { case specversion, id, source, type, time, subject, dataschema, datacontenttype, dataBase64 }

        /// The field of a member named like one of the attributes above, matched on its bytes.
        static func field(_ member: JSONScanner.Key, in bytes: UnsafeBufferPointer<UInt8>) -> Field? {
            guard let plain = member.plain else { return nil }
            switch plain.count {
            case 2: return member.is("id", in: bytes) ? .id : nil
            case 4: return member.is("type", in: bytes) ? .type : member.is("time", in: bytes) ? .time : nil
            case 6: return member.is("source", in: bytes) ? .source : nil
            case 7: return member.is("subject", in: bytes) ? .subject : nil
            case 10: return member.is("dataschema", in: bytes) ? .dataschema : nil
            case 11: return member.is("specversion", in: bytes) ? .specversion : member.is("data_base64", in: bytes) ? .dataBase64 : nil
            case 15: return member.is("datacontenttype", in: bytes) ? .datacontenttype : nil
            default: return nil
            }
        }

        mutating func set(_ field: Field, _ value: String) {
            switch field {
            case .specversion: specversion = value
            case .id: id = value
            case .source: source = value
            case .type: type = value
            case .time: time = value
            case .subject: subject = value
            case .dataschema: dataschema = value
            case .datacontenttype: datacontenttype = value
            case .dataBase64: dataBase64 = value
            }
        }

        /// Whether `name` is one of the attributes above (`data_base64` by its JSON name).
        static func isStringAttribute(_ name: String) -> Bool {
            switch name {
            case "specversion", "id", "source", "type", "time", "subject", "dataschema", "datacontenttype", "data_base64": true
            default: false
            }
        }

        static func isRequired(_ name: String) -> Bool {
            name == "specversion" || name == "id" || name == "source" || name == "type"
        }

        subscript(name: String) -> String? {
            get {
                switch name {
                case "specversion": specversion
                case "id": id
                case "source": source
                case "type": type
                case "time": time
                case "subject": subject
                case "dataschema": dataschema
                case "datacontenttype": datacontenttype
                case "data_base64": dataBase64
                default: nil
                }
            }
            set {
                switch name {
                case "specversion": specversion = newValue
                case "id": id = newValue
                case "source": source = newValue
                case "type": type = newValue
                case "time": time = newValue
                case "subject": subject = newValue
                case "dataschema": dataschema = newValue
                case "datacontenttype": datacontenttype = newValue
                case "data_base64": dataBase64 = newValue
                default: break
                }
            }
        }
    }

    /// "event N: " for the Nth event of a batch, "" for a single event: the start of every message about it.
    static func prefix(_ index: Int?) -> String { index.map { "event \($0): " } ?? "" }

    /// Parses the object at the scanner's position, naming the attribute at fault in any error.
    static func parseObject(_ scanner: inout JSONScanner, index: Int?) throws(BrokerError) -> CloudEvent {
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{") else {
            if scanner.atEnd { throw BrokerError.badRequest("the body is not valid JSON: it is empty", attribute: nil) }
            throw BrokerError.badRequest("\(prefix(index))a CloudEvent must be a JSON object", attribute: nil)
        }
        var attributes = Attributes()
        var extensions: [String: String] = [:]
        extensions.reserveCapacity(4)  // partitionkey, correlationid, causationid, traceparent: one allocation
        var dataRange: Range<Int>?
        var problem: BrokerError?
        do throws(JSONScanner.Failure) {
            try scanner.objectMembers { inner, member throws(JSONScanner.Failure) in
                let first = inner.peek
                if member.is("data", in: inner.bytes) {
                    dataRange = try inner.skipValue()
                    return
                }
                if first == UInt8(ascii: "\""), let field = Attributes.field(member, in: inner.bytes) {
                    attributes.set(field, try inner.string())
                    return
                }
                let key = member.name(in: inner.bytes)
                if Attributes.isStringAttribute(key) {
                    if first == UInt8(ascii: "\"") {
                        attributes[key] = try inner.string()
                    } else {
                        try inner.skipValue()
                        if first != UInt8(ascii: "n") || Attributes.isRequired(key) {
                            problem = problem ?? .badRequest("\(prefix(index))attribute '\(key)' must be a non-empty string", attribute: key)
                        }
                    }
                } else {
                    guard isValidExtensionName(key) else {
                        try inner.skipValue()
                        problem = problem ?? .badRequest("\(prefix(index))attribute name '\(key)' is invalid: CloudEvents attribute names are 1–20 lower-case letters or digits", attribute: key)
                        return
                    }
                    if first == UInt8(ascii: "\"") {
                        extensions[key] = try inner.string()
                        return
                    }
                    let range = try inner.skipValue()
                    switch first ?? 0 {
                    case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        extensions[key] = String(decoding: inner.bytes[range], as: UTF8.self)
                    case UInt8(ascii: "n"):
                        break  // null: the attribute is absent
                    default:
                        problem = problem ?? .badRequest("\(prefix(index))extension '\(key)' must be a string, number or boolean", attribute: key)
                    }
                }
            }
        } catch {
            throw BrokerError.badRequest("the body is not valid JSON: \(error.message)", attribute: nil)
        }
        if let problem { throw problem }
        for name in ["specversion", "id", "source", "type"] {
            guard let value = attributes[name] else {
                throw BrokerError.badRequest("\(prefix(index))required attribute '\(name)' is missing", attribute: name)
            }
            if value.isEmpty { throw BrokerError.badRequest("\(prefix(index))attribute '\(name)' must be a non-empty string", attribute: name) }
        }
        var event = try make(attributes, extensions: extensions, index: index)
        if let dataRange {
            if attributes.dataBase64 != nil {
                throw BrokerError.badRequest("\(prefix(index))'data' and 'data_base64' cannot both be present", attribute: "data")
            }
            let raw = scanner.bytes[dataRange]
            if raw.elementsEqual("null".utf8) {
                event.data = nil
            } else if raw.first == UInt8(ascii: "\""), !event.isJSONData {
                var text = JSONScanner(UnsafeBufferPointer(rebasing: raw))
                event.data = Array((try? text.string())?.utf8 ?? "".utf8)
            } else {
                event.data = Array(raw)  // JSON data exactly as sent
            }
        }
        return event
    }

    /// Builds and validates an event from its attributes (all modes end here).
    static func make(_ attributes: Attributes, extensions: [String: String], index: Int?) throws(BrokerError) -> CloudEvent {
        let specversion = attributes.specversion ?? ""
        guard specversion == "1.0" else {
            throw BrokerError.badRequest("\(prefix(index))specversion is '\(specversion)'; Sluice accepts CloudEvents 1.0 (\"specversion\": \"1.0\")", attribute: "specversion")
        }
        var event = CloudEvent(id: attributes.id ?? "", source: attributes.source ?? "", type: attributes.type ?? "")
        event.time = attributes.time
        event.subject = attributes.subject
        event.dataschema = attributes.dataschema
        event.datacontenttype = attributes.datacontenttype
        event.extensions = extensions
        if let time = event.time, !isRFC3339(time) {
            throw BrokerError.badRequest("\(prefix(index))attribute 'time' is '\(time)', not an RFC 3339 timestamp such as 2026-11-22T16:00:00Z", attribute: "time")
        }
        if let base64 = attributes.dataBase64 {
            guard let bytes = Data(base64Encoded: base64) else {
                throw BrokerError.badRequest("\(prefix(index))attribute 'data_base64' must be a base64 string", attribute: "data_base64")
            }
            event.data = Array(bytes)
        }
        try event.validateExtensions(index: index)
        return event
    }

    /// Builds an event from binary-mode HTTP headers (`ce-*`, `Content-Type`) and the body.
    public static func parse(binaryHeaders headers: [(name: String, value: String)], body: [UInt8]) throws(BrokerError) -> CloudEvent {
        var attributes = Attributes()
        var extensions: [String: String] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "content-type" { attributes.datacontenttype = value }
            guard lower.hasPrefix("ce-") else { continue }
            let attribute = String(lower.dropFirst(3))
            guard attribute != "data", attribute != "data_base64", attribute != "datacontenttype" else {
                throw BrokerError.badRequest("header \(name) is not allowed in binary mode; the body is the data and Content-Type its type", attribute: attribute)
            }
            let decoded = percentDecoded(value)
            if contextAttributes.contains(attribute) {
                attributes[attribute] = decoded
            } else {
                guard isValidExtensionName(attribute) else {
                    throw BrokerError.badRequest("header \(name): attribute name '\(attribute)' is invalid: CloudEvents attribute names are 1–20 lower-case letters or digits", attribute: attribute)
                }
                extensions[attribute] = decoded
            }
        }
        guard attributes.specversion != nil else {
            throw BrokerError.badRequest("binary-mode events need the ce-specversion header (1.0), plus ce-id, ce-source and ce-type", attribute: "specversion")
        }
        for name in ["id", "source", "type"] where (attributes[name] ?? "").isEmpty {
            throw BrokerError.badRequest("binary-mode events need a non-empty ce-\(name) header", attribute: name)
        }
        var event = try make(attributes, extensions: extensions, index: nil)
        event.data = body.isEmpty ? nil : body
        if event.isJSONData, let data = event.data {
            if !JSONScanner.isJSONValue(data) {
                throw BrokerError.badRequest("Content-Type says the body is JSON, but it does not parse as JSON", attribute: "data")
            }
        }
        return event
    }

    func validateExtensions(index: Int?) throws(BrokerError) {
        let at = { Self.prefix(index) }
        if let traceparent, !Correlation.isTraceparent(traceparent) {
            throw BrokerError.badRequest("\(at())traceparent '\(traceparent)' is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>, trace id and parent id not all zeros)", attribute: "traceparent")
        }
        if let id = correlationId, id.utf8.count > Correlation.maxIdLength {
            throw BrokerError.badRequest("\(at())correlationid is \(id.utf8.count) bytes; at most \(Correlation.maxIdLength) are accepted", attribute: "correlationid")
        }
        if let key = partitionKey, key.isEmpty {
            throw BrokerError.badRequest("\(at())partitionkey must not be empty; leave it out for unkeyed events", attribute: "partitionkey")
        }
    }

    static func isValidExtensionName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 20 && name.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) }
    }

    static func percentDecoded(_ value: String) -> String {
        value.removingPercentEncoding ?? value
    }

    /// RFC 3339: `YYYY-MM-DDTHH:MM:SS(.fraction)?(Z|±HH:MM)`.
    static func isRFC3339(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { isRFC3339(bytes: $0) }
    }

    private static func isRFC3339(bytes b: UnsafeBufferPointer<UInt8>) -> Bool {
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= b.count else { return nil }
            var value = 0
            for i in range {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                value = value * 10 + Int(b[i] - 0x30)
            }
            return value
        }
        guard b.count >= 20, digits(0..<4) != nil, b[4] == 0x2D, let month = digits(5..<7), (1...12).contains(month), b[7] == 0x2D,
              let day = digits(8..<10), (1...31).contains(day), b[10] == 0x54 || b[10] == 0x74,
              let hour = digits(11..<13), hour < 24, b[13] == 0x3A, let minute = digits(14..<16), minute < 60, b[16] == 0x3A,
              let second = digits(17..<19), second <= 60 else { return false }
        var i = 19
        if b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            guard i > start else { return false }
        }
        guard i < b.count else { return false }
        if b[i] == 0x5A || b[i] == 0x7A { return i + 1 == b.count }
        guard b[i] == 0x2B || b[i] == 0x2D, i + 6 == b.count, let offsetHour = digits(i + 1..<i + 3), offsetHour < 24,
              b[i + 3] == 0x3A, let offsetMinute = digits(i + 4..<i + 6), offsetMinute < 60 else { return false }
        return true
    }
}
