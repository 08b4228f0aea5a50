public import Foundation

/// A schema that cannot be used, with what is wrong and where.
public struct SchemaError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One way an instance fails its schema: where in the instance, which keyword, where that keyword is.
public struct SchemaViolation: Sendable, Equatable, CustomStringConvertible {
    /// A JSON pointer into the instance ("" is the instance itself).
    public var instancePath: String
    /// The keyword that failed, e.g. `required`, `type`, `pattern`.
    public var keyword: String
    /// Where the keyword is: a JSON pointer in the schema (`#/properties/email/format`), after the document's URI when
    /// it is another document than the schema itself.
    public var schemaPath: String
    public var message: String

    public var description: String { "\(instancePath.isEmpty ? "/" : instancePath): \(message) (\(keyword) at \(schemaPath))" }
}

/// Bounds on one validation, so that no schema or instance makes it run away.
public struct SchemaLimits: Sendable {
    /// Nested schema evaluations (every `$ref` and subschema counts one); beyond it the instance is invalid with a
    /// `$ref` violation (e.g. `{"$ref": "#"}` refers to itself without consuming the instance).
    public var maxDepth: Int
    /// Violations collected before stopping.
    public var maxViolations: Int

    public init(maxDepth: Int = 256, maxViolations: Int = 100) {
        self.maxDepth = maxDepth
        self.maxViolations = maxViolations
    }
}

/// A JSON Schema (draft-07), compiled once: every subschema indexed by URI and JSON pointer, `$id`s resolved, patterns
/// compiled, and every `$ref` checked to resolve (to the schema itself, a document in `remotes`, or the draft-07
/// meta-schema). Validation never fetches anything. Formats `date-time`, `date`, `time`, `email`, `uri`, `uuid`,
/// `ipv4` and `ipv6` are checked; others are annotations.
public final class JSONSchema: Sendable {
    let root: Node
    let index: [String: Node]
    public let limits: SchemaLimits

    /// Compiles `schema`, whose base URI is `baseURI`; `remotes` are other documents its `$ref`s may name, by URI.
    public init(_ schema: JSONValue, baseURI: String = "urn:sluice:schema", remotes: [String: JSONValue] = [:],
                limits: SchemaLimits = SchemaLimits()) throws(SchemaError) {
        var compiler = SchemaCompiler(remotes: remotes)
        let base = URIReference(baseURI).withoutFragment
        root = try compiler.compileDocument(schema, uri: base, isRoot: true)
        try compiler.resolvePending()
        index = compiler.index
        self.limits = limits
    }

    /// Parses and compiles schema JSON.
    public convenience init(json bytes: [UInt8], baseURI: String = "urn:sluice:schema", remotes: [String: JSONValue] = [:]) throws(SchemaError) {
        guard let value = JSONValue.parse(bytes) else { throw SchemaError("the schema is not JSON") }
        try self.init(value, baseURI: baseURI, remotes: remotes)
    }

    /// Every violation of `instance` (at most `limits.maxViolations`); empty when it is valid.
    public func validate(_ instance: JSONValue) -> [SchemaViolation] {
        // Most instances are valid: the quick check, which stops at the first failure and builds no paths, first.
        if isValid(instance) { return [] }
        var evaluation = Evaluation(schema: self, collecting: true)
        _ = evaluation.check(root, instance, depth: 0)
        return evaluation.violations
    }

    /// Whether `instance` is valid (stops at the first failure).
    public func isValid(_ instance: JSONValue) -> Bool {
        var evaluation = Evaluation(schema: self, collecting: false)
        return evaluation.check(root, instance, depth: 0)
    }

    /// The draft-07 meta-schema, compiled: `JSONSchema.metaSchema.validate(schema)` says what is wrong with a schema.
    public static let metaSchema: JSONSchema = {
        // The meta-schema is a constant of this module, so compiling it cannot fail.
        try! JSONSchema(MetaSchema.draft07, baseURI: MetaSchema.draft07URI)
    }()
}

