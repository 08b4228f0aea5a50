import Foundation

/// One validation run: the instance path as it descends, and the violations found. When not `collecting`, the first
/// failure ends the run (what `isValid`, `anyOf`, `oneOf`, `not`, `if` and `contains` need).
struct Evaluation {
    let schema: JSONSchema
    let collecting: Bool
    var path: [String] = []
    var violations: [SchemaViolation] = []

    init(schema: JSONSchema, collecting: Bool) {
        self.schema = schema
        self.collecting = collecting
    }

    var full: Bool { violations.count >= schema.limits.maxViolations }

    /// Records a violation; returns whether to go on checking (only while collecting, and not yet full).
    mutating func report(_ node: Node, _ keyword: String, _ message: @autoclosure () -> String) -> Bool {
        guard collecting else { return false }
        if !full {
            let pointer = path.map { "/" + SchemaCompiler.escape($0) }.joined()
            violations.append(SchemaViolation(instancePath: pointer, keyword: keyword, schemaPath: node.location + "/" + SchemaCompiler.escape(keyword), message: message()))
        }
        return !full
    }

    /// Whether `value` is valid under `node` without recording anything (for the applicators that only ask).
    func probe(_ node: Node, _ value: JSONValue, depth: Int) -> Bool {
        var quiet = Evaluation(schema: schema, collecting: false)
        return quiet.check(node, value, depth: depth)
    }

    mutating func descend(_ token: @autoclosure () -> String, _ node: Node, _ value: JSONValue, depth: Int) -> Bool {
        // The path is only needed to report; a check that only asks does not build it.
        guard collecting else { return check(node, value, depth: depth) }
        path.append(token())
        defer { path.removeLast() }
        return check(node, value, depth: depth)
    }

