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

/// What a type declares besides its schemas, in `TYPE.json` beside the `TYPE/` directory (or registered with
/// `PUT /v1/schemas/{type}`): its own `compatibility` mode and its upcasters.
public struct SchemaTypeSettings: Sendable {
    /// nil: the agent's `schema.compatibility`.
    public var compatibility: SchemaCompatibility?
    public var chains: UpcastChains
    /// The declaration as written (served back by GET).
    public var source: JSONValue
    public var fromDirectory: Bool

    public static let keys: Set<String> = ["compatibility", "upcasters", "description"]

    /// Parses a declaration. Every upcaster must go from a registered version of the type to a later one.
    public static func parse(_ bytes: [UInt8], type: String, versions: Set<String>, fromDirectory: Bool) throws(SchemaError) -> SchemaTypeSettings {
        guard let source = JSONValue.parse(bytes) else { throw SchemaError("not JSON") }
        guard case .object(let object) = source else {
            throw SchemaError("a type's settings are an object: {\"compatibility\": \"backward\", \"upcasters\": [{\"from\": \"1.0\", \"to\": \"2.0\", \"operations\": […]}]}")
        }
        for key in object.keys.sorted() where !keys.contains(key) {
            throw SchemaError("unknown field '\(key)'; a type's settings have \(keys.sorted().joined(separator: ", "))")
        }
        var settings = SchemaTypeSettings(compatibility: nil, chains: UpcastChains([]), source: source, fromDirectory: fromDirectory)
        if let mode = object["compatibility"] {
            guard case .string(let text) = mode, let parsed = SchemaCompatibility(rawValue: text) else {
                throw SchemaError("compatibility: one of \(SchemaCompatibility.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            settings.compatibility = parsed
        }
        guard let list = object["upcasters"] else { return settings }
        guard case .array(let items) = list else { throw SchemaError("upcasters: a list of {from, to, operations}") }
        var upcasters: [Upcaster] = []
        for (index, item) in items.enumerated() {
            let at = "upcasters[\(index)]"
            let upcaster = try Upcaster.parse(item, at: at)
            for version in [upcaster.from, upcaster.to] where !versions.contains(version) {
                throw SchemaError("\(at): \(type) has no schema for version \(version); register \(type)/\(version).json first (its versions: \(versions.sorted(by: SchemaRegistry.versionOrder).joined(separator: ", ")))")
            }
            guard SchemaRegistry.versionOrder(upcaster.from, upcaster.to) else {
                throw SchemaError("\(at): upcasters go from an older version to a newer one, and \(upcaster.from) is not older than \(upcaster.to)")
            }
            if upcasters.contains(where: { $0.from == upcaster.from && $0.to == upcaster.to }) {
                throw SchemaError("\(at): a second upcaster from \(upcaster.from) to \(upcaster.to); keep one")
            }
            upcasters.append(upcaster)
        }
        settings.chains = UpcastChains(upcasters)
        return settings
    }
}

/// The schemas and type settings of a directory.
public struct SchemaSet: Sendable {
    public var schemas: [RegisteredSchema] = []
    public var settings: [String: SchemaTypeSettings] = [:]
}

/// The agent's schema registry: schemas per event type and version, from the `--schemas` directory (files
/// `TYPE/VERSION.json` and `TYPE.json` settings, checked at startup) and registered at runtime (kept in
/// `DATA/schemas/`, written atomically and fsynced). Every schema is compiled once and checked against the draft-07
/// meta-schema; a type's consecutive versions follow its compatibility mode, taking its upcasters into account.
public final class SchemaRegistry: Sendable {
    struct State {
        var schemas: [String: [String: RegisteredSchema]] = [:]
        var settings: [String: SchemaTypeSettings] = [:]
    }

    private let state = Mutex(State())
    /// Held while a runtime change is written, so that changes land one at a time.
    private let changes = Mutex<Void>(())
    let storeDirectory: String
    /// How a type's consecutive versions must relate (`schema.compatibility`) unless the type says otherwise.
    public let compatibility: SchemaCompatibility

    /// Loads the directory's schemas, then those registered at runtime. A bad file is `FILE: reason`.
    public init(directory: String?, storeDirectory: String, compatibility: SchemaCompatibility = .none) throws(SchemaError) {
        self.storeDirectory = storeDirectory
        self.compatibility = compatibility
        var loaded = State()
        if let directory, !directory.isEmpty {
            let set = try Self.loadDirectory(directory, fromDirectory: true, compatibility: compatibility)
            for entry in set.schemas { loaded.schemas[entry.type, default: [:]][entry.version] = entry }
            loaded.settings = set.settings
        }
        if FileManager.default.fileExists(atPath: storeDirectory) {
            let set = try Self.loadDirectory(storeDirectory, fromDirectory: false, compatibility: .none, known: loaded.schemas)
            for entry in set.schemas where loaded.schemas[entry.type]?[entry.version] == nil {
                loaded.schemas[entry.type, default: [:]][entry.version] = entry
            }
            for (type, settings) in set.settings where loaded.settings[type] == nil { loaded.settings[type] = settings }
        }
        state.withLock { $0 = loaded }
    }

    /// Every `TYPE/VERSION.json` and `TYPE.json` under `directory`, compiled, each version compatible with the one
    /// before it; the first bad one throws `FILE: reason`. `known` adds schemas registered elsewhere that settings
    /// may refer to.
    public static func loadDirectory(_ directory: String, fromDirectory: Bool, compatibility: SchemaCompatibility = .none,
                                     known: [String: [String: RegisteredSchema]] = [:]) throws(SchemaError) -> SchemaSet {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SchemaError("\(directory): not a directory; --schemas names a directory of TYPE/VERSION.json files")
        }
        var out = SchemaSet()
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        var settingsFiles: [String: String] = [:]
        for name in names {
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                guard name.hasSuffix(".json") else {
                    throw SchemaError("\(path): expected a directory named after an event type holding VERSION.json files, or TYPE.json with the type's settings")
                }
                settingsFiles[String(name.dropLast(5))] = path
                continue
            }
            let type = name
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() where !file.hasPrefix(".") {
                let filePath = path + "/" + file
                guard file.hasSuffix(".json") else { throw SchemaError("\(filePath): schema files are named VERSION.json") }
                let version = String(file.dropLast(5))
                do throws(SchemaError) {
                    try validateName(type, what: "event type")
                    try validateName(version, what: "version")
                    guard let data = FileManager.default.contents(atPath: filePath) else { throw SchemaError("cannot be read") }
                    out.schemas.append(try compile(type: type, version: version, bytes: Array(data), fromDirectory: fromDirectory))
                } catch {
                    throw SchemaError("\(filePath): \(error.message)")
                }
            }
        }
        for (type, path) in settingsFiles.sorted(by: { $0.key < $1.key }) {
            let versions = Set(out.schemas.filter { $0.type == type }.map(\.version)).union(known[type].map { Set($0.keys) } ?? [])
            do throws(SchemaError) {
                try validateName(type, what: "event type")
                guard let data = FileManager.default.contents(atPath: path) else { throw SchemaError("cannot be read") }
                out.settings[type] = try SchemaTypeSettings.parse(Array(data), type: type, versions: versions, fromDirectory: fromDirectory)
            } catch {
                throw SchemaError("\(path): \(error.message)")
            }
        }
        for type in Set(out.schemas.map(\.type)).sorted() {
            let versions = Dictionary(out.schemas.filter { $0.type == type }.map { ($0.version, $0) }, uniquingKeysWith: { a, _ in a })
            if let problem = compatibilityProblem(versions, out.settings[type], agent: compatibility) {
                throw SchemaError("\(directory)/\(type)/\(problem.next).json: not \(problem.mode.rawValue) compatible with \(problem.previous) (schema.compatibility): \(problem.reason)")
            }
        }
        return out
    }