/// A compiled subschema. Written only while its schema compiles, then read-only: safe to share between threads
/// (NSRegularExpression matching is thread-safe).
final class Node: @unchecked Sendable {
    /// Where it is, for violations: `#/properties/a` in the schema itself, `URI#/…` in another document.
    let location: String
    var always: Bool?
    var ref: String?
    var types: [String]?
    var enumValues: [JSONValue]?
    var constValue: JSONValue?
    var hasConst = false
    var multipleOf: Double?
    var maximum: Double?
    var exclusiveMaximum: Double?
    var minimum: Double?
    var exclusiveMinimum: Double?
    var maxLength: Int?
    var minLength: Int?
    var pattern: Pattern?
    var format: String?
    var items: Node?
    var itemList: [Node]?
    var additionalItems: Node?
    var maxItems: Int?
    var minItems: Int?
    var uniqueItems = false
    var contains: Node?
    var maxProperties: Int?
    var minProperties: Int?
    var required: [String] = []
    var properties: [String: Node] = [:]
    /// `properties` and `required` in one table, so that a member costs one lookup; and how many names are required.
    var members: [String: (node: Node?, required: Bool, slot: Int)] = [:]
    /// The same members in slot order, with their names' UTF-8 bytes (StreamingCheck compares raw keys with them).
    var memberList: [(key: [UInt8], name: String, node: Node?, required: Bool)] = []
    var requiredCount = 0
    var patternProperties: [(pattern: Pattern, node: Node)] = []
    var additionalProperties: Node?
    var dependencies: [(name: String, required: [String]?, node: Node?)] = []
    var propertyNames: Node?
    var ifNode: Node?
    var thenNode: Node?
    var elseNode: Node?
    var allOf: [Node] = []
    var anyOf: [Node] = []
    var oneOf: [Node] = []
    var not: Node?

    init(location: String) { self.location = location }
}

/// Builds ``Node``s from schema JSON, indexing each under every URI that names it.
struct SchemaCompiler {
    var index: [String: Node] = [:]
    var remotes: [String: JSONValue]
    /// Documents compiled, by URI (so a remote is compiled once, and pointers into unvisited parts can be resolved).
    var documents: [String: JSONValue] = [:]
    var rootURI = ""
    /// `$ref`s to check once everything is compiled: (target, where the `$ref` is).
    var pending: [(String, String)] = []

