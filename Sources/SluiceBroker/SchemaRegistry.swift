import Foundation
public import SluiceSchema
import SluiceLog
import Synchronization

/// One registered schema: a JSON Schema (draft-07) for the `data` of events of one type and version.
public struct RegisteredSchema: Sendable {
    public var type: String
    public var version: String
    public var schema: JSONSchema
    /// The schema as registered (served back by GET).
    public var source: JSONValue
    /// From the `--schemas` directory (read-only over HTTP) or registered over HTTP (persisted in the data directory).
    public var fromDirectory: Bool
}

/// The agent's schema registry: schemas per event type and version, from the `--schemas` directory (files
/// `TYPE/VERSION.json`, checked at startup) and registered at runtime (kept in `DATA/schemas/TYPE/VERSION.json`,
/// written atomically and fsynced). Every schema is compiled once and checked against the draft-07 meta-schema.
public final class SchemaRegistry: Sendable {
    private let entries = Mutex<[String: [String: RegisteredSchema]]>([:])
    /// Held while a runtime change is written, so that changes land one at a time.
    private let changes = Mutex<Void>(())
    let storeDirectory: String
    /// How a type's consecutive versions must relate (`schema.compatibility`).
    public let compatibility: SchemaCompatibility

    /// Loads the directory's schemas, then those registered at runtime. A bad file is `FILE: reason`.
    public init(directory: String?, storeDirectory: String, compatibility: SchemaCompatibility = .none) throws(SchemaError) {
        self.storeDirectory = storeDirectory
        self.compatibility = compatibility
        var loaded: [String: [String: RegisteredSchema]] = [:]
        if let directory, !directory.isEmpty {
            for entry in try Self.loadDirectory(directory, fromDirectory: true, compatibility: compatibility) { loaded[entry.type, default: [:]][entry.version] = entry }
        }
        if FileManager.default.fileExists(atPath: storeDirectory) {
            for entry in try Self.loadDirectory(storeDirectory, fromDirectory: false) where loaded[entry.type]?[entry.version] == nil {
                loaded[entry.type, default: [:]][entry.version] = entry
            }
        }
        entries.withLock { $0 = loaded }
    }

