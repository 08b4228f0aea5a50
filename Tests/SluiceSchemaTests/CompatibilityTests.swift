import SluiceSchema
import Testing

/// Each compatibility mode accepts the changes it allows and refuses the others, naming the place and the reason.
@Suite("Schema compatibility")
struct CompatibilityTests {
    static let base = #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#

    /// (change, new schema, backward ok, forward ok)
    static let changes: [(String, String, Bool, Bool)] = [
        ("identical", base, true, true),
        ("an optional property added", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}, "note": {"type": "string"}}}"#, false, true),
        ("a required property added", #"{"type": "object", "required": ["id", "n"], "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#, false, true),
        ("a requirement dropped", #"{"type": "object", "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#, true, false),
        ("an enum value added", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b", "c"]}}}"#, true, false),
        ("integer widened to number", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "n": {"type": "number", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#, true, false),
        ("a bound tightened", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "n": {"type": "integer", "minimum": 5}, "kind": {"enum": ["a", "b"]}}}"#, false, true),
        ("a property's type changed", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#, false, false),
        ("a pattern added", #"{"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "pattern": "^x"}, "n": {"type": "integer", "minimum": 0}, "kind": {"enum": ["a", "b"]}}}"#, false, true),
    ]

    @Test("backward, forward, full and none on each kind of change", arguments: changes.indices)
    func modes(_ index: Int) throws {
        let (name, new, backward, forward) = Self.changes[index]
        let old = JSONValue.parse(Array(Self.base.utf8))!, next = JSONValue.parse(Array(new.utf8))!
        func ok(_ mode: SchemaCompatibility) -> Bool { mode.problem(old: old, new: next, oldLabel: "1", newLabel: "2") == nil }
        #expect(ok(.backward) == backward, "\(name): backward \(SchemaCompatibility.backward.problem(old: old, new: next, oldLabel: "1", newLabel: "2") ?? "ok")")
        #expect(ok(.forward) == forward, "\(name): forward \(SchemaCompatibility.forward.problem(old: old, new: next, oldLabel: "1", newLabel: "2") ?? "ok")")
        #expect(ok(.full) == (backward && forward), "\(name): full")
        #expect(ok(.none))
        // A proven inclusion is a real one: instances valid under the narrower schema are valid under the wider.
        let samples = [#"{"id": "x"}"#, #"{"id": "x", "n": 3}"#, #"{"id": "y", "n": 7, "kind": "a"}"#, #"{"id": "x", "note": "hi"}"#, #"{"n": 1}"#, #"{"id": "x", "n": 2.5}"#, #"{"id": "x", "kind": "c"}"#]
        let oldSchema = try JSONSchema(old), newSchema = try JSONSchema(next)
        for sample in samples.map({ JSONValue.parse(Array($0.utf8))! }) {
            if backward, oldSchema.isValid(sample) { #expect(newSchema.isValid(sample), "\(name): backward proven but \(sample) breaks it") }
            if forward, newSchema.isValid(sample) { #expect(oldSchema.isValid(sample), "\(name): forward proven but \(sample) breaks it") }
        }
    }

    @Test("a refusal names the field that breaks it")
    func reasons() {
        let old = JSONValue.parse(Array(Self.base.utf8))!
        let next = JSONValue.parse(Array(Self.changes[2].1.utf8))!
        #expect(SchemaCompatibility.backward.problem(old: old, new: next, oldLabel: "1.0", newLabel: "2.0")
            == "/required: 'n' is required by 2.0 but not by 1.0, so a 1.0 event may lack it")
        let closed = JSONValue.parse(Array(#"{"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": false}"#.utf8))!
        let reason = SchemaCompatibility.backward.problem(old: old, new: closed, oldLabel: "1.0", newLabel: "2.0") ?? ""
        #expect(reason.contains("1.0 allows") && reason.contains("2.0 does not"), "\(reason)")
    }
}
