import ArgumentParser
import Foundation
import SluiceBroker
import SluiceSchema

/// `sluice schemas`: event schemas, offline.
struct SchemasCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schemas",
        abstract: "Check events against their JSON Schema (draft-07) without an agent.",
        subcommands: [SchemasCheck.self]
    )
}

struct SchemasCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate events in a file against a schema; every failure is printed with its JSON pointer and keyword.",
        discussion: """
        FILE holds one JSON value or an array of them: a CloudEvent (an object with specversion) is checked by its data, \
        anything else is taken as the data itself. The schema is --schema FILE, or TYPE/VERSION.json of --schemas DIR \
        (the agent's directory layout; the directory is checked as the agent checks it). \
        Exit 0: every event is valid; 1: some are not; 2: bad input.
        """)

    @Argument(help: "A JSON file of events (or their data).")
    var file: String
    @Option(name: .long, help: "The event type (with --schemas).")
    var type: String?
    @Option(name: .long, help: "The version (with --schemas; default: the type's latest).")
    var version: String?
    @Option(name: .long, help: "A directory of TYPE/VERSION.json schemas, as `sluice serve --schemas`.")
    var schemas: String?
    @Option(name: .long, help: "A schema file to check against instead.")
    var schema: String?

    func validate() throws {
        guard (schemas == nil) != (schema == nil) else { throw ValidationError("give --schemas DIR (with --type) or --schema FILE") }
        if schemas != nil, type == nil { throw ValidationError("--schemas needs --type, the event type whose schema applies") }
    }

    func run() throws {
        let compiled: JSONSchema
        var label: String
        if let schema {
            guard let data = FileManager.default.contents(atPath: schema) else { throw CLIError.badInput("\(schema): cannot be read") }
            do {
                compiled = try JSONSchema(json: Array(data), baseURI: URL(fileURLWithPath: schema).absoluteString)
            } catch {
                throw CLIError.badInput("\(schema): \(error.message)")
            }
            label = schema
        } else {
            let entries: [RegisteredSchema]
            do {
                entries = try SchemaRegistry.loadDirectory(schemas!, fromDirectory: true).schemas
            } catch {
                throw CLIError.badInput(error.message)
            }
            let forType = entries.filter { $0.type == type }.sorted { SchemaRegistry.versionOrder($0.version, $1.version) }
            guard let chosen = version.map({ v in forType.first { $0.version == v } }) ?? forType.last else {
                let known = forType.map(\.version).joined(separator: ", ")
                throw CLIError.badInput("\(schemas!) has no schema for \(type!)\(version.map { " version \($0)" } ?? "")\(known.isEmpty ? "" : "; its versions: \(known)")")
            }
            compiled = chosen.schema
            label = "\(chosen.type) \(chosen.version)"
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError.badInput("\(file): cannot be read") }
        guard let parsed = JSONValue.parse(Array(data)) else { throw CLIError.badInput("\(file): not JSON") }
        let items: [JSONValue]
        if case .array(let list) = parsed { items = list } else { items = [parsed] }
        var invalid = 0
        for (index, item) in items.enumerated() {
            var instance = item
            var name = "#\(index)"
            if case .object(let object) = item, object["specversion"] != nil {
                instance = object["data"] ?? .null
                if case .string(let id)? = object["id"] { name += " (\(id))" }
            }
            let violations = compiled.validate(instance)
            if !violations.isEmpty {
                invalid += 1
                for violation in violations {
                    writeLine("\(name) \(violation.instancePath.isEmpty ? "/" : violation.instancePath): \(violation.message) [\(violation.keyword) at \(violation.schemaPath)]")
                }
            }
        }
        writeLine("\(items.count - invalid) of \(items.count) valid against \(label)")
        if invalid > 0 { throw ExitCode(1) }
    }
}
