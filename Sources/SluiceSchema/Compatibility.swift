/// How a new version of a type's schema must relate to the previous one.
///
/// - `backward`: every event valid under the previous version, upcast by the type's upcasters (if it has any from
///   the previous version to the new one), is valid under the new one (consumers on the new version read old events).
/// - `forward`: every event valid under the new version is valid under the previous one (consumers still on the
///   previous version read new events).
/// - `full`: both. `none`: anything goes.
///
/// Deciding whether one JSON Schema accepts everything another accepts is not possible in general, so the check is
/// structural and conservative: it proves the inclusion keyword by keyword (types, required, properties and
/// additionalProperties, enum and const, bounds, items), and where it cannot prove it — a changed pattern or
/// format, a changed `$ref`, `anyOf`, `oneOf`, `not` or `if` — it refuses and says so. A refusal names the place
/// in the schema and why. Upcasters are taken into account by applying their operations to the previous schema
/// (`UpcastSchemaTransform`) before the comparison.
public enum SchemaCompatibility: String, Sendable, CaseIterable {
    case none, backward, forward, full

    /// Why `new` may not follow `old` under this mode, or nil when it may. `oldLabel` and `newLabel` name the
    /// versions in the reason.
    /// `upcasters` is the chain from `old` to `new` (empty when there is none).
    public func problem(old: JSONValue, new: JSONValue, oldLabel: String, newLabel: String, upcasters: [Upcaster] = []) -> String? {
        func backward() -> String? {
            guard !upcasters.isEmpty else { return Inclusion(narrower: oldLabel, wider: newLabel).check(old, new, "") }
            let upcast: JSONValue
            do throws(SchemaError) {
                upcast = try UpcastSchemaTransform.apply(upcasters, to: old)
            } catch {
                return error.message
            }
            let label = "\(oldLabel) upcast to \(newLabel)"
            return Inclusion(narrower: label, wider: newLabel).check(upcast, new, "")
        }
        switch self {
        case .none: return nil
        case .backward: return backward()
        case .forward: return Inclusion(narrower: newLabel, wider: oldLabel).check(new, old, "")
        case .full: return backward() ?? Inclusion(narrower: newLabel, wider: oldLabel).check(new, old, "")
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
        if case .object(let x) = a, x.count == 1 {
            // A union is included when each of its branches is; one value when the wider schema accepts it.
            if case .array(let branches)? = x["anyOf"] {
                for branch in branches { if let reason = check(branch, b, at) { return reason } }
                return nil
            }
            if let value = x["const"] {
                let accepted = (try? JSONSchema(b))?.isValid(value) == true
                return accepted ? nil : "\(at.isEmpty ? "/" : at): \(wider) does not accept \(String(decoding: value.bytes, as: UTF8.self)), which \(narrower) may hold"
            }
        }
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

/// The previous version's schema as its events look after upcasting: each operation of the chain applied to the
/// schema, so that the comparison with the new version sees the defaults, renames and moves. Only what can be
/// followed exactly is: the objects a path passes through must be declared in `properties`, required and of type
/// object (so that the operation cannot miss); anything else is refused with the path and why.
public enum UpcastSchemaTransform {
    public static func apply(_ chain: [Upcaster], to schema: JSONValue) throws(SchemaError) -> JSONValue {
        var schema = schema
        for upcaster in chain {
            for operation in upcaster.operations {
                try apply(operation, to: &schema, step: "\(upcaster.from) → \(upcaster.to)")
            }
        }
        return schema
    }

    static func apply(_ operation: UpcastOperation, to schema: inout JSONValue, step: String) throws(SchemaError) {
        switch operation {
        case .set(let path, let value):
            try update(&schema, parentOf: path, step: step) { parent, name in
                parent.setProperty(name, .object(["const": value]), required: true)
            }
        case .setDefault(let path, let value):
            try update(&schema, parentOf: path, step: step) { parent, name in
                guard !parent.isRequired(name) else { return }
                parent.setProperty(name, .object(["anyOf": .array([parent.schemaOf(name), .object(["const": value])])]), required: true)
            }
        case .remove(let path):
            try update(&schema, parentOf: path, step: step) { parent, name in parent.removeProperty(name) }
        case .rename(let path, let name):
            try copy(&schema, from: path, to: path.dropLast() + [name], step: step)
            try update(&schema, parentOf: path, step: step) { parent, member in parent.removeProperty(member) }
        case .copy(let from, let path):
            try copy(&schema, from: from, to: path, step: step)
        case .move(let from, let path):
            try copy(&schema, from: from, to: path, step: step)
            try update(&schema, parentOf: from, step: step) { parent, name in parent.removeProperty(name) }
        }
    }

    /// The destination holds the source's value when the source is there, else what it held before.
    static func copy(_ schema: inout JSONValue, from: [String], to: [String], step: String) throws(SchemaError) {
        var source: (schema: JSONValue, required: Bool)?
        try update(&schema, parentOf: from, step: step) { parent, name in source = (parent.schemaOf(name), parent.isRequired(name)) }
        guard let source else { return }
        try update(&schema, parentOf: to, step: step) { parent, name in
            if source.required {
                parent.setProperty(name, source.schema, required: true)
            } else {
                parent.setProperty(name, .object(["anyOf": .array([source.schema, parent.schemaOf(name)])]), required: parent.isRequired(name))
            }
        }
    }

    /// Calls `body` with the object schema holding the path's last member, after checking the way there.
    static func update(_ schema: inout JSONValue, parentOf path: [String], step: String,
                       _ body: (inout ObjectSchema, String) -> Void) throws(SchemaError) {
        guard let name = path.last else { return }
        try descend(&schema, Array(path.dropLast()), walked: [], pointer: JSONPointer.text(path), step: step) { object in
            var parent = ObjectSchema(object)
            body(&parent, name)
            object = parent.object
        }
    }

    private static func descend(_ schema: inout JSONValue, _ rest: [String], walked: [String], pointer: String, step: String,
                                _ body: (inout [String: JSONValue]) -> Void) throws(SchemaError) {
        guard case .object(var object) = schema, object["type"] == .string("object") else {
            let place = walked.isEmpty ? "the data" : JSONPointer.text(walked)
            throw SchemaError("the upcaster \(step) changes \(pointer), and the previous schema does not make \(place) an object (\"type\": \"object\"), so Sluice cannot prove what the upcast events look like")
        }
        guard let token = rest.first else {
            body(&object)
            schema = .object(object)
            return
        }
        let parent = ObjectSchema(object)
        guard parent.isRequired(token), case .object(var properties)? = object["properties"], var child = properties[token] else {
            throw SchemaError("the upcaster \(step) changes \(pointer), and the previous schema does not declare \(JSONPointer.text(walked + [token])) as a required property, so Sluice cannot prove what the upcast events look like")
        }
        try descend(&child, Array(rest.dropFirst()), walked: walked + [token], pointer: pointer, step: step, body)
        properties[token] = child
        object["properties"] = .object(properties)
        schema = .object(object)
    }
}

/// An object schema's `properties`, `required` and `additionalProperties`, as the schema transform edits them.
struct ObjectSchema {
    var object: [String: JSONValue]

    init(_ object: [String: JSONValue]) { self.object = object }

    var required: [String] { Inclusion.strings(object["required"] ?? .array([])) }

    func isRequired(_ name: String) -> Bool { required.contains(name) }

    /// What a member may hold: its property schema, else additionalProperties, else anything.
    func schemaOf(_ name: String) -> JSONValue {
        Inclusion.property(name, object) ?? .bool(true)
    }

    mutating func setProperty(_ name: String, _ schema: JSONValue, required isRequired: Bool) {
        var properties = Inclusion.properties(object)
        properties[name] = schema
        object["properties"] = .object(properties)
        var names = required.filter { $0 != name }
        if isRequired { names.append(name) }
        object["required"] = .array(names.map { .string($0) })
    }

    mutating func removeProperty(_ name: String) {
        var properties = Inclusion.properties(object)
        properties.removeValue(forKey: name)
        object["properties"] = .object(properties)
        object["required"] = .array(required.filter { $0 != name }.map { .string($0) })
    }
}
