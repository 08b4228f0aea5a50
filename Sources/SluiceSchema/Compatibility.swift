/// How a new version of a type's schema must relate to the previous one.
///
/// - `backward`: every event valid under the previous version is valid under the new one (consumers on the new
///   version read old events).
/// - `forward`: every event valid under the new version is valid under the previous one (consumers still on the
///   previous version read new events).
/// - `full`: both. `none`: anything goes.
///
/// Deciding whether one JSON Schema accepts everything another accepts is not possible in general, so the check is
/// structural and conservative: it proves the inclusion keyword by keyword (types, required, properties and
/// additionalProperties, enum and const, bounds, items), and where it cannot prove it — a changed pattern or
/// format, a changed `$ref`, `anyOf`, `oneOf`, `not` or `if` — it refuses and says so. A refusal names the place
/// in the schema and why.
public enum SchemaCompatibility: String, Sendable, CaseIterable {
    case none, backward, forward, full

    /// Why `new` may not follow `old` under this mode, or nil when it may. `oldLabel` and `newLabel` name the
    /// versions in the reason.
    public func problem(old: JSONValue, new: JSONValue, oldLabel: String, newLabel: String) -> String? {
        switch self {
        case .none: return nil
        case .backward: return Inclusion(narrower: oldLabel, wider: newLabel).check(old, new, "")
        case .forward: return Inclusion(narrower: newLabel, wider: oldLabel).check(new, old, "")
        case .full:
            return Inclusion(narrower: oldLabel, wider: newLabel).check(old, new, "") ?? Inclusion(narrower: newLabel, wider: oldLabel).check(new, old, "")
        }
    }
}

/// Proves that every instance valid under one schema (the narrower) is valid under another (the wider).
struct Inclusion {
    let narrower: String
    let wider: String

    static let annotations: Set<String> = ["$schema", "$id", "$comment", "title", "description", "default", "examples", "readOnly", "writeOnly", "definitions"]

    /// nil when proven; otherwise where (a JSON pointer into the schemas) and why.
    func check(_ a: JSONValue, _ b: JSONValue, _ at: String) -> String? {
        if a == b || Self.acceptsAll(b) || a == .bool(false) { return nil }
        guard case .object(let x) = a else { return "\(at.isEmpty ? "/" : at): \(wider) constrains what \(narrower) accepts without limits" }
        guard case .object(let y) = b else { return "\(at.isEmpty ? "/" : at): \(wider) accepts nothing here" }
        for (keyword, value) in y.sorted(by: { $0.key < $1.key }) where !Self.annotations.contains(keyword) {
            if let reason = checkKeyword(keyword, value, x, y, at) { return reason }
        }
        return nil
    }

    static func acceptsAll(_ schema: JSONValue) -> Bool {
        switch schema {
        case .bool(true): return true
        case .object(let object): return object.keys.allSatisfy { annotations.contains($0) }
        default: return false
        }
    }