    /// Every `TYPE/VERSION.json` under `directory`, compiled, each version compatible with the one before it; the first
    /// bad one throws `FILE: reason`.
    public static func loadDirectory(_ directory: String, fromDirectory: Bool, compatibility: SchemaCompatibility = .none) throws(SchemaError) -> [RegisteredSchema] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SchemaError("\(directory): not a directory; --schemas names a directory of TYPE/VERSION.json files")
        }
        var out: [RegisteredSchema] = []
        let types = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for type in types where !type.hasPrefix(".") {
            let typePath = directory + "/" + type
            guard FileManager.default.fileExists(atPath: typePath, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw SchemaError("\(typePath): expected a directory named after an event type, holding VERSION.json files")
            }
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: typePath)) ?? []).sorted() where !file.hasPrefix(".") {
                let path = typePath + "/" + file
                guard file.hasSuffix(".json") else { throw SchemaError("\(path): schema files are named VERSION.json") }
                let version = String(file.dropLast(5))
                do throws(SchemaError) {
                    try validateName(type, what: "event type")
                    try validateName(version, what: "version")
                    guard let data = FileManager.default.contents(atPath: path) else { throw SchemaError("cannot be read") }
                    out.append(try compile(type: type, version: version, bytes: Array(data), fromDirectory: fromDirectory))
                } catch {
                    throw SchemaError("\(path): \(error.message)")
                }
            }
            let versions = out.filter { $0.type == type }.sorted { versionOrder($0.version, $1.version) }
            for (previous, next) in zip(versions, versions.dropFirst()) {
                if let reason = compatibility.problem(old: previous.source, new: next.source, oldLabel: previous.version, newLabel: next.version) {
                    throw SchemaError("\(typePath)/\(next.version).json: not \(compatibility.rawValue) compatible with \(previous.version) (schema.compatibility): \(reason)")
                }
            }
        }
        return out
    }

    static func validateName(_ name: String, what: String) throws(SchemaError) {
        guard !name.isEmpty, name.utf8.count <= 249, name != ".", name != "..",
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D })
        else {
            throw SchemaError("\(what) '\(name)' is invalid: use 1 to 249 characters from A-Z, a-z, 0-9, '.', '_' and '-'")
        }
    }

    /// Parses, checks against the meta-schema and compiles.
    static func compile(type: String, version: String, bytes: [UInt8], fromDirectory: Bool) throws(SchemaError) -> RegisteredSchema {
        guard let source = JSONValue.parse(bytes) else { throw SchemaError("not JSON") }
        // The compiler's reasons are the most precise; the meta-schema then catches what compiles but is not draft-07.
        let schema = try JSONSchema(source, baseURI: "urn:sluice:schema:\(type):\(version)")
        let problems = JSONSchema.metaSchema.validate(source)
        if let first = problems.first {
            throw SchemaError("not a valid draft-07 schema: at \(first.instancePath.isEmpty ? "the top" : first.instancePath): \(first.message)")
        }
        return RegisteredSchema(type: type, version: version, schema: schema, source: source, fromDirectory: fromDirectory)
    }

    // MARK: - Lookups

    public func schema(type: String, version: String) -> RegisteredSchema? {
        entries.withLock { $0[type]?[version] }
    }

    /// The versions of a type, oldest first (dotted numbers compare numerically: 1.9 < 1.10 < 2.0).
    public func versions(of type: String) -> [String] {
        entries.withLock { ($0[type].map { Array($0.keys) } ?? []) }.sorted(by: Self.versionOrder)
    }

    public var types: [String] { entries.withLock { Array($0.keys) }.sorted() }

    public var isEmpty: Bool { entries.withLock { $0.isEmpty } }

    /// `a` is an older version than `b`.
    public static func versionOrder(_ a: String, _ b: String) -> Bool {
        let left = a.split(separator: "."), right = b.split(separator: ".")
        for (x, y) in zip(left, right) where x != y {
            if let m = Int(x), let n = Int(y) { return m < n }
            return x < y
        }
        return left.count < right.count
    }

    // MARK: - Changes

    /// Registers (or replaces) a runtime schema, durably; returns whether it was new.
    public func put(type: String, version: String, bytes: [UInt8]) throws(BrokerError) -> Bool {
        let entry: RegisteredSchema
        do throws(SchemaError) {
            try Self.validateName(type, what: "event type")
            try Self.validateName(version, what: "version")
            entry = try Self.compile(type: type, version: version, bytes: bytes, fromDirectory: false)
        } catch {
            throw BrokerError.badRequest(error.message, attribute: "schema")
        }
        return try changes.withLock { _ throws(BrokerError) -> Bool in
            let existing = schema(type: type, version: version)
            if existing?.fromDirectory == true {
                throw BrokerError(.conflict, "schema \(type) \(version) comes from the --schemas directory; change the file there")
            }
            // The versions on either side must accept it as their neighbour.
            let others = versions(of: type).filter { $0 != version }
            if let previous = others.last(where: { Self.versionOrder($0, version) }), let old = schema(type: type, version: previous),
               let reason = compatibility.problem(old: old.source, new: entry.source, oldLabel: previous, newLabel: version) {
                throw BrokerError(.conflict, "schema \(type) \(version) is not \(compatibility.rawValue) compatible with \(previous) (schema.compatibility): \(reason)", attribute: "schema")
            }
            if let next = others.first(where: { Self.versionOrder(version, $0) }), let newer = schema(type: type, version: next),
               let reason = compatibility.problem(old: entry.source, new: newer.source, oldLabel: version, newLabel: next) {
                throw BrokerError(.conflict, "schema \(type) \(version) would make \(next) not \(compatibility.rawValue) compatible with it (schema.compatibility): \(reason)", attribute: "schema")
            }
            do {
                try FileManager.default.createDirectory(atPath: storeDirectory + "/" + type, withIntermediateDirectories: true)
                try writeFileAtomically(storeDirectory + "/\(type)/\(version).json", bytes)
            } catch let error as LogError where error.isNoSpace {
                throw BrokerError(.insufficientStorage, "cannot save the schema: the data directory's file system is full (\(error.message)); nothing was changed")
            } catch {
                throw BrokerError(.internal, "cannot save the schema to \(storeDirectory): \(error); nothing was changed")
            }
            entries.withLock { $0[type, default: [:]][version] = entry }
            return existing == nil
        }
    }

    public func delete(type: String, version: String) throws(BrokerError) {
        try changes.withLock { _ throws(BrokerError) in
            guard let existing = schema(type: type, version: version) else {
                throw BrokerError(.notFound, "no schema for \(type) version \(version); list them with GET /v1/schemas")
            }
            if existing.fromDirectory {
                throw BrokerError(.conflict, "schema \(type) \(version) comes from the --schemas directory; remove the file there")
            }
            do {
                try FileManager.default.removeItem(atPath: storeDirectory + "/\(type)/\(version).json")
            } catch {
                throw BrokerError(.internal, "cannot remove the schema from \(storeDirectory): \(error)")
            }
            entries.withLock { entries in
                entries[type]?.removeValue(forKey: version)
                if entries[type]?.isEmpty == true { entries.removeValue(forKey: type) }
            }
        }
    }
}