    /// The first pair of consecutive versions that does not follow the type's mode (with its upcasters), or nil.
    static func compatibilityProblem(_ versions: [String: RegisteredSchema], _ settings: SchemaTypeSettings?, agent: SchemaCompatibility)
        -> (previous: String, next: String, mode: SchemaCompatibility, reason: String)? {
        let mode = settings?.compatibility ?? agent
        guard mode != .none else { return nil }
        let ordered = versions.keys.sorted(by: versionOrder)
        for (previous, next) in zip(ordered, ordered.dropFirst()) {
            let chain = settings?.chains.path(from: previous, to: next) ?? []
            if let reason = mode.problem(old: versions[previous]!.source, new: versions[next]!.source, oldLabel: previous, newLabel: next, upcasters: chain) {
                return (previous, next, mode, reason)
            }
        }
        return nil
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
        state.withLock { $0.schemas[type]?[version] }
    }

    /// The versions of a type, oldest first (dotted numbers compare numerically: 1.9 < 1.10 < 2.0).
    public func versions(of type: String) -> [String] {
        state.withLock { ($0.schemas[type].map { Array($0.keys) } ?? []) }.sorted(by: Self.versionOrder)
    }

    public var types: [String] { state.withLock { Set($0.schemas.keys).union($0.settings.keys) }.sorted() }

    public var isEmpty: Bool { state.withLock { $0.schemas.isEmpty } }

    public func settings(of type: String) -> SchemaTypeSettings? {
        state.withLock { $0.settings[type] }
    }

