import SluiceSchema
import SluiceTelemetry

/// Which version of their type a reader wants events in.
public enum VersionTarget: Sendable, Equatable, CustomStringConvertible {
    /// The newest registered version of each type.
    case latest
    /// This version of every type that has schemas.
    case fixed(String)

    /// `latest` or a version.
    public init?(_ text: String) {
        guard !text.isEmpty else { return nil }
        self = text == "latest" ? .latest : .fixed(text)
    }

    public var description: String {
        switch self {
        case .latest: "latest"
        case .fixed(let version): version
        }
    }
}

/// An event as a reader asked for it.
public struct UpcastEvent: Sendable {
    public var event: CloudEvent
    /// The version it was published as, when it was upcast.
    public var upcastFrom: String?
}

/// Why an event cannot be given in the version asked for (`unsupported_event_version`).
public struct UnsupportedEventVersion: Error, Sendable {
    public var message: String
}

extension Broker {
    /// The event in `target`'s version of its type: unchanged when its type has no schemas or it already is that
    /// version; otherwise its data run through the type's upcasters, checked against the target schema, and its
    /// version attribute (the `schema.version.attribute` extension, or `dataschema`'s last segment) rewritten. An event
    /// without a version counts as its type's latest. Fails when no chain of upcasters leads there (there is no
    /// downcasting), when the data is not JSON, or when the result does not match the target schema.
    public func upcast(_ event: CloudEvent, to target: VersionTarget) -> Result<UpcastEvent, UnsupportedEventVersion> {
        let versions = schemas.versions(of: event.type)
        guard let latest = versions.last else { return .success(UpcastEvent(event: event)) }
        let wanted: String
        switch target {
        case .latest: wanted = latest
        case .fixed(let version):
            guard versions.contains(version) else {
                return .failure(UnsupportedEventVersion(message: "\(event.type) has no version \(version); its versions: \(versions.joined(separator: ", "))"))
            }
            wanted = version
        }
        let named = schemaVersion(of: event)
        let from = named ?? latest
        if from == wanted { return .success(UpcastEvent(event: event)) }
        guard let chain = schemas.settings(of: event.type)?.chains.path(from: from, to: wanted) else {
            let declared = schemas.settings(of: event.type)?.chains.upcasters.map { "\($0.from) → \($0.to)" } ?? []
            return .failure(UnsupportedEventVersion(message: "no upcaster chain takes \(event.type) \(from) to \(wanted) (upcasters: \(declared.isEmpty ? "none" : declared.joined(separator: ", ")))"))
        }
        guard event.isJSONData, let data = event.data.map({ JSONValue.parse($0) }) ?? .null else {
            return .failure(UnsupportedEventVersion(message: "\(event.type) \(from) must be upcast to \(wanted), and its data is not JSON (datacontenttype \(event.datacontenttype ?? "?"))"))
        }
        var upcast = data
        for step in chain { upcast = step.apply(upcast) }
        if let schema = schemas.schema(type: event.type, version: wanted), let problem = schema.schema.validate(upcast).first {
            return .failure(UnsupportedEventVersion(message: "\(event.type) \(from) upcast to \(wanted) does not match the \(wanted) schema at '\(problem.instancePath)': \(problem.message) (\(problem.keyword)); fix the upcasters"))
        }
        var out = event
        out.data = upcast.bytes
        let attribute = config.string("schema.version.attribute")
        if out.extensions[attribute] != nil || named == nil || out.dataschema == nil {
            out.extensions[attribute] = wanted
        } else if let schema = out.dataschema, let range = schema.range(of: "/" + from, options: .backwards) {
            out.dataschema = schema.replacingCharacters(in: range, with: "/" + wanted)
        }
        metrics.counter(MetricName.eventsUpcast, event.type, from, wanted).increment()
        return .success(UpcastEvent(event: out, upcastFrom: from))
    }
}