    init(remotes: [String: JSONValue]) {
        var all = remotes
        all[MetaSchema.draft07URI] = all[MetaSchema.draft07URI] ?? MetaSchema.draft07
        self.remotes = Dictionary(all.map { (Self.key(URIReference($0.key).withoutFragment), $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// The index key of a URI: no empty fragment, a JSON-pointer fragment percent-decoded.
    static func key(_ uri: URIReference) -> String {
        var copy = uri
        if let fragment = copy.fragment {
            if fragment.isEmpty {
                copy.fragment = nil
            } else if fragment.hasPrefix("/") {
                copy.fragment = fragment.removingPercentEncoding ?? fragment
            }
        }
        return copy.text
    }

    static func escape(_ token: String) -> String {
        token.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }

    mutating func compileDocument(_ value: JSONValue, uri: URIReference, isRoot: Bool = false) throws(SchemaError) -> Node {
        let key = Self.key(uri)
        if isRoot { rootURI = key }
        documents[key] = value
        return try compile(value, base: uri, resources: [(key, "")], pointer: "")
    }

    private func location(_ resources: [(uri: String, pointer: String)], _ pointer: String) -> String {
        resources[0].uri == rootURI ? "#" + pointer : resources[0].uri + "#" + pointer
    }

    private mutating func register(_ node: Node, _ resources: [(uri: String, pointer: String)], _ pointer: String) {
        for (uri, at) in resources {
            let relative = String(pointer.dropFirst(at.count))
            let key = relative.isEmpty ? uri : uri + "#" + relative
            if index[key] == nil { index[key] = node }
        }
    }

    mutating func compile(_ value: JSONValue, base: URIReference, resources: [(uri: String, pointer: String)], pointer: String) throws(SchemaError) -> Node {
        var base = base
        var resources = resources
        let here = location(resources, pointer)
        let node = Node(location: here)
        if case .bool(let flag) = value {
            node.always = flag
            register(node, resources, pointer)
            return node
        }
        guard case .object(let object) = value else {
            throw SchemaError("\(here): a schema must be an object or a boolean")
        }
        func fail(_ keyword: String, _ what: String) -> SchemaError {
            SchemaError("\(here)/\(Self.escape(keyword)): \(what)")
        }
        if let refValue = object["$ref"] {
            // In draft-07 a $ref's siblings are ignored, $id included.
            guard case .string(let ref) = refValue else { throw fail("$ref", "must be a string (a URI reference)") }
            let target = Self.key(base.resolve(URIReference(ref)))
            node.ref = target
            pending.append((target, here))
            register(node, resources, pointer)
            return node
        }
        if let idValue = object["$id"] {
            guard case .string(let id) = idValue else { throw fail("$id", "must be a string (a URI reference)") }
            let resolved = base.resolve(URIReference(id))
            let document = resolved.withoutFragment
            if Self.key(document) != Self.key(base.withoutFragment) {
                base = document
                resources.append((Self.key(document), pointer))
            }
            if let anchor = resolved.fragment, !anchor.isEmpty, !anchor.hasPrefix("/") {
                let key = Self.key(document) + "#" + anchor
                if index[key] == nil { index[key] = node }
            }
        }
        register(node, resources, pointer)

        func sub(_ keyword: String, _ value: JSONValue, _ extra: String = "") throws(SchemaError) -> Node {
            try compile(value, base: base, resources: resources, pointer: pointer + "/" + Self.escape(keyword) + extra)
        }
        func number(_ keyword: String) throws(SchemaError) -> Double? {
            guard let value = object[keyword] else { return nil }
            guard case .number(let number) = value else { throw fail(keyword, "must be a number") }
            return number
        }
        func count(_ keyword: String) throws(SchemaError) -> Int? {
            guard let value = object[keyword] else { return nil }
            guard case .number(let number) = value, number >= 0, number == number.rounded(), number < 1e15 else {
                throw fail(keyword, "must be a non-negative integer")
            }
            return Int(number)
        }
        func regex(_ keyword: String, _ source: String) throws(SchemaError) -> Pattern {
            do {
                return try Pattern(source)
            } catch {
                throw fail(keyword, "'\(source)' is not a regular expression")
            }
        }
        func schemas(_ keyword: String) throws(SchemaError) -> [Node] {
            guard let value = object[keyword] else { return [] }
            guard case .array(let list) = value, !list.isEmpty else { throw fail(keyword, "must be a non-empty array of schemas") }
            var nodes: [Node] = []
            for (offset, item) in list.enumerated() { nodes.append(try sub(keyword, item, "/\(offset)")) }
            return nodes
        }
        func schemaMap(_ keyword: String) throws(SchemaError) -> [(String, Node)] {
            guard let value = object[keyword] else { return [] }
            guard case .object(let map) = value else { throw fail(keyword, "must be an object of schemas") }
            var out: [(String, Node)] = []
            for (name, item) in map.sorted(by: { $0.key < $1.key }) { out.append((name, try sub(keyword, item, "/" + Self.escape(name)))) }
            return out
        }
        func strings(_ keyword: String, _ value: JSONValue) throws(SchemaError) -> [String] {
            guard case .array(let list) = value else { throw fail(keyword, "must be an array of strings") }
            var out: [String] = []
            for item in list {
                guard case .string(let text) = item else { throw fail(keyword, "must be an array of strings") }
                out.append(text)
            }
            return out
        }

        if let value = object["type"] {
            let known: Set<String> = ["null", "boolean", "object", "array", "number", "string", "integer"]
            let names: [String]
            if case .string(let name) = value { names = [name] } else { names = try strings("type", value) }
            for name in names where !known.contains(name) {
                throw fail("type", "'\(name)' is not a type: use null, boolean, object, array, number, string or integer")
            }
            node.types = names
        }
        if let value = object["enum"] {
            guard case .array(let list) = value else { throw fail("enum", "must be an array") }
            node.enumValues = list
        }
        if let value = object["const"] {
            node.constValue = value
            node.hasConst = true
        }
        node.multipleOf = try number("multipleOf")
        if let divisor = node.multipleOf, divisor <= 0 { throw fail("multipleOf", "must be greater than 0") }
        node.maximum = try number("maximum")
        node.exclusiveMaximum = try number("exclusiveMaximum")
        node.minimum = try number("minimum")
        node.exclusiveMinimum = try number("exclusiveMinimum")
        node.maxLength = try count("maxLength")
        node.minLength = try count("minLength")
        if let value = object["pattern"] {
            guard case .string(let source) = value else { throw fail("pattern", "must be a string") }
            node.pattern = try regex("pattern", source)
        }
        if case .string(let format)? = object["format"] { node.format = format }
        if let value = object["items"] {
            if case .array(let list) = value {
                var nodes: [Node] = []
                for (offset, item) in list.enumerated() { nodes.append(try sub("items", item, "/\(offset)")) }
                node.itemList = nodes
            } else {
                node.items = try sub("items", value)
            }
        }
        if let value = object["additionalItems"] { node.additionalItems = try sub("additionalItems", value) }
        node.maxItems = try count("maxItems")
        node.minItems = try count("minItems")
        if let value = object["uniqueItems"] {
            guard case .bool(let flag) = value else { throw fail("uniqueItems", "must be true or false") }
            node.uniqueItems = flag
        }
        if let value = object["contains"] { node.contains = try sub("contains", value) }
        node.maxProperties = try count("maxProperties")
        node.minProperties = try count("minProperties")
        if let value = object["required"] { node.required = try strings("required", value) }
        node.properties = Dictionary(try schemaMap("properties"), uniquingKeysWith: { first, _ in first })
        node.members = node.properties.mapValues { ($0, false, 0) }
        for name in node.required { node.members[name, default: (nil, false, 0)].required = true }
        // Each named member's own slot, for telling a repeated name apart without keeping the names (StreamingCheck).
        for (slot, name) in node.members.keys.sorted().enumerated() { node.members[name]!.slot = slot }
        node.memberList = node.members.keys.sorted().map { (Array($0.utf8), $0, node.members[$0]!.node, node.members[$0]!.required) }
        node.requiredCount = Set(node.required).count
        if case .object(let map)? = object["patternProperties"] {
            for (source, item) in map.sorted(by: { $0.key < $1.key }) {
                node.patternProperties.append((try regex("patternProperties", source), try sub("patternProperties", item, "/" + Self.escape(source))))
            }
        } else if object["patternProperties"] != nil {
            throw fail("patternProperties", "must be an object of schemas")
        }
        if let value = object["additionalProperties"] { node.additionalProperties = try sub("additionalProperties", value) }
        if let value = object["dependencies"] {
            guard case .object(let map) = value else { throw fail("dependencies", "must be an object") }
            for (name, item) in map.sorted(by: { $0.key < $1.key }) {
                if case .array = item {
                    node.dependencies.append((name, try strings("dependencies", item), nil))
                } else {
                    node.dependencies.append((name, nil, try sub("dependencies", item, "/" + Self.escape(name))))
                }
            }
        }
        if let value = object["propertyNames"] { node.propertyNames = try sub("propertyNames", value) }
        if let value = object["if"] { node.ifNode = try sub("if", value) }
        if let value = object["then"] { node.thenNode = try sub("then", value) }
        if let value = object["else"] { node.elseNode = try sub("else", value) }
        node.allOf = try schemas("allOf")
        node.anyOf = try schemas("anyOf")
        node.oneOf = try schemas("oneOf")
        if let value = object["not"] { node.not = try sub("not", value) }
        // Definitions are not checked, but they are where $refs point.
        _ = try schemaMap("definitions")
        return node
    }

    /// Makes sure every `$ref` resolves: compiling the remote documents they name, and parts of documents that are
    /// not themselves schema locations (a pointer into an unknown keyword).
    mutating func resolvePending() throws(SchemaError) {
        while let (target, from) = pending.popLast() {
            if index[target] != nil { continue }
            let uri = URIReference(target)
            let document = Self.key(uri.withoutFragment)
            if documents[document] == nil, let remote = remotes[document] {
                _ = try compileDocument(remote, uri: uri.withoutFragment)
                if index[target] != nil { continue }
            }
            if let raw = documents[document], let fragment = uri.fragment, fragment.hasPrefix("/"), let value = Self.resolvePointer(fragment, in: raw) {
                _ = try compile(value, base: uri.withoutFragment, resources: [(document, "")], pointer: fragment)
                if index[target] != nil { continue }
            }
            throw SchemaError("\(from)/$ref: '\(target)' cannot be resolved: it is not in this schema\(documents[document] == nil ? " and no known document has the URI \(document)" : "")")
        }
    }

    static func resolvePointer(_ pointer: String, in value: JSONValue) -> JSONValue? {
        let tokens = pointer.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        return value.lookup(tokens.map { Substring($0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")) })
    }
}
