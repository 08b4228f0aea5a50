/// One step of an upcaster: a change to an event's data, addressed by JSON pointers (RFC 6901) into the data.
///
/// Operations never fail on an event: one whose source is absent does nothing (an old event may lack an optional
/// field), and a destination's missing parent objects are created. Whether the result is a valid event of the
/// target version is for the target's schema to say, and the agent checks it.
public enum UpcastOperation: Sendable, Equatable {
    /// Sets the value at `path` unless the data already has one there (the seed's "fill in the defaults").
    case setDefault(path: [String], value: JSONValue)
    /// Sets the value at `path`, replacing what is there.
    case set(path: [String], value: JSONValue)
    case remove(path: [String])
    /// Renames the member at `path` to `name`, in the same object.
    case rename(path: [String], name: String)
    case copy(from: [String], path: [String])
    /// Moves a value, e.g. into a nested object (`/city` → `/address/city`) or out of one.
    case move(from: [String], path: [String])

    /// The operation names of the declaration format (`"op"`).
    public static let names = ["default", "set", "remove", "rename", "copy", "move"]

    func apply(to data: inout JSONValue) {
        switch self {
        case .setDefault(let path, let value):
            if data.value(at: path) == nil { data.set(value, at: path) }
        case .set(let path, let value):
            data.set(value, at: path)
        case .remove(let path):
            _ = data.remove(at: path)
        case .rename(let path, let name):
            guard let value = data.remove(at: path) else { return }
            data.set(value, at: path.dropLast() + [name])
        case .copy(let from, let path):
            if let value = data.value(at: from) { data.set(value, at: path) }
        case .move(let from, let path):
            if let value = data.remove(at: from) { data.set(value, at: path) }
        }
    }
}

/// Changes events' data from one version of their type to a later one: the declared operations, in order.
public struct Upcaster: Sendable, Equatable {
    public var from: String
    public var to: String
    public var operations: [UpcastOperation]
    /// The declaration as written (served back by GET).
    public var source: JSONValue

    public init(from: String, to: String, operations: [UpcastOperation], source: JSONValue = .null) {
        self.from = from
        self.to = to
        self.operations = operations
        self.source = source
    }

    public func apply(_ data: JSONValue) -> JSONValue {
        var data = data
        for operation in operations { operation.apply(to: &data) }
        return data
    }

    /// Parses one declaration, `{"from": "1.0", "to": "1.1", "operations": [{"op": "default", "path": "/x", "value": 1}, …]}`.
    /// `at` names it in errors (`upcasters[0]`).
    public static func parse(_ value: JSONValue, at: String) throws(SchemaError) -> Upcaster {
        guard case .object(let object) = value else { throw SchemaError("\(at): an upcaster is an object with from, to and operations") }
        for key in object.keys.sorted() where !["from", "to", "operations", "description"].contains(key) {
            throw SchemaError("\(at): unknown field '\(key)'; an upcaster has from, to, operations and an optional description")
        }
        guard case .string(let from)? = object["from"], !from.isEmpty else { throw SchemaError("\(at).from: the version it reads (a string) is required") }
        guard case .string(let to)? = object["to"], !to.isEmpty else { throw SchemaError("\(at).to: the version it writes (a string) is required") }
        guard case .array(let list)? = object["operations"] else {
            throw SchemaError("\(at).operations: a list of operations is required, e.g. [{\"op\": \"default\", \"path\": \"/consentGiven\", \"value\": true}]")
        }
        var operations: [UpcastOperation] = []
        for (index, item) in list.enumerated() {
            operations.append(try parseOperation(item, at: "\(at).operations[\(index)]"))
        }
        return Upcaster(from: from, to: to, operations: operations, source: value)
    }

    static func parseOperation(_ value: JSONValue, at: String) throws(SchemaError) -> UpcastOperation {
        guard case .object(let object) = value, case .string(let op)? = object["op"] else {
            throw SchemaError("\(at): an operation is an object with \"op\" (one of \(UpcastOperation.names.joined(separator: ", ")))")
        }
        let fields: [String: Set<String>] = ["default": ["path", "value"], "set": ["path", "value"], "remove": ["path"], "rename": ["path", "to"],
                                             "copy": ["from", "path"], "move": ["from", "path"]]
        guard let allowed = fields[op] else {
            throw SchemaError("\(at).op: unknown operation '\(op)'; use one of \(UpcastOperation.names.joined(separator: ", "))")
        }
        for key in object.keys.sorted() where key != "op" && !allowed.contains(key) {
            throw SchemaError("\(at): '\(op)' takes \(allowed.sorted().joined(separator: " and ")), not '\(key)'")
        }
        for key in allowed.sorted() where object[key] == nil {
            throw SchemaError("\(at): '\(op)' needs '\(key)'")
        }
        func pointer(_ key: String) throws(SchemaError) -> [String] {
            guard case .string(let text)? = object[key], let tokens = JSONPointer.tokens(text), !tokens.isEmpty else {
                throw SchemaError("\(at).\(key): a JSON pointer into the data below its top, such as /consentGiven or /address/city")
            }
            return tokens
        }
        switch op {
        case "default": return .setDefault(path: try pointer("path"), value: object["value"]!)
        case "set": return .set(path: try pointer("path"), value: object["value"]!)
        case "remove": return .remove(path: try pointer("path"))
        case "rename":
            guard case .string(let name)? = object["to"], !name.isEmpty else { throw SchemaError("\(at).to: the new member name (a string, not a pointer)") }
            return .rename(path: try pointer("path"), name: name)
        case "copy": return .copy(from: try pointer("from"), path: try pointer("path"))
        default:
            let from = try pointer("from"), path = try pointer("path")
            guard !path.starts(with: from) else { throw SchemaError("\(at): cannot move \(JSONPointer.text(from)) into itself") }
            return .move(from: from, path: path)
        }
    }
}

