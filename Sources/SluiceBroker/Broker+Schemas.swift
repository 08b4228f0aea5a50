import Logging
import SluiceSchema
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
        // Schemas are looked up once per type and named version of the request, and checks counted once per outcome;
        // a request has few of each, so short lists searched from the end beat hashing every event's strings.
        var lookups: [(type: String, named: String?, versions: [String], schema: RegisteredSchema?)] = []
        var counts: [(type: String, version: String, result: String, count: Int)] = []
        let attribute = config.string("schema.version.attribute")
        defer {
            for entry in counts {
                metrics.counter(MetricName.schemaValidations, topic, entry.type, entry.version, entry.result).increment(by: Int64(entry.count))
            }
        }
        // Events are read in place (events[offset]): a copy would retain each of their strings.
        for offset in events.indices {
            let type = events[offset].type
            let named = schemaVersion(of: events[offset], attribute: attribute)
            let lookup: (versions: [String], schema: RegisteredSchema?)
            if let known = lookups.last(where: { $0.type == type && $0.named == named }) {
                lookup = (known.versions, known.schema)
            } else {
                let versions = schemas.versions(of: type)
                let schema = versions.last.flatMap { schemas.schema(type: type, version: named ?? $0) }
                lookups.append((type, named, versions, schema))
                lookup = (versions, schema)
            }
            guard let latest = lookup.versions.last else { continue }
            let version = named ?? latest
            var found: [EventSchemaViolation] = []
            func violation(_ keyword: String, _ path: String, _ schemaPath: String, _ message: String) -> EventSchemaViolation {
                EventSchemaViolation(index: firstIndex + offset, eventId: events[offset].id, type: type, version: version,
                                     instancePath: path, keyword: keyword, schemaPath: schemaPath, message: message)
            }
            let result: String
            if let registered = lookup.schema {
                // Most events are valid: decided on the data's bytes when the schema allows, without building its
                // values; otherwise (and to say what is wrong) parsed and validated.
                let quick = events[offset].isJSONData ? events[offset].data.flatMap { registered.schema.quickCheck($0) } : nil
                let data = quick == true ? nil : events[offset].data.map { events[offset].isJSONData ? JSONValue.parse($0) : nil } ?? .null
                if quick == true {
                    result = "valid"
                } else if let data {
                    found = registered.schema.validate(data).map { violation($0.keyword, $0.instancePath, $0.schemaPath, $0.message) }
                    result = found.isEmpty ? "valid" : "invalid"
                } else {
                    found = [violation("data", "", "", "the data is not JSON (datacontenttype \(events[offset].datacontenttype ?? "?")); a schema checks JSON data")]
                    result = "not_json"
                }
            } else {
                found = [violation("version", "", "", "type \(type) has no schema for version \(version); registered versions: \(lookup.versions.joined(separator: ", "))")]
                result = "unknown_version"
            }
            let counted = result == "unknown_version" ? "_unknown" : version
            if let index = counts.lastIndex(where: { $0.type == type && $0.version == counted && $0.result == result }) {
                counts[index].count += 1
            } else {
                counts.append((type, counted, result, 1))
            }
            for problem in found {
                logger.warning(mode == "enforce" ? "event refused: its data does not match its schema" : "event data does not match its schema (schema.validation=warn: published anyway)", metadata: [
                    LogField.topic: .string(topic), LogField.eventId: .string(events[offset].id), LogField.eventType: .string(type),
                    LogField.schemaVersion: .string(version), LogField.schemaPointer: .string(problem.instancePath),
                    LogField.schemaKeyword: .string(problem.keyword), "error": .string(problem.message),
                ])
            }
            if mode == "enforce" { refused += found }
        }
        return refused
    }
}