    /// The compatibility mode that applies to a type.
    public func compatibility(of type: String) -> SchemaCompatibility {
        settings(of: type)?.compatibility ?? compatibility
    }

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
            let (existing, versions, settings) = state.withLock { ($0.schemas[type]?[version], $0.schemas[type] ?? [:], $0.settings[type]) }
            if existing?.fromDirectory == true {
                throw BrokerError(.conflict, "schema \(type) \(version) comes from the --schemas directory; change the file there")
            }
            var proposed = versions
            proposed[version] = entry
            if let problem = Self.compatibilityProblem(proposed, settings, agent: compatibility) {
                let what = problem.next == version
                    ? "schema \(type) \(version) is not \(problem.mode.rawValue) compatible with \(problem.previous)"
                    : "schema \(type) \(version) would make \(problem.next) not \(problem.mode.rawValue) compatible with it"
                throw BrokerError(.conflict, "\(what) (schema.compatibility): \(problem.reason)", attribute: "schema")
            }
            try write(type + "/" + version + ".json", bytes, what: "schema", directory: storeDirectory + "/" + type)
            state.withLock { $0.schemas[type, default: [:]][version] = entry }
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
            if let user = settings(of: type)?.chains.upcasters.first(where: { $0.from == version || $0.to == version }) {
                throw BrokerError(.conflict, "schema \(type) \(version) is used by the upcaster from \(user.from) to \(user.to); change the type's settings (PUT /v1/schemas/\(type)) first")
            }
            try remove(type + "/" + version + ".json", what: "schema")
            state.withLock { state in
                state.schemas[type]?.removeValue(forKey: version)
                if state.schemas[type]?.isEmpty == true { state.schemas.removeValue(forKey: type) }
            }
        }
    }

    /// Registers (or replaces) a type's runtime settings (compatibility and upcasters), durably; returns whether
    /// they are new. Refused (409) when the type's versions would not follow them.
    public func putSettings(type: String, bytes: [UInt8]) throws(BrokerError) -> Bool {
        try changes.withLock { _ throws(BrokerError) -> Bool in
            let (existing, versions) = state.withLock { ($0.settings[type], $0.schemas[type] ?? [:]) }
            if existing?.fromDirectory == true {
                throw BrokerError(.conflict, "the settings of \(type) come from the --schemas directory (\(type).json); change the file there")
            }
            let settings: SchemaTypeSettings
            do throws(SchemaError) {
                try Self.validateName(type, what: "event type")
                settings = try SchemaTypeSettings.parse(bytes, type: type, versions: Set(versions.keys), fromDirectory: false)
            } catch {
                throw BrokerError.badRequest(error.message, attribute: "settings")
            }
            if let problem = Self.compatibilityProblem(versions, settings, agent: compatibility) {
                throw BrokerError(.conflict, "with these settings \(type) \(problem.next) is not \(problem.mode.rawValue) compatible with \(problem.previous): \(problem.reason)", attribute: "settings")
            }
            try write(type + ".json", bytes, what: "type settings", directory: storeDirectory)
            state.withLock { $0.settings[type] = settings }
            return existing == nil
        }
    }

    public func deleteSettings(type: String) throws(BrokerError) {
        try changes.withLock { _ throws(BrokerError) in
            guard let existing = settings(of: type) else {
                throw BrokerError(.notFound, "\(type) has no settings of its own; it follows the agent's schema.compatibility and has no upcasters")
            }
            if existing.fromDirectory {
                throw BrokerError(.conflict, "the settings of \(type) come from the --schemas directory (\(type).json); remove the file there")
            }
            if let problem = Self.compatibilityProblem(state.withLock { $0.schemas[type] ?? [:] }, nil, agent: compatibility) {
                throw BrokerError(.conflict, "without its settings \(type) \(problem.next) is not \(problem.mode.rawValue) compatible with \(problem.previous): \(problem.reason)", attribute: "settings")
            }
            try remove(type + ".json", what: "type settings")
            state.withLock { _ = $0.settings.removeValue(forKey: type) }
        }
    }

    private func write(_ name: String, _ bytes: [UInt8], what: String, directory: String) throws(BrokerError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try writeFileAtomically(storeDirectory + "/" + name, bytes)
        } catch let error as LogError where error.isNoSpace {
            throw BrokerError(.insufficientStorage, "cannot save the \(what): the data directory's file system is full (\(error.message)); nothing was changed")
        } catch {
            throw BrokerError(.internal, "cannot save the \(what) to \(storeDirectory): \(error); nothing was changed")
        }
    }

    private func remove(_ name: String, what: String) throws(BrokerError) {
        do {
            try FileManager.default.removeItem(atPath: storeDirectory + "/" + name)
        } catch {
            throw BrokerError(.internal, "cannot remove the \(what) from \(storeDirectory): \(error)")
        }
    }
}
