import Logging
public import SluiceSchema
import SluiceTelemetry

/// One event of a publish that fails its schema.
public struct EventSchemaViolation: Sendable {
    /// The event's place in the request (0-based).
    public var index: Int
    public var eventId: String
    public var type: String
    public var version: String?
    /// A JSON pointer into the event's data ("" is the data itself).
    public var instancePath: String
    /// The keyword that failed (`required`, `type`, …), or `version` when the type has no schema for the event's version,
    /// or `data` when the data is not JSON.
    public var keyword: String
    public var schemaPath: String
    public var message: String
}

extension Broker {
    /// The `schema.validation` mode of a topic: its own setting, else the agent's.
    public func schemaValidation(topic: String) -> String {
        log.topic(topic)?.config.schemaValidation ?? config.string("schema.validation")
    }

    /// Whether publishes to `topic` are checked against schemas at all (schemas exist and its mode is not off): the
    /// Kafka listener decodes a batch's records only then.
    public func checksSchemas(topic: String) -> Bool {
        !schemas.isEmpty && schemaValidation(topic: topic) != "off"
    }

    /// The schema version an event names: the extension `schema.version.attribute`, else the last path segment of
    /// `dataschema` (without `.json`), else nil (the type's latest version applies).
    public func schemaVersion(of event: CloudEvent) -> String? {
        schemaVersion(of: event, attribute: config.string("schema.version.attribute"))
    }

    func schemaVersion(of event: CloudEvent, attribute: String) -> String? {
        if let version = event.extensions[attribute], !version.isEmpty { return version }
        guard var schema = event.dataschema else { return nil }
        if let cut = schema.firstIndex(where: { $0 == "#" || $0 == "?" }) { schema = String(schema[..<cut]) }
        guard let last = schema.split(separator: "/").last, !last.isEmpty else { return nil }
        return last.hasSuffix(".json") ? String(last.dropLast(5)) : String(last)
    }

    /// Checks the events of a publish to `topic` against their schemas, per the topic's `schema.validation`: counts
    /// each check in `sluice_schema_validations_total`, logs each failure (a warning naming the type, version,
    /// pointer and keyword), and returns the failures that must refuse the publish (enforce). Types without schemas
    /// are not checked. `firstIndex` is the index of `events[0]` in the request.
    public func schemaViolations(topic: String, events: [CloudEvent], firstIndex: Int = 0) -> [EventSchemaViolation] {
        // Without schemas (the common case) a publish pays one lock for this.
        guard !schemas.isEmpty else { return [] }
        let mode = schemaValidation(topic: topic)
        guard mode != "off" else { return [] }
        var refused: [EventSchemaViolation] = []
        // Looked up once per type and version of the request, and counted once per outcome.
        var versionsByType: [String: [String]] = [:]
        var schemaByKey: [String: RegisteredSchema?] = [:]
        var counts: [[String]: Int] = [:]
        let attribute = config.string("schema.version.attribute")
        defer {
            for (labels, count) in counts {
                metrics.counter(MetricName.schemaValidations, labels[0], labels[1], labels[2], labels[3]).increment(by: Int64(count))
            }
        }
        for (offset, event) in events.enumerated() {
            let versions = versionsByType[event.type] ?? {
                let found = schemas.versions(of: event.type)
                versionsByType[event.type] = found
                return found
            }()
            guard let latest = versions.last else { continue }
            let named = schemaVersion(of: event, attribute: attribute)
            let version = named ?? latest
            let key = event.type + "\u{0}" + version
            let registeredSchema = schemaByKey[key] ?? {
                let found = schemas.schema(type: event.type, version: version)
                schemaByKey[key] = found
                return found
            }()
            var found: [EventSchemaViolation] = []
            func violation(_ keyword: String, _ path: String, _ schemaPath: String, _ message: String) -> EventSchemaViolation {
                EventSchemaViolation(index: firstIndex + offset, eventId: event.id, type: event.type, version: named ?? latest,
                                     instancePath: path, keyword: keyword, schemaPath: schemaPath, message: message)
            }
            let result: String
            if let registered = registeredSchema {
                let data = event.data.map { event.isJSONData ? JSONValue.parse($0) : nil } ?? .null
                if let data {
                    found = registered.schema.validate(data).map { violation($0.keyword, $0.instancePath, $0.schemaPath, $0.message) }
                    result = found.isEmpty ? "valid" : "invalid"
                } else {
                    found = [violation("data", "", "", "the data is not JSON (datacontenttype \(event.datacontenttype ?? "?")); a schema checks JSON data")]
                    result = "not_json"
                }
            } else {
                found = [violation("version", "", "", "type \(event.type) has no schema for version \(version); registered versions: \(versions.joined(separator: ", "))")]
                result = "unknown_version"
            }
            counts[[topic, event.type, result == "unknown_version" ? "_unknown" : version, result], default: 0] += 1
            for problem in found {
                logger.warning(mode == "enforce" ? "event refused: its data does not match its schema" : "event data does not match its schema (schema.validation=warn: published anyway)", metadata: [
                    LogField.topic: .string(topic), LogField.eventId: .string(event.id), LogField.eventType: .string(event.type),
                    LogField.schemaVersion: .string(version), LogField.schemaPointer: .string(problem.instancePath),
                    LogField.schemaKeyword: .string(problem.keyword), "error": .string(problem.message),
                ])
            }
            if mode == "enforce" { refused += found }
        }
        return refused
    }
}
