import Foundation
import SluiceSchema
import SluiceTestSupport
import Testing

/// The official JSON Schema Test Suite for draft-07 (github.com/json-schema-org/JSON-Schema-Test-Suite, vendored in
/// JSONSchemaTestSuite/): every required file, and the optional format files of the formats Sluice checks.
@Suite("JSON Schema Test Suite, draft-07")
struct JSONSchemaSuiteTests {
    static let root = packageRoot + "/Tests/SluiceSchemaTests/JSONSchemaTestSuite"

    static var requiredFiles: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root + "/draft7")) ?? []).filter { $0.hasSuffix(".json") }.sorted()
    }

    static let formatFiles = ["date-time", "date", "time", "email", "uri", "ipv4", "ipv6"].map { "optional/format/\($0).json" }

    /// The suite's remotes, under the URIs its refRemote tests use.
    static let remotes: [String: JSONValue] = {
        var out: [String: JSONValue] = [:]
        let base = root + "/remotes"
        guard let walker = FileManager.default.enumerator(atPath: base) else { return out }
        for case let path as String in walker where path.hasSuffix(".json") {
            if let data = FileManager.default.contents(atPath: base + "/" + path), let value = JSONValue.parse(Array(data)) {
                out["http://localhost:1234/" + path] = value
            }
        }
        return out
    }()

    @Test("the suite's files are all here", .tags())
    func filesPresent() {
        #expect(Self.requiredFiles.count == 37, "\(Self.requiredFiles)")
        #expect(Self.remotes.count >= 10)
    }

    @Test("every test of the file passes", arguments: requiredFiles + formatFiles)
    func file(_ name: String) throws {
        let data = try #require(FileManager.default.contents(atPath: Self.root + "/draft7/" + name), "\(name) is missing")
        let groups = try #require(JSONValue.parse(Array(data))?.foundation as? [[String: Any]])
        var failures: [String] = []
        var count = 0
        for group in groups {
            let description = group["description"] as? String ?? ""
            let schemaValue = JSONValue(any: group["schema"])
            let schema: JSONSchema
            do {
                schema = try JSONSchema(schemaValue, remotes: Self.remotes)
            } catch {
                failures.append("\(description): the schema does not compile: \(error)")
                continue
            }
            for test in group["tests"] as? [[String: Any]] ?? [] {
                count += 1
                let expected = test["valid"] as? Bool ?? false
                let instance = JSONValue(any: test["data"])
                let violations = schema.validate(instance)
                if violations.isEmpty != expected || schema.isValid(instance) != expected {
                    failures.append("\(description) / \(test["description"] ?? ""): expected \(expected ? "valid" : "invalid"), got \(violations.isEmpty ? "valid" : "\(violations)")")
                }
                // The check on the bytes answers the same, or says it cannot tell.
                if let quick = schema.quickCheck(instance.bytes), quick != expected {
                    failures.append("\(description) / \(test["description"] ?? ""): expected \(expected ? "valid" : "invalid"), the check on the bytes said \(quick)")
                }
            }
        }
        #expect(count > 0)
        #expect(failures.isEmpty, "\(failures.count) of \(count) failed:\n\(failures.joined(separator: "\n"))")
    }
}
