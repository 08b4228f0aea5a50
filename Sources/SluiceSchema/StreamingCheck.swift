/// Whether JSON bytes are valid under a schema, decided on the bytes: objects and arrays are walked in place (no
/// tree of values is built), scalars are read as ``JSONValue``s and checked by ``Evaluation`` itself, and
/// applicators (`allOf`, `anyOf`, `oneOf`, `not`, `if`) read the same bytes again under each of their schemas.
///
/// It only ever answers `true` when ``JSONSchema/isValid(_:)`` would for the parsed bytes; for anything it does not
/// handle the same way — a repeated member name (the parser keeps the last), `uniqueItems`, `contains`,
/// `propertyNames`, `dependencies`, `enum` or `const` on an array or object, bytes that are not one JSON value — it
/// answers nil, and the caller parses and validates as before. `false` means invalid; the caller then validates the
/// parsed value to say why.
struct StreamingCheck {
    let schema: JSONSchema
    private var parser: JSONParser

    init(schema: JSONSchema, bytes: UnsafeBufferPointer<UInt8>) {
        self.schema = schema
        self.parser = JSONParser(bytes)
    }

    /// The answer for the whole input: exactly one JSON value (whitespace around it allowed) valid under the root.
    mutating func run() -> Bool? {
        guard let valid = check(schema.root, depth: 0, nesting: 0) else { return nil }
        guard valid else { return false }
        parser.skipWhitespace()
        return parser.atEnd ? true : nil
    }

    /// Checks the value at the cursor under `node` and moves past it when the answer is `true`. `false` and nil end
    /// the whole check, so the cursor is then left where it is.
    private mutating func check(_ node: Node, depth: Int, nesting: Int) -> Bool? {
        if depth > schema.limits.maxDepth { return false }
        guard nesting < JSONParser.maxDepth else { return nil }
        if let always = node.always {
            guard always else { return false }
            return parser.value(depth: nesting) == nil ? nil : true
        }
        if let ref = node.ref {
            guard let target = schema.index[ref] else { return false }
            return check(target, depth: depth + 1, nesting: nesting)
        }
        parser.skipWhitespace()
        guard let first = parser.current else { return nil }
        guard first == 0x7B || first == 0x5B else {
            // A scalar: read it, and let the evaluator apply every keyword to it, applicators included.
            guard let value = parser.value(depth: nesting) else { return nil }
            var evaluation = Evaluation(schema: schema, collecting: false)
            return evaluation.check(node, value, depth: depth)
        }
        let isObject = first == 0x7B
        if let types = node.types, !types.contains(isObject ? "object" : "array") { return false }
        if node.enumValues != nil || node.hasConst || node.uniqueItems || node.contains != nil || node.propertyNames != nil
            || !node.dependencies.isEmpty { return nil }
        let start = parser.index
        guard let valid = isObject ? object(node, depth: depth, nesting: nesting) : array(node, depth: depth, nesting: nesting) else { return nil }
        guard valid else { return false }
        let end = parser.index
        // Applicators: the same bytes again under each of their schemas.
        func probe(_ part: Node) -> Bool? {
            parser.index = start
            return check(part, depth: depth + 1, nesting: nesting)
        }
        for part in node.allOf {
            guard let result = probe(part) else { return nil }
            if !result { return false }
        }
        if !node.anyOf.isEmpty {
            var any = false
            for part in node.anyOf {
                guard let result = probe(part) else { return nil }
                if result { any = true; break }
            }
            if !any { return false }
        }
        if !node.oneOf.isEmpty {
            var matching = 0
            for part in node.oneOf {
                guard let result = probe(part) else { return nil }
                if result { matching += 1 }
                if matching > 1 { break }
            }
            if matching != 1 { return false }
        }
        if let not = node.not {
            guard let result = probe(not) else { return nil }
            if result { return false }
        }
        if let condition = node.ifNode {
            guard let holds = probe(condition) else { return nil }
            if let branch = holds ? node.thenNode : node.elseNode {
                guard let result = probe(branch) else { return nil }
                if !result { return false }
            }
        }
        parser.index = end
        return true
    }