/// JSON pointers (RFC 6901) as token lists.
public enum JSONPointer {
    /// The tokens of a pointer (`/a~1b/c` → ["a/b", "c"]); nil when it is not one. "" is the whole document.
    public static func tokens(_ text: String) -> [String]? {
        if text.isEmpty { return [] }
        guard text.hasPrefix("/") else { return nil }
        var out: [String] = []
        for part in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            var token = ""
            var escape = false
            for character in part {
                if escape {
                    switch character {
                    case "0": token.append("~")
                    case "1": token.append("/")
                    default: return nil
                    }
                    escape = false
                } else if character == "~" {
                    escape = true
                } else {
                    token.append(character)
                }
            }
            if escape { return nil }
            out.append(token)
        }
        return out
    }

    public static func text(_ tokens: some Sequence<String>) -> String {
        tokens.map { "/" + $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }.joined()
    }
}

extension JSONValue {
    /// The value at a pointer's tokens (object members, and array elements by index), or nil.
    public func value(at path: some Collection<String>) -> JSONValue? {
        var current = self
        for token in path {
            switch current {
            case .object(let object):
                guard let next = object[token] else { return nil }
                current = next
            case .array(let array):
                guard let index = Int(token), array.indices.contains(index) else { return nil }
                current = array[index]
            default:
                return nil
            }
        }
        return current
    }

    /// Sets the value at `path`, creating missing objects on the way (a null or absent parent becomes an object).
    /// Does nothing when the way passes through a string, number or boolean, or an array index that does not exist.
    mutating func set(_ value: JSONValue, at path: some Collection<String>) {
        guard let token = path.first else {
            self = value
            return
        }
        switch self {
        case .object(var object):
            self = .null  // keeps `object` uniquely referenced while it changes
            var child = object[token] ?? .null
            child.set(value, at: path.dropFirst())
            object[token] = child
            self = .object(object)
        case .array(var array):
            guard let index = Int(token), array.indices.contains(index) else { return }
            self = .null
            array[index].set(value, at: path.dropFirst())
            self = .array(array)
        case .null:
            var object: [String: JSONValue] = [:]
            var child = JSONValue.null
            child.set(value, at: path.dropFirst())
            object[token] = child
            self = .object(object)
        default:
            return
        }
    }

    /// Removes the value at `path` and returns it; nil when there is none.
    mutating func remove(at path: some Collection<String>) -> JSONValue? {
        guard let token = path.first else { return nil }
        let rest = path.dropFirst()
        switch self {
        case .object(var object):
            guard object[token] != nil else { return nil }
            self = .null
            defer { self = .object(object) }
            if rest.isEmpty { return object.removeValue(forKey: token) }
            return object[token]!.remove(at: rest)
        case .array(var array):
            guard let index = Int(token), array.indices.contains(index) else { return nil }
            self = .null
            defer { self = .array(array) }
            if rest.isEmpty { return array.remove(at: index) }
            return array[index].remove(at: rest)
        default:
            return nil
        }
    }
}

/// The upcasters of one type: the chain from any version to a later one, by the fewest steps.
public struct UpcastChains: Sendable, Equatable {
    public let upcasters: [Upcaster]

    public init(_ upcasters: [Upcaster]) { self.upcasters = upcasters }

    /// The upcasters that take data of `from` to `to`, in order: [] when they are the same version, nil when no
    /// chain leads there (there is no downcasting).
    public func path(from: String, to: String) -> [Upcaster]? {
        if from == to { return [] }
        var previous: [String: Upcaster] = [:]
        var queue = [from]
        var seen: Set<String> = [from]
        var head = 0
        while head < queue.count {
            let version = queue[head]
            head += 1
            for step in upcasters where step.from == version && !seen.contains(step.to) {
                seen.insert(step.to)
                previous[step.to] = step
                if step.to == to {
                    var chain: [Upcaster] = [step]
                    while let before = previous[chain[0].from], chain[0].from != from { chain.insert(before, at: 0) }
                    return chain
                }
                queue.append(step.to)
            }
        }
        return nil
    }
}