    // The keyword checks; each failure reports and, unless collecting, returns false at once.
    mutating func check(_ node: Node, _ value: JSONValue, depth: Int) -> Bool {
        if depth > schema.limits.maxDepth {
            let limit = schema.limits.maxDepth
            _ = report(node, "$ref", "the schema nests more than \(limit) levels deep here (a $ref cycle that never reaches a value?)")
            return false
        }
        if let always = node.always {
            if !always { _ = report(node, "false", "no value is allowed here (the schema is false)") }
            return always
        }
        if let ref = node.ref {
            // Compilation checked that every $ref resolves.
            guard let target = schema.index[ref] else { return report(node, "$ref", "'\(ref)' does not resolve") && false }
            return check(target, value, depth: depth + 1)
        }
        var valid = true
        func failed(_ evaluation: inout Evaluation, _ keyword: String, _ message: @autoclosure () -> String) -> Bool {
            valid = false
            return evaluation.report(node, keyword, message())
        }

        if let types = node.types, !types.contains(where: { Self.has(type: $0, value) }) {
            guard failed(&self, "type", "must be \(types.joined(separator: " or ")), not \(Self.typeName(value))") else { return false }
        }
        if let values = node.enumValues, !values.contains(where: { Self.same($0, value) }) {
            guard failed(&self, "enum", "must be one of \(Self.short(values))") else { return false }
        }
        if node.hasConst, let constant = node.constValue, !Self.same(constant, value) {
            guard failed(&self, "const", "must be \(Self.short([constant]))") else { return false }
        }

        switch value {
        case .number(let number):
            if let divisor = node.multipleOf {
                let quotient = number / divisor
                if !quotient.isFinite || abs(quotient - quotient.rounded()) > 1e-9 * max(1, abs(quotient)) {
                    guard failed(&self, "multipleOf", "must be a multiple of \(Self.format(divisor))") else { return false }
                }
            }
            if let limit = node.maximum, number > limit {
                guard failed(&self, "maximum", "must be at most \(Self.format(limit))") else { return false }
            }
            if let limit = node.exclusiveMaximum, number >= limit {
                guard failed(&self, "exclusiveMaximum", "must be less than \(Self.format(limit))") else { return false }
            }
            if let limit = node.minimum, number < limit {
                guard failed(&self, "minimum", "must be at least \(Self.format(limit))") else { return false }
            }
            if let limit = node.exclusiveMinimum, number <= limit {
                guard failed(&self, "exclusiveMinimum", "must be greater than \(Self.format(limit))") else { return false }
            }
        case .string(let text):
            if node.maxLength != nil || node.minLength != nil {
                let length = text.unicodeScalars.count
                if let limit = node.maxLength, length > limit {
                    guard failed(&self, "maxLength", "must be at most \(limit) characters long, not \(length)") else { return false }
                }
                if let limit = node.minLength, length < limit {
                    guard failed(&self, "minLength", "must be at least \(limit) characters long, not \(length)") else { return false }
                }
            }
            if let pattern = node.pattern, !pattern.matches(text) {
                guard failed(&self, "pattern", "must match the pattern \(pattern.source)") else { return false }
            }
            if let format = node.format, let check = SchemaFormat.checks[format], !check(text) {
                guard failed(&self, "format", "must be a valid \(format)") else { return false }
            }
        case .array(let items):
            if let limit = node.maxItems, items.count > limit {
                guard failed(&self, "maxItems", "must have at most \(limit) items, not \(items.count)") else { return false }
            }
            if let limit = node.minItems, items.count < limit {
                guard failed(&self, "minItems", "must have at least \(limit) items, not \(items.count)") else { return false }
            }
            if node.uniqueItems, !Self.allDistinct(items) {
                guard failed(&self, "uniqueItems", "must not have two equal items") else { return false }
            }
            if let each = node.items {
                for (offset, item) in items.enumerated() where !descend(String(offset), each, item, depth: depth + 1) {
                    valid = false
                    if !collecting || full { return false }
                }
            } else if let list = node.itemList {
                for (offset, item) in items.enumerated() {
                    let itemNode = offset < list.count ? list[offset] : node.additionalItems
                    guard let itemNode else { break }
                    if !descend(String(offset), itemNode, item, depth: depth + 1) {
                        valid = false
                        if !collecting || full { return false }
                    }
                }
            }
            if let contains = node.contains, !items.contains(where: { probe(contains, $0, depth: depth + 1) }) {
                guard failed(&self, "contains", "must contain an item valid under the contains schema") else { return false }
            }
        case .object(let object):
            if let limit = node.maxProperties, object.count > limit {
                guard failed(&self, "maxProperties", "must have at most \(limit) properties, not \(object.count)") else { return false }
            }
            if let limit = node.minProperties, object.count < limit {
                guard failed(&self, "minProperties", "must have at least \(limit) properties, not \(object.count)") else { return false }
            }
            // Reporting, the missing names come first; only asking, they are counted on the way (one lookup a member).
            if collecting {
                for name in node.required where object[name] == nil {
                    guard failed(&self, "required", "must have the property '\(name)'") else { return false }
                }
            }
            var requiredFound = 0
            for (name, member) in object {
                var matched = false
                if let rule = node.members[name] {
                    if rule.required { requiredFound += 1 }
                    if let propertyNode = rule.node {
                        matched = true
                        if !descend(name, propertyNode, member, depth: depth + 1) {
                            valid = false
                            if !collecting || full { return false }
                        }
                    }
                }
                for (pattern, patternNode) in node.patternProperties where pattern.matches(name) {
                    matched = true
                    if !descend(name, patternNode, member, depth: depth + 1) {
                        valid = false
                        if !collecting || full { return false }
                    }
                }
                if !matched, let additional = node.additionalProperties {
                    if additional.always == false {
                        path.append(name)
                        let goOn = failed(&self, "additionalProperties", "'\(name)' is not allowed (no additional properties)")
                        path.removeLast()
                        guard goOn else { return false }
                    } else if !descend(name, additional, member, depth: depth + 1) {
                        valid = false
                        if !collecting || full { return false }
                    }
                }
                if let names = node.propertyNames, !probe(names, .string(name), depth: depth + 1) {
                    guard failed(&self, "propertyNames", "the property name '\(name)' is not valid under propertyNames") else { return false }
                }
            }
            if !collecting && requiredFound < node.requiredCount { return false }
            for (name, required, dependency) in node.dependencies where object[name] != nil {
                if let required {
                    for other in required where object[other] == nil {
                        guard failed(&self, "dependencies", "must have the property '\(other)' because it has '\(name)'") else { return false }
                    }
                } else if let dependency, !check(dependency, value, depth: depth + 1) {
                    valid = false
                    if !collecting || full { return false }
                }
            }
        default:
            break
        }

        for part in node.allOf where !check(part, value, depth: depth + 1) {
            valid = false
            if !collecting || full { return false }
        }
        if !node.anyOf.isEmpty, !node.anyOf.contains(where: { probe($0, value, depth: depth + 1) }) {
            guard failed(&self, "anyOf", "must be valid under at least one of the \(node.anyOf.count) anyOf schemas") else { return false }
        }
        if !node.oneOf.isEmpty {
            var matching = 0
            for part in node.oneOf where probe(part, value, depth: depth + 1) {
                matching += 1
                if matching > 1 { break }
            }
            if matching != 1 {
                guard failed(&self, "oneOf", matching == 0 ? "must be valid under exactly one of the \(node.oneOf.count) oneOf schemas, and is valid under none"
                    : "must be valid under exactly one of the \(node.oneOf.count) oneOf schemas, and is valid under more") else { return false }
            }
        }
        if let not = node.not, probe(not, value, depth: depth + 1) {
            guard failed(&self, "not", "must not be valid under the not schema") else { return false }
        }
        if let condition = node.ifNode {
            let branch = probe(condition, value, depth: depth + 1) ? node.thenNode : node.elseNode
            if let branch, !check(branch, value, depth: depth + 1) {
                valid = false
                if !collecting || full { return false }
            }
        }
        return valid
    }

