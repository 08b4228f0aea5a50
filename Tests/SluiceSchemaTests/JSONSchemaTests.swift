import Foundation
import SluiceSchema
import Testing

func schema(_ json: String, remotes: [String: JSONValue] = [:]) throws(SchemaError) -> JSONSchema {
    try JSONSchema(json: Array(json.utf8), remotes: remotes)
}

func value(_ json: String) -> JSONValue { JSONValue.parse(Array(json.utf8))! }

/// What the suite does not cover: the violations Sluice reports, bad schemas, bounds, and the uuid format.
@Suite("JSON Schema validator")
struct JSONSchemaTests {
    @Test("each violation names the instance's JSON pointer, the keyword and where the keyword is; all of them are reported")
    func violations() throws {
        let s = try schema(##"""
        {"type": "object", "required": ["email", "eventVersion"],
         "properties": {"email": {"type": "string", "format": "email"}, "eventVersion": {"enum": ["1.0", "1.1", "2.0"]},
                        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}}},
         "additionalProperties": false}
        """##)
        let found = s.validate(value(##"{"email": "not-an-address", "tags": ["ok", "toolong", 7], "extra": 1}"##))
        let summary = Set(found.map { "\($0.instancePath) \($0.keyword) \($0.schemaPath)" })
        #expect(summary == [
            " required #/required", "/email format #/properties/email/format", "/tags/1 maxLength #/properties/tags/items/maxLength",
            "/tags/2 type #/properties/tags/items/type", "/extra additionalProperties #/additionalProperties",
        ], "\(found)")
        #expect(found.first { $0.keyword == "required" }?.message == "must have the property 'eventVersion'")
        #expect(s.validate(value(##"{"email": "a@example.com", "eventVersion": "2.0"}"##)).isEmpty)
        #expect(!s.isValid(value(##"{"email": "a@example.com"}"##)))
    }

    @Test("pointer tokens are escaped in paths (~0, ~1)")
    func escaping() throws {
        let s = try schema(##"{"properties": {"a/b": {"properties": {"c~d": {"type": "integer"}}}}}"##)
        #expect(s.validate(value(##"{"a/b": {"c~d": "x"}}"##)).map(\.instancePath) == ["/a~1b/c~0d"])
    }

    @Test("a bad schema is refused with where and why", arguments: [
        (##"{"type": "strin"}"##, "#/type: 'strin' is not a type"),
        (##"{"minLength": -1}"##, "#/minLength: must be a non-negative integer"),
        (##"{"pattern": "(unclosed"}"##, "#/pattern: '(unclosed' is not a regular expression"),
        (##"{"properties": {"a": 5}}"##, "#/properties/a: a schema must be an object or a boolean"),
        (##"{"$ref": "#/definitions/missing"}"##, "#/$ref: 'urn:sluice:schema#/definitions/missing' cannot be resolved"),
        (##"{"$ref": "http://example.com/other.json"}"##, "no known document has the URI http://example.com/other.json"),
        (##"{"allOf": []}"##, "#/allOf: must be a non-empty array of schemas"),
        (##"{"multipleOf": 0}"##, "#/multipleOf: must be greater than 0"),
        ("7", "#: a schema must be an object or a boolean"),
    ])
    func badSchemas(_ json: String, _ expected: String) {
        do {
            _ = try schema(json)
            Issue.record("\(json) compiled")
        } catch {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("the meta-schema says what is wrong with a schema")
    func metaSchema() {
        #expect(JSONSchema.metaSchema.validate(value(##"{"type": "object", "properties": {"a": {"minimum": 1}}}"##)).isEmpty)
        let found = JSONSchema.metaSchema.validate(value(##"{"properties": {"a": {"minLength": "3"}}}"##))
        #expect(found.contains { $0.instancePath == "/properties/a/minLength" && $0.keyword == "type" }, "\(found)")
    }

    @Test("validation is bounded: a $ref cycle that never consumes the instance, deep instances, long arrays")
    func bounds() throws {
        let cycle = try schema(##"{"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}, "$ref": "#/definitions/a"}"##)
        let found = cycle.validate(value("1"))
        #expect(found.count == 1 && found[0].keyword == "$ref" && found[0].message.contains("nests more than 256 levels"), "\(found)")
        #expect(!cycle.isValid(value("1")))

        // A recursive schema over an instance nested 1,000 deep: the depth bound stops it, without a crash.
        let tree = try schema(##"{"type": "array", "items": {"$ref": "#"}}"##)
        var deep = JSONValue.array([])
        for _ in 0..<1000 { deep = .array([deep]) }
        #expect(tree.validate(deep).first?.keyword == "$ref")
        var shallow = JSONValue.array([])
        for _ in 0..<100 { shallow = .array([shallow]) }
        #expect(tree.isValid(shallow))

        // uniqueItems over 200,000 items is linear, and the number of violations reported is capped.
        let unique = try schema(##"{"uniqueItems": true, "items": {"type": "string"}}"##)
        #expect(unique.isValid(.array((0..<200_000).map { .string("item-\($0)") })))
        #expect(!unique.isValid(.array((0..<200_000).map { .string("item-\($0 % 199_999)") })))
        #expect(unique.validate(.array((0..<1000).map { .number(Double($0)) })).count == 100)
    }

    @Test("uuid: 8-4-4-4-12 hex digits, any version, either case")
    func uuid() throws {
        let s = try schema(##"{"format": "uuid"}"##)
        for good in ["2EB8AA08-AA98-11EA-B4AA-73B441D16380", "2eb8aa08-aa98-11ea-b4aa-73b441d16380", "00000000-0000-0000-0000-000000000000",
                     "98d80576-482e-427f-8434-7f86890ab222", "99c17cbb-656f-564a-940f-1a4568f03487"] {
            #expect(s.isValid(.string(good)), "\(good)")
        }
        for bad in ["2eb8aa08-aa98-11ea-b4aa-73b441d1638", "2eb8aa08-aa98-11ea-73b441d16380", "2eb8aa08-aa98-11ea-b4ga-73b441d16380",
                    "2eb8aa08aa9811eab4aa73b441d16380", "2eb8-aa08-aa98-11ea-b4aa73b441d16380", "{2eb8aa08-aa98-11ea-b4aa-73b441d16380}", ""] {
            #expect(!s.isValid(.string(bad)), "\(bad)")
        }
        #expect(s.isValid(.number(7)), "formats apply to strings only")
    }

    @Test("JSONValue keeps 0 and 1 numbers apart from false and true")
    func numbersAreNotBooleans() {
        #expect(value("[0, 1, false, true, 1.5]") == .array([.number(0), .number(1), .bool(false), .bool(true), .number(1.5)]))
        #expect(JSONValue(any: ["a": 1, "b": true] as [String: Any]) == .object(["a": .number(1), "b": .bool(true)]))
    }
}

/// Sluice's JSON parser against Foundation's JSONSerialization as the oracle.
@Suite("JSON parser")
struct JSONParserTests {
    static func oracle(_ bytes: [UInt8]) -> JSONValue? {
        (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])).map { JSONValue(any: $0) }
    }

    @Test("every file of the vendored test suite parses to what JSONSerialization reads")
    func suiteFiles() throws {
        let root = JSONSchemaSuiteTests.root
        let files = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".json") }
        #expect(files.count > 50)
        // bignum.json's 50-digit numbers: Foundation reads them through Decimal and rounds differently from strtod.
        for file in files where !file.hasSuffix("bignum.json") {
            let bytes = Array(try #require(FileManager.default.contents(atPath: root + "/" + file)))
            let ours = JSONValue.parse(bytes), theirs = Self.oracle(bytes)
            #expect(ours != nil && ours == theirs, "\(file)")
        }
    }

    @Test("escapes, unicode, numbers and fragments", arguments: [
        #""a\"b\\c\/d\b\f\n\r\t""#, #""\u00e9\u4e2d\ud83d\ude00""#, "\"é中😀\"", "0", "-0", "12", "-12.5e3", "1E+2", "123456789012345678901234567890",
        "0.1", "1e-7", "true", "false", "null", " [ ] ", "{}", #"{"a": [1, {"b": null}], "c": "d"}"#, "[1.0, 2.50, -3]",
    ])
    func accepts(_ text: String) {
        let bytes = Array(text.utf8)
        #expect(JSONValue.parse(bytes) != nil && JSONValue.parse(bytes) == Self.oracle(bytes), "\(text)")
    }

    @Test("what is not JSON is refused", arguments: [
        "", "{", "[1,]", "[1 2]", "01", "1.", ".5", "-", "1e", #""\x""#, #""\ud800""#, #""\udc00x""#, "\"a\u{01}b\"", "tru", "nul", "[] x",
        #"{"a" 1}"#, #"{a: 1}"#, #"{"a": 1,}"#, "\"unterminated", "+1", "NaN",
    ])
    func refuses(_ text: String) {
        #expect(JSONValue.parse(Array(text.utf8)) == nil, "\(text)")
    }

    @Test("nesting is bounded instead of overflowing the stack")
    func depth() {
        #expect(JSONValue.parse(Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)) != nil)
        #expect(JSONValue.parse(Array((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)) == nil)
    }
}