    private mutating func object(_ node: Node, depth: Int, nesting: Int) -> Bool? {
        parser.index += 1
        parser.skipWhitespace()
        // A repeated name: the parsed value keeps the last one, so leave it to the tree. Named members are told apart by
        // their slots; other names are kept only when their count matters (minProperties), as a repeat would inflate it.
        var seen = node.members.count <= 64 ? nil : [Bool](repeating: false, count: node.members.count)
        var seenMask: UInt64 = 0
        var others: [String] = []
        var count = 0
        var requiredFound = 0
        if parser.current == 0x7D {
            parser.index += 1
        } else {
            while true {
                parser.skipWhitespace()
                guard parser.current == 0x22 else { return nil }
                // A plain key (ASCII, no escapes: nearly all of them) is compared as bytes with the named members; the
                // others are read as strings. Its String is made only when something needs it.
                var slot: Int?
                var decoded: String?
                var plain: Range<Int>?
                if let raw = parser.plainString() {
                    slot = node.memberList.firstIndex { parser.bytes(raw, equal: $0.key) }
                    plain = raw
                } else {
                    guard let text = parser.string() else { return nil }
                    decoded = text
                    slot = node.members[text]?.slot
                }
                let rule = slot.map { (entry: node.memberList[$0], slot: $0) }
                // The member's name as a String, made only when something needs it.
                func name() -> String { decoded ?? rule?.entry.name ?? parser.text(plain!) }
                count += 1
                parser.skipWhitespace()
                guard parser.current == 0x3A else { return nil }
                parser.index += 1
                parser.skipWhitespace()
                let memberStart = parser.index
                var memberEnd: Int?
                func member(_ under: Node) -> Bool? {
                    parser.index = memberStart
                    guard let result = check(under, depth: depth + 1, nesting: nesting + 1) else { return nil }
                    if result { memberEnd = parser.index }
                    return result
                }
                var matched = false
                if let slot = rule?.slot {
                    if seen == nil {
                        guard seenMask & (1 << UInt64(slot)) == 0 else { return nil }
                        seenMask |= 1 << UInt64(slot)
                    } else {
                        guard !seen![slot] else { return nil }
                        seen![slot] = true
                    }
                } else if node.minProperties != nil {
                    let text = name()
                    if others.contains(text) { return nil }
                    others.append(text)
                }
                if let entry = rule?.entry {
                    if entry.required { requiredFound += 1 }
                    if let propertyNode = entry.node {
                        matched = true
                        guard let result = member(propertyNode) else { return nil }
                        if !result { return false }
                    }
                }
                for (pattern, patternNode) in node.patternProperties {
                    guard pattern.matches(name()) else { continue }
                    matched = true
                    guard let result = member(patternNode) else { return nil }
                    if !result { return false }
                }
                if !matched, let additional = node.additionalProperties {
                    if additional.always == false { return false }
                    guard let result = member(additional) else { return nil }
                    if !result { return false }
                }
                if let memberEnd {
                    parser.index = memberEnd
                } else {
                    // No schema applies to this member: it still has to be JSON.
                    parser.index = memberStart
                    guard parser.value(depth: nesting + 1) != nil else { return nil }
                }
                parser.skipWhitespace()
                guard let next = parser.current else { return nil }
                parser.index += 1
                if next == 0x2C { continue }
                guard next == 0x7D else { return nil }
                break
            }
        }
        // A repeated unnamed member counts twice here: that can only make maxProperties fail (then the tree decides).
        if let limit = node.maxProperties, count > limit { return false }
        if let limit = node.minProperties, count < limit { return false }
        return requiredFound >= node.requiredCount
    }

    private mutating func array(_ node: Node, depth: Int, nesting: Int) -> Bool? {
        parser.index += 1
        parser.skipWhitespace()
        var count = 0
        if parser.current == 0x5D {
            parser.index += 1
        } else {
            while true {
                let itemNode = node.items ?? node.itemList.flatMap { count < $0.count ? $0[count] : node.additionalItems }
                if let itemNode {
                    guard let result = check(itemNode, depth: depth + 1, nesting: nesting + 1) else { return nil }
                    if !result { return false }
                } else {
                    guard parser.value(depth: nesting + 1) != nil else { return nil }
                }
                count += 1
                parser.skipWhitespace()
                guard let next = parser.current else { return nil }
                parser.index += 1
                if next == 0x2C { continue }
                guard next == 0x5D else { return nil }
                break
            }
        }
        if let limit = node.maxItems, count > limit { return false }
        if let limit = node.minItems, count < limit { return false }
        return true
    }
}

extension JSONSchema {
    /// Whether the JSON in `bytes` is valid, decided without building its values when the schema allows (see
    /// ``StreamingCheck``); nil when that cannot be told that way (then parse and ``validate(_:)``).
    public func quickCheck(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool? {
        var check = StreamingCheck(schema: self, bytes: bytes)
        return check.run()
    }

    public func quickCheck(_ bytes: [UInt8]) -> Bool? {
        bytes.withUnsafeBufferPointer { quickCheck($0) }
    }
}