    private func checkKeyword(_ keyword: String, _ value: JSONValue, _ x: [String: JSONValue], _ y: [String: JSONValue], _ at: String) -> String? {
        let here = at + "/" + keyword
        switch keyword {
        case "type":
            let allowed = Self.types(value)
            let given = x["type"].map(Self.types) ?? ["null", "boolean", "object", "array", "number", "string"]
            let widened = allowed.contains("number") ? allowed.union(["integer"]) : allowed
            let extra = given.subtracting(widened)
            guard extra.isEmpty else { return "\(here): \(narrower) allows \(extra.sorted().joined(separator: ", ")) where \(wider) allows only \(allowed.sorted().joined(separator: ", "))" }
        case "required":
            let needed = Set(Self.strings(value)).subtracting(Self.strings(x["required"] ?? .array([])))
            if let name = needed.sorted().first { return "\(here): '\(name)' is required by \(wider) but not by \(narrower), so a \(narrower) event may lack it" }
        case "properties":
            guard case .object(let properties) = value else { return nil }
            for (name, schema) in properties.sorted(by: { $0.key < $1.key }) {
                let path = here + "/" + name
                if let own = Self.property(name, x) {
                    if let reason = check(own, schema, path) { return reason }
                } else if !Self.acceptsAll(schema) {
                    return "\(path): \(wider) constrains '\(name)', which \(narrower) lets be anything"
                }
            }
        case "additionalProperties":
            if Self.acceptsAll(value) { return nil }
            let described = Set(Self.properties(y).keys)
            for (name, schema) in Self.properties(x).sorted(by: { $0.key < $1.key }) where !described.contains(name) {
                if let reason = check(schema, value, at + "/properties/" + name) {
                    return value == .bool(false) ? "\(at)/properties/\(name): \(narrower) allows '\(name)', which \(wider) does not" : reason
                }
            }
            let otherExtra = x["additionalProperties"] ?? .bool(true)
            if x["patternProperties"] != nil || y["patternProperties"] != nil { return "\(here): cannot compare additionalProperties beside patternProperties" }
            if let reason = check(otherExtra, value, here) {
                return value == .bool(false) ? "\(here): \(narrower) allows properties it does not name, \(wider) does not" : reason
            }
        case "enum", "const":
            let allowed = keyword == "const" ? [value] : Self.list(value)
            guard let given = x["const"].map({ [$0] }) ?? x["enum"].map(Self.list) else {
                return "\(here): \(wider) allows only \(keyword == "const" ? "one value" : "listed values"), \(narrower) allows others"
            }
            if let missing = given.first(where: { !allowed.contains($0) }) {
                return "\(here): \(narrower) allows \(String(decoding: missing.bytes, as: UTF8.self)), which \(wider) does not"
            }
        case "minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties":
            guard case .number(let limit) = value else { return nil }
            guard let own = Self.number(x[keyword]), own >= limit || (keyword == "exclusiveMinimum" && Self.number(x["minimum"]).map { $0 > limit } == true) else {
                return "\(here): \(wider) needs \(keyword) \(Self.format(limit)), \(narrower) \(Self.number(x[keyword]).map { "only \(Self.format($0))" } ?? "has no such bound")"
            }
        case "maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties":
            guard case .number(let limit) = value else { return nil }
            guard let own = Self.number(x[keyword]), own <= limit || (keyword == "exclusiveMaximum" && Self.number(x["maximum"]).map { $0 < limit } == true) else {
                return "\(here): \(wider) needs \(keyword) \(Self.format(limit)), \(narrower) \(Self.number(x[keyword]).map { "allows \(Self.format($0))" } ?? "has no such bound")"
            }
        case "items":
            guard let own = x["items"] else { return "\(here): \(wider) constrains the items, which \(narrower) lets be anything" }
            if case .array = value { return own == value ? nil : "\(here): cannot compare differing tuple items" }
            if case .array = own { return "\(here): cannot compare tuple items with one items schema" }
            return check(own, value, here)
        case "uniqueItems":
            if value == .bool(true), x["uniqueItems"] != .bool(true) { return "\(here): \(wider) needs unique items, \(narrower) does not" }
        default:
            // pattern, format, multipleOf, $ref, allOf, anyOf, oneOf, not, if/then/else, dependencies, …: only the same value is proven.
            if x[keyword] != value { return "\(here): \(keyword) differs between \(narrower) and \(wider), and Sluice cannot prove that \(wider) accepts every \(narrower) event" }
        }
        return nil
    }

    static func property(_ name: String, _ schema: [String: JSONValue]) -> JSONValue? {
        if let own = properties(schema)[name] { return own }
        return schema["additionalProperties"]
    }

    static func properties(_ schema: [String: JSONValue]) -> [String: JSONValue] {
        if case .object(let map)? = schema["properties"] { return map }
        return [:]
    }

    static func types(_ value: JSONValue) -> Set<String> {
        switch value {
        case .string(let name): return [name]
        case .array(let list): return Set(strings(.array(list)))
        default: return []
        }
    }

    static func strings(_ value: JSONValue) -> [String] {
        guard case .array(let list) = value else { return [] }
        return list.compactMap { if case .string(let text) = $0 { return text } else { return nil } }
    }

    static func list(_ value: JSONValue) -> [JSONValue] {
        if case .array(let list) = value { return list }
        return []
    }

    static func number(_ value: JSONValue?) -> Double? {
        if case .number(let number)? = value { return number }
        return nil
    }

    static func format(_ number: Double) -> String { Int64(exactly: number).map(String.init) ?? String(number) }
}