    /// JSON equality: numbers by value (1 equals 1.0), strings by code point (not Swift's canonical equivalence),
    /// objects regardless of member order.
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { key, value in
                // Keys too are compared by code point.
                if let found = y.index(forKey: key), y[found].key.unicodeScalars.elementsEqual(key.unicodeScalars) {
                    return same(value, y[found].value)
                }
                guard let other = y.first(where: { $0.key.unicodeScalars.elementsEqual(key.unicodeScalars) }) else { return false }
                return same(value, other.value)
            }
        default: return a == b
        }
    }

    /// Whether no two items are equal: grouped by hash (Swift's equality, which is coarser than JSON's), then compared
    /// exactly within a group, so a large array costs linear time.
    static func allDistinct(_ items: [JSONValue]) -> Bool {
        var groups: [JSONValue: [JSONValue]] = [:]
        for item in items {
            if let group = groups[item], group.contains(where: { same($0, item) }) { return false }
            groups[item, default: []].append(item)
        }
        return true
    }

    static func has(type: String, _ value: JSONValue) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("object", .object), ("array", .array), ("number", .number), ("string", .string): return true
        case ("integer", .number(let number)): return number.isFinite && number == number.rounded()
        default: return false
        }
    }

    static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .number(let number): number.isFinite && number == number.rounded() ? "an integer" : "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    static func format(_ number: Double) -> String {
        Int64(exactly: number).map(String.init) ?? String(number)
    }

    /// A few values as JSON, for messages.
    static func short(_ values: [JSONValue]) -> String {
        let text = values.prefix(8).map { String(decoding: $0.bytes, as: UTF8.self) }.joined(separator: ", ")
        let clipped = text.count > 200 ? String(text.prefix(200)) + "…" : text
        return values.count > 8 ? clipped + ", …" : clipped
    }
}
