import Foundation
public import SluiceLog
import SluiceTelemetry

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

    /// Whether the data is JSON, going by the content type (absent means JSON, as in structured mode).
    public var isJSONData: Bool { Self.isJSON(contentType: datacontenttype) }

    static func isJSON(contentType: String?) -> Bool {
        guard let contentType = contentType?.lowercased() else { return true }
        let media = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
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

    /// Rebuilds the event from a record written by ``record(timestamp:)`` (or by any producer using the
    /// CloudEvents Kafka binding in binary mode). Returns `nil` when the record has no `ce_id`/`ce_source`/`ce_type`.
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
              let type = attributes.removeValue(forKey: "type") else { return nil }
        self.init(id: id, source: source, type: type, data: record.value, datacontenttype: contentType)
        specversion = attributes.removeValue(forKey: "specversion") ?? "1.0"
        time = attributes.removeValue(forKey: "time")
        subject = attributes.removeValue(forKey: "subject")
        dataschema = attributes.removeValue(forKey: "dataschema")
        extensions = attributes
        if let key = record.key { extensions["partitionkey"] = String(decoding: key, as: UTF8.self) }
    }

    // MARK: - JSON (structured mode)

    /// The structured-mode JSON object, with `data` inline when it is JSON (or text) and `data_base64` otherwise.
    public func jsonObject() -> [String: Any] {
        var out: [String: Any] = ["specversion": specversion, "id": id, "source": source, "type": type]
        if let time { out["time"] = time }
        if let subject { out["subject"] = subject }
        if let dataschema { out["dataschema"] = dataschema }
        if let datacontenttype { out["datacontenttype"] = datacontenttype }
        for (name, value) in extensions { out[name] = value }
        if let data {
            if isJSONData, let value = try? JSONSerialization.jsonObject(with: Data(data), options: [.fragmentsAllowed]) {
                out["data"] = value
            } else if Self.isText(contentType: datacontenttype), let text = String(validating: data, as: UTF8.self) {
                out["data"] = text
            } else {
                out["data_base64"] = Data(data).base64EncodedString()
            }
        }
        return out
    }

    /// Parses one structured-mode event, naming the attribute at fault in any error.
    public static func parse(jsonObject object: Any, index: Int? = nil) throws(BrokerError) -> CloudEvent {
        let at = index.map { "event \($0): " } ?? ""
        guard let object = object as? [String: Any] else {
            throw BrokerError.badRequest("\(at)a CloudEvent must be a JSON object", attribute: nil)
        }
        func string(_ name: String, required: Bool) throws(BrokerError) -> String? {
            guard let value = object[name] else {
                if required { throw BrokerError.badRequest("\(at)required attribute '\(name)' is missing", attribute: name) }
                return nil
            }
            guard let text = value as? String, !(required && text.isEmpty) else {
                throw BrokerError.badRequest("\(at)attribute '\(name)' must be a non-empty string", attribute: name)
            }
            return text
        }
        let specversion = try string("specversion", required: true)!
        guard specversion == "1.0" else {
            throw BrokerError.badRequest("\(at)specversion is '\(specversion)'; Sluice accepts CloudEvents 1.0 (\"specversion\": \"1.0\")", attribute: "specversion")
        }
        var event = CloudEvent(id: try string("id", required: true)!, source: try string("source", required: true)!,
                               type: try string("type", required: true)!)
        event.time = try string("time", required: false)
        event.subject = try string("subject", required: false)
        event.dataschema = try string("dataschema", required: false)
        event.datacontenttype = try string("datacontenttype", required: false)
        if let time = event.time, !isRFC3339(time) {
            throw BrokerError.badRequest("\(at)attribute 'time' is '\(time)', not an RFC 3339 timestamp such as 2026-11-22T16:00:00Z", attribute: "time")
        }
        if object["data"] != nil && object["data_base64"] != nil {
            throw BrokerError.badRequest("\(at)'data' and 'data_base64' cannot both be present", attribute: "data")
        }
        if let base64 = object["data_base64"] {
            guard let text = base64 as? String, let bytes = Data(base64Encoded: text) else {
                throw BrokerError.badRequest("\(at)attribute 'data_base64' must be a base64 string", attribute: "data_base64")
            }
            event.data = Array(bytes)
        } else if let data = object["data"], !(data is NSNull) {
            if let text = data as? String, !event.isJSONData {
                event.data = Array(text.utf8)
            } else {
                guard let bytes = try? JSONSerialization.data(withJSONObject: data, options: [.fragmentsAllowed, .withoutEscapingSlashes]) else {
                    throw BrokerError.badRequest("\(at)attribute 'data' cannot be serialised as JSON", attribute: "data")
                }
                event.data = Array(bytes)
            }
        }
        for (name, value) in object where !contextAttributes.contains(name) {
            guard isValidExtensionName(name) else {
                throw BrokerError.badRequest("\(at)attribute name '\(name)' is invalid: CloudEvents attribute names are 1–20 lower-case letters or digits", attribute: name)
            }
            switch value {
            case let text as String: event.extensions[name] = text
            case let number as NSNumber:
                // JSONSerialization hands booleans back as NSNumber with objCType "c".
                event.extensions[name] = String(cString: number.objCType) == "c" ? (number.boolValue ? "true" : "false") : number.stringValue
            default:
                throw BrokerError.badRequest("\(at)extension '\(name)' must be a string, number or boolean", attribute: name)
            }
        }
        try event.validateExtensions(at: at)
        return event
    }

    /// Builds an event from binary-mode HTTP headers (`ce-*`, `Content-Type`) and the body.
    public static func parse(binaryHeaders headers: [(name: String, value: String)], body: [UInt8]) throws(BrokerError) -> CloudEvent {
        var attributes: [String: String] = [:]
        var contentType: String?
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "content-type" { contentType = value }
            guard lower.hasPrefix("ce-") else { continue }
            let attribute = String(lower.dropFirst(3))
            guard attribute != "data", attribute != "data_base64", attribute != "datacontenttype" else {
                throw BrokerError.badRequest("header \(name) is not allowed in binary mode; the body is the data and Content-Type its type", attribute: attribute)
            }
            attributes[attribute] = percentDecoded(value)
        }
        var object: [String: Any] = attributes
        if attributes["specversion"] == nil {
            throw BrokerError.badRequest("binary-mode events need the ce-specversion header (1.0), plus ce-id, ce-source and ce-type", attribute: "specversion")
        }
        object["datacontenttype"] = contentType
        var event = try parse(jsonObject: object)
        event.data = body.isEmpty ? nil : body
        if event.isJSONData, let data = event.data, (try? JSONSerialization.jsonObject(with: Data(data), options: [.fragmentsAllowed])) == nil {
            throw BrokerError.badRequest("Content-Type says the body is JSON, but it does not parse as JSON", attribute: "data")
        }
        return event
    }

    func validateExtensions(at: String) throws(BrokerError) {
        if let traceparent, Correlation.parseTraceparent(traceparent) == nil {
            throw BrokerError.badRequest("\(at)traceparent '\(traceparent)' is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)", attribute: "traceparent")
        }
        if let key = partitionKey, key.isEmpty {
            throw BrokerError.badRequest("\(at)partitionkey must not be empty; leave it out for unkeyed events", attribute: "partitionkey")
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
        let pattern = #"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"#
        return text.range(of: pattern, options: .regularExpression) != nil
    }
}
