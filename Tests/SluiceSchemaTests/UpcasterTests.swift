import SluiceSchema
import Testing



private func upcaster(_ text: String) throws(SchemaError) -> Upcaster { try Upcaster.parse(value(text), at: "upcasters[0]") }

/// The seed's user.registered data schemas: v1.0 without the consent fields, v1.1 with both (consentGiven required),
/// v2.0 with both required.
enum SeedUserRegistered {
    static let base = #""userId": {"type": "string"}, "email": {"type": "string", "format": "email"}, "name": {"type": "string"}, "registrationMethod": {"type": "string", "enum": ["email", "social", "mobile"]}, "referralSource": {"type": "string"}, "initialPreferences": {"type": "array", "items": {"type": "string"}}"#
    static let required = #""userId", "email", "name", "registrationMethod""#
    /// v1.0 events have exactly these members: none of them can already hold a consent field of another type.
    static let v1_0 = value(#"{"type": "object", "properties": {"# + base + #"}, "required": ["# + required + #"], "additionalProperties": false}"#)
    static let v1_1 = value(#"{"type": "object", "properties": {"# + base + #", "consentGiven": {"type": "boolean"}, "marketingOptIn": {"type": "boolean"}}, "required": ["# + required + #", "consentGiven"]}"#)
    static let v2_0 = value(#"{"type": "object", "properties": {"# + base + #", "consentGiven": {"type": "boolean"}, "marketingOptIn": {"type": "boolean"}}, "required": ["# + required + #", "consentGiven", "marketingOptIn"]}"#)
    /// The seed's EventVersioningStrategy as upcasters: legacy users consented; marketing is off unless said.
    static let upcasters = [
        #"{"from": "1.0", "to": "1.1", "operations": [{"op": "set", "path": "/consentGiven", "value": true}]}"#,
        #"{"from": "1.1", "to": "2.0", "operations": [{"op": "default", "path": "/marketingOptIn", "value": false}]}"#,
    ]
}

@Suite("Upcasters")
struct UpcasterTests {
    @Test("each operation on present, absent and nested members; pointers unescape ~0 and ~1")
    func operations() throws {
        let data = value(#"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#)
        let cases: [(String, String)] = [
            (#"{"op": "default", "path": "/a", "value": 9}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "default", "path": "/z", "value": 9}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2, "z": 9}"#),
            (#"{"op": "default", "path": "/new/deep", "value": true}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2, "new": {"deep": true}}"#),
            (#"{"op": "set", "path": "/a", "value": {"n": 2}}"#, #"{"a": {"n": 2}, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "set", "path": "/s/inner", "value": 1}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "set", "path": "/list/0/k", "value": 5}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 5}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "remove", "path": "/b/c"}"#, #"{"a": 1, "b": {}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "remove", "path": "/missing"}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "remove", "path": "/w~1x~0y"}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str"}"#),
            (#"{"op": "rename", "path": "/b/c", "to": "city"}"#, #"{"a": 1, "b": {"city": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "rename", "path": "/missing", "to": "other"}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "copy", "from": "/a", "path": "/b/a"}"#, #"{"a": 1, "b": {"c": "x", "a": 1}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "move", "from": "/a", "path": "/address/a"}"#, #"{"b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2, "address": {"a": 1}}"#),
            (#"{"op": "move", "from": "/b/c", "path": "/c"}"#, #"{"a": 1, "b": {}, "c": "x", "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
            (#"{"op": "move", "from": "/nothing", "path": "/c"}"#, #"{"a": 1, "b": {"c": "x"}, "list": [{"k": 1}], "s": "str", "w/x~y": 2}"#),
        ]
        for (operation, expected) in cases {
            let step = try upcaster(#"{"from": "1", "to": "2", "operations": ["# + operation + "]}")
            #expect(step.apply(data) == value(expected), "\(operation) gave \(String(decoding: step.apply(data).bytes, as: UTF8.self))")
        }
        // Operations apply in order; data that is null gets an object.
        let two = try upcaster(#"{"from": "1", "to": "2", "operations": [{"op": "set", "path": "/x", "value": 1}, {"op": "rename", "path": "/x", "to": "y"}]}"#)
        #expect(two.apply(.null) == value(#"{"y": 1}"#))
    }

    @Test("bad declarations are refused with the place and the reason")
    func badDeclarations() {
        let cases: [(String, String)] = [
            (#"[]"#, "upcasters[0]: an upcaster is an object"),
            (#"{"to": "2", "operations": []}"#, "upcasters[0].from: the version it reads"),
            (#"{"from": "1", "to": "2"}"#, "upcasters[0].operations: a list of operations is required"),
            (#"{"from": "1", "to": "2", "operations": [], "extra": 1}"#, "unknown field 'extra'"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "upsert", "path": "/a"}]}"#, "upcasters[0].operations[0].op: unknown operation 'upsert'; use one of default, set, remove, rename, copy, move"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "default", "path": "/a"}]}"#, "upcasters[0].operations[0]: 'default' needs 'value'"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "remove", "path": "a"}]}"#, "upcasters[0].operations[0].path: a JSON pointer"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "remove", "path": ""}]}"#, "operations[0].path: a JSON pointer into the data below its top"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "remove", "path": "/a~2"}]}"#, "operations[0].path: a JSON pointer"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "remove", "path": "/a", "value": 1}]}"#, "'remove' takes path, not 'value'"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "rename", "path": "/a", "to": 3}]}"#, "operations[0].to: the new member name"),
            (#"{"from": "1", "to": "2", "operations": [{"op": "move", "from": "/a", "path": "/a/b"}]}"#, "cannot move /a into itself"),
        ]
        for (text, words) in cases {
            do {
                _ = try Upcaster.parse(value(text), at: "upcasters[0]")
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.message.contains(words), "\(text): \(error.message)")
            }
        }
    }

    @Test("chains take the fewest steps forward; there is no way back and none across a gap")
    func chains() throws {
        let steps = try [#"{"from": "1.0", "to": "1.1", "operations": []}"#, #"{"from": "1.1", "to": "2.0", "operations": []}"#,
                         #"{"from": "1.0", "to": "2.0", "operations": []}"#, #"{"from": "2.0", "to": "3.0", "operations": []}"#].map(upcaster)
        let chains = UpcastChains(steps)
        #expect(chains.path(from: "1.0", to: "2.0")?.map(\.to) == ["2.0"])
        #expect(chains.path(from: "1.1", to: "3.0")?.map(\.to) == ["2.0", "3.0"])
        #expect(chains.path(from: "1.0", to: "3.0")?.map(\.to) == ["2.0", "3.0"])
        #expect(chains.path(from: "2.0", to: "2.0")?.isEmpty == true)
        #expect(chains.path(from: "2.0", to: "1.0") == nil)
        #expect(chains.path(from: "0.9", to: "2.0") == nil)
    }

    @Test("the seed's migrations: 1.0 and 1.1 events upcast to 2.0 have the defaults filled in and are valid under 2.0 (every chain)")
    func seedMigrations() throws {
        let chains = UpcastChains(try SeedUserRegistered.upcasters.map(upcaster))
        let target = try JSONSchema(SeedUserRegistered.v2_0)
        let v1_0 = value(#"{"userId": "u1", "email": "a@example.com", "name": "A", "registrationMethod": "email"}"#)
        let v1_1 = value(#"{"userId": "u2", "email": "b@example.com", "name": "B", "registrationMethod": "social", "consentGiven": false}"#)
        let samples: [(String, JSONValue, JSONSchema)] = [("1.0", v1_0, try JSONSchema(SeedUserRegistered.v1_0)), ("1.1", v1_1, try JSONSchema(SeedUserRegistered.v1_1))]
        for (version, data, own) in samples {
            #expect(own.isValid(data) && !target.isValid(data), "\(version) sample is a \(version) event, not a 2.0 one")
            let chain = try #require(chains.path(from: version, to: "2.0"))
            let upcast = chain.reduce(data) { $1.apply($0) }
            #expect(target.validate(upcast).isEmpty, "\(version) → 2.0: \(target.validate(upcast).map(\.message))")
            #expect(upcast.value(at: ["marketingOptIn"]) == .bool(false))
            #expect(upcast.value(at: ["consentGiven"]) == .bool(version == "1.0"), "1.0 users consented; a 1.1 event keeps its own answer")
        }
    }

    @Test("backward compatibility counts the upcasters: defaults make new required fields compatible, wrong defaults and unprovable paths are refused")
    func compatibilityWithUpcasters() throws {
        let direct = SchemaCompatibility.backward.problem(old: SeedUserRegistered.v1_0, new: SeedUserRegistered.v2_0, oldLabel: "1.0", newLabel: "2.0")
        #expect(direct?.contains("consentGiven") == true, "\(direct ?? "ok")")
        let chains = UpcastChains(try SeedUserRegistered.upcasters.map(upcaster))
        for (old, new, from, to) in [(SeedUserRegistered.v1_0, SeedUserRegistered.v1_1, "1.0", "1.1"), (SeedUserRegistered.v1_1, SeedUserRegistered.v2_0, "1.1", "2.0")] {
            let problem = SchemaCompatibility.backward.problem(old: old, new: new, oldLabel: from, newLabel: to, upcasters: chains.path(from: from, to: to)!)
            #expect(problem == nil, "\(from) → \(to): \(problem ?? "")")
        }
        let wrongType = try upcaster(#"{"from": "1.0", "to": "1.1", "operations": [{"op": "set", "path": "/consentGiven", "value": "yes"}]}"#)
        let refused = SchemaCompatibility.backward.problem(old: SeedUserRegistered.v1_0, new: SeedUserRegistered.v1_1, oldLabel: "1.0", newLabel: "1.1", upcasters: [wrongType])
        #expect(refused?.contains("/properties/consentGiven: 1.1 does not accept \"yes\"") == true, "\(refused ?? "ok")")
        // A default fills in only what is absent: when the old version lets the member be anything, an old event may
        // hold something the new version refuses.
        let fillIn = try upcaster(#"{"from": "1.0", "to": "1.1", "operations": [{"op": "default", "path": "/consentGiven", "value": true}]}"#)
        let open = value(#"{"type": "object", "properties": {"# + SeedUserRegistered.base + #"}, "required": ["# + SeedUserRegistered.required + #"]}"#)
        let undeclared = SchemaCompatibility.backward.problem(old: open, new: SeedUserRegistered.v1_1, oldLabel: "1.0", newLabel: "1.1", upcasters: [fillIn])
        #expect(undeclared?.contains("/properties/consentGiven: 1.1 constrains what 1.0 upcast to 1.1 accepts without limits") == true, "\(undeclared ?? "ok")")

        // Renaming a required member to what the new version requires.
        let old = value(#"{"type": "object", "required": ["fullName"], "properties": {"fullName": {"type": "string"}}}"#)
        let new = value(#"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}"#)
        #expect(SchemaCompatibility.backward.problem(old: old, new: new, oldLabel: "1", newLabel: "2") != nil)
        let rename = try upcaster(#"{"from": "1", "to": "2", "operations": [{"op": "rename", "path": "/fullName", "to": "name"}]}"#)
        let renamed = SchemaCompatibility.backward.problem(old: old, new: new, oldLabel: "1", newLabel: "2", upcasters: [rename])
        #expect(renamed == nil, "\(renamed ?? "")")
        // Moving into an object the old schema does not declare: cannot be followed, so refused with the path.
        let move = try upcaster(#"{"from": "1", "to": "2", "operations": [{"op": "move", "from": "/fullName", "path": "/person/name"}]}"#)
        let moved = SchemaCompatibility.backward.problem(old: old, new: new, oldLabel: "1", newLabel: "2", upcasters: [move])
        #expect(moved?.contains("the upcaster 1 → 2 changes /person/name, and the previous schema does not declare /person as a required property") == true, "\(moved ?? "ok")")
        // Moving into a declared, required object.
        let nestedOld = value(#"{"type": "object", "required": ["city", "address"], "properties": {"city": {"type": "string"}, "address": {"type": "object", "properties": {}}}}"#)
        let nestedNew = value(#"{"type": "object", "required": ["address"], "properties": {"address": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}"#)
        let moveIn = try upcaster(#"{"from": "1", "to": "2", "operations": [{"op": "move", "from": "/city", "path": "/address/city"}]}"#)
        let nested = SchemaCompatibility.backward.problem(old: nestedOld, new: nestedNew, oldLabel: "1", newLabel: "2", upcasters: [moveIn])
        #expect(nested == nil, "\(nested ?? "")")
    }
}
