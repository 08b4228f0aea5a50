import Foundation
import SluiceSchema
import SluiceTestSupport
import Testing

/// The check on the bytes (``JSONSchema/quickCheck(_:)``) against the validator on the parsed value, over the
/// benchmark's order schema and thousands of mutated order events: it never says valid when the validator says
/// invalid (or the bytes are not JSON), and it decides the common case itself.
@Suite("Validation on the bytes")
struct StreamingCheckTests {
    static func orderEvents(_ count: Int) throws -> [[UInt8]] {
        let result = try runProcess("/usr/bin/env", ["python3", packageRoot + "/scripts/bench/events.py", String(count)])
        return try result.stdout.split(separator: "\n").map { line in
            let event = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return Array(try JSONSerialization.data(withJSONObject: event["data"] as Any))
        }
    }

    /// Variants of `bytes` (an object) that break or bend it in the ways events do.
    static func mutations(of bytes: [UInt8], random: inout SystemRandomNumberGenerator) -> [[UInt8]] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return [] }
        var out: [[UInt8]] = []
        func add(_ value: Any) { if let data = try? JSONSerialization.data(withJSONObject: value) { out.append(Array(data)) } }
        let keys = Array(object.keys)
        let replacements: [Any] = [NSNull(), 0, -1.5, 1e300, "", "x", "not-an-email", "2026-13-45T00:00:00Z", "999.1.1.1", true, [] as [Any], [1, "a"], [:] as [String: Any],
                                   ["nested": ["deeper": 1]], String(repeating: "é", count: 300)]
        for key in keys {
            var removed = object
            removed.removeValue(forKey: key)
            add(removed)
            var replaced = object
            replaced[key] = replacements.randomElement(using: &random)!
            add(replaced)
            if let inner = object[key] as? [String: Any], let innerKey = inner.keys.randomElement(using: &random) {
                var changed = inner
                changed[innerKey] = replacements.randomElement(using: &random)!
                var outer = object
                outer[key] = changed
                add(outer)
            }
            if let items = object[key] as? [Any], !items.isEmpty {
                var outer = object
                outer[key] = items + [replacements.randomElement(using: &random)!]
                add(outer)
                outer[key] = [] as [Any]
                add(outer)
            }
        }
        var extra = object
        extra["unexpected"] = 1
        add(extra)
        // Byte-level: a repeated member (the parser keeps the last), whitespace, trailing bytes, truncation, escapes.
        let text = String(decoding: bytes, as: UTF8.self)
        if let firstKey = keys.first, let value = object[firstKey], let valueData = try? JSONSerialization.data(withJSONObject: [firstKey: value]) {
            let member = String(decoding: valueData.dropFirst().dropLast(), as: UTF8.self)
            out.append(Array(("{" + member + "," + text.dropFirst()).utf8))
            out.append(Array((text.dropLast() + ",\"\(firstKey)\": 12345}").utf8))
        }
        out.append(Array((" \n" + text + "\t ").utf8))
        out.append(Array((text + "x").utf8))
        out.append(Array(bytes.prefix(bytes.count / 2)))
        out.append(Array(text.replacingOccurrences(of: "\"a", with: "\"\\u0061").utf8))
        out.append(Array(text.replacingOccurrences(of: ",", with: " , ").utf8))
        return out
    }

    @Test("over the order schema and mutated order events: the same answer as the validator whenever it answers, and it answers for the valid ones")
    func agreesWithValidator() throws {
        let schemaBytes = try #require(FileManager.default.contents(atPath: packageRoot + "/scripts/bench/order-schema.json"))
        let schema = try JSONSchema(json: Array(schemaBytes))
        var random = SystemRandomNumberGenerator()
        var compared = 0, decided = 0, invalid = 0
        var disagreements: [String] = []
        for event in try Self.orderEvents(200) {
            #expect(schema.quickCheck(event) == true, "a valid order event was not decided valid on its bytes")
            for variant in [event] + Self.mutations(of: event, random: &random) {
                compared += 1
                let parsed = JSONValue.parse(variant)
                let expected = parsed.map { schema.isValid($0) } ?? false
                if !expected { invalid += 1 }
                guard let quick = schema.quickCheck(variant) else { continue }
                decided += 1
                if quick && !expected || quick != expected && parsed != nil {
                    disagreements.append("\(String(decoding: variant.prefix(300), as: UTF8.self)): validator \(expected), bytes \(quick)")
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) of \(compared):\n\(disagreements.prefix(5).joined(separator: "\n"))")
        #expect(invalid > compared / 2, "the mutations should mostly break the events (\(invalid) of \(compared))")
        #expect(decided > compared / 2, "decided on the bytes: \(decided) of \(compared)")
    }

    @Test("applicators, references and nesting: decided on the bytes as the validator decides on the value")
    func applicators() throws {
        let schema = try JSONSchema(json: Array(#"""
            {"definitions": {"positive": {"type": "integer", "minimum": 1}},
             "type": "object", "required": ["kind"],
             "properties": {"kind": {"enum": ["a", "b"]}, "n": {"$ref": "#/definitions/positive"},
                            "list": {"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 3}, {"$ref": "#/definitions/positive"}]}, "maxItems": 3},
                            "pair": {"type": "array", "items": [{"type": "string"}, {"type": "number"}], "additionalItems": false}},
             "patternProperties": {"^x-": {"type": "string"}},
             "additionalProperties": {"not": {"type": "null"}},
             "oneOf": [{"required": ["n"]}, {"required": ["list"]}],
             "if": {"properties": {"kind": {"const": "b"}}}, "then": {"required": ["pair"]}}
            """#.utf8))
        let cases: [(String, Bool)] = [
            (#"{"kind": "a", "n": 2}"#, true),
            (#"{"kind": "a", "n": 0}"#, false),
            (#"{"kind": "a", "list": ["abc", 4]}"#, true),
            (#"{"kind": "a", "list": ["abcd"]}"#, false),
            (#"{"kind": "a", "list": [1, 2, 3, 4]}"#, false),
            (#"{"kind": "a", "n": 1, "list": [1]}"#, false),
            (#"{"kind": "b", "n": 1}"#, false),
            (#"{"kind": "b", "n": 1, "pair": ["x", 1]}"#, true),
            (#"{"kind": "b", "n": 1, "pair": ["x", 1, 2]}"#, false),
            (#"{"kind": "a", "n": 1, "x-tag": "t", "other": {"deep": [1, {"a": null}]}}"#, true),
            (#"{"kind": "a", "n": 1, "x-tag": 5}"#, false),
            (#"{"kind": "a", "n": 1, "other": null}"#, false),
            (#"{"n": 1}"#, false),
            (#"{"k\u0069nd": "a", "n": 1}"#, true),
            (#"{"kind": "a", "n": 1, "k\u0069nd": "b"}"#, false),
            (#"{"kind": "a", "n": 1, "größe": 3}"#, true),
            (#"{"kind": "a", "n": 1, "x-größe": 3}"#, false),
            (#"{"kind": "a", "n": 1, "x-\u00e9": "ok"}"#, true),
            (#"[]"#, false),
        ]
        for (text, valid) in cases {
            let parsed = try #require(JSONValue.parse(Array(text.utf8)))
            #expect(schema.isValid(parsed) == valid, "validator on \(text)")
            let quick = schema.quickCheck(Array(text.utf8))
            #expect(quick == nil || quick == valid, "bytes on \(text): \(String(describing: quick))")
        }
    }
}
