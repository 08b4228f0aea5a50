import Foundation
public import SluiceSchema
public import SluiceBroker
public import SluiceDelivery
import SluiceLog
import Yams

/// A command the engine publishes: to `topic` (or, without one, to the topic the agent's routes give `type`),
/// with data built from the saga's ``template`` (or, without one, the saga's data merged with every reply's).
public struct SagaCommand: Sendable, Equatable {
    public var topic: String?
    public var type: String
    public var template: JSONValue?
}

/// How a completed step is undone.
public struct SagaCompensation: Sendable, Equatable {
    public var command: SagaCommand
    /// Reply types that mean the compensation is done; empty means publishing the command is enough.
    public var success: [String]
    public var failure: [String]
    public var replyTopic: String?
    public var timeoutMs: Int64
    public var retry: RetryPolicy
}

public struct SagaStep: Sendable, Equatable {
    public var name: String
    public var command: SagaCommand
    public var success: [String]
    public var failure: [String]
    public var replyTopic: String?
    public var timeoutMs: Int64
    /// nil: nothing to undo (declared `compensation: none`, or the last step without one).
    public var compensation: SagaCompensation?
    public var line: Int
}

/// An orchestrated saga: ordered steps, each a command and the replies that end it, with compensations that
/// undo completed steps in reverse order when a later one fails or times out.
public struct SagaDefinition: Sendable, Equatable {
    public var type: String
    public var steps: [SagaStep]
    /// 0: no saga-wide timeout (each step still has its own).
    public var timeoutMs: Int64
    public var triggerType: String?
    public var triggerTopic: String?
    /// Where `<type>.completed` (and the other outcomes) are published, if anywhere.
    public var outcomeTopic: String?
    public var file: String
    public var line: Int
}

/// A choreographed saga Sluice only watches: events of `start` types open one (keyed by correlation id), the
/// other types end it; durations and outcomes are measured, nothing is sent.
public struct ObservedSagaDefinition: Sendable, Equatable {
    public var type: String
    public var start: [String]
    public var success: [String]
    public var failure: [String]
    /// When set, a failure waits for one of these (outcome `compensated`) until the timeout (outcome `failed`).
    public var compensated: [String]
    public var timeoutMs: Int64
    /// nil: the topics the agent's routes give the declared types.
    public var topics: [String]?
    public var file: String
    public var line: Int

    public var allTypes: [String] { start + success + failure + compensated }
}

/// A definition Sluice cannot run, with the file and line at fault.
public struct SagaDefinitionError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { "\(file):\(line): \(reason)" }
}

/// Every saga definition of the agent, parsed from the config file's and the `--sagas` file's `sagas` and
/// `observed_sagas` sections.
public struct SagaCatalog: Sendable, Equatable {
    public var sagas: [SagaDefinition] = []
    public var observed: [ObservedSagaDefinition] = []

    public init() {}

    public var isEmpty: Bool { sagas.isEmpty && observed.isEmpty }
    public func saga(_ type: String) -> SagaDefinition? { sagas.first { $0.type == type } }
    public var typeNames: [String] { sagas.map(\.type) + observed.map(\.type) }

    /// Loads and checks the definitions in each file (missing sections are fine); names must be unique across files.
    public static func load(files: [String]) throws(SagaDefinitionError) -> SagaCatalog {
        var catalog = SagaCatalog()
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw SagaDefinitionError(file: file, line: 0, reason: "cannot read the file; check the path")
            }
            try catalog.add(yaml: text, file: file)
        }
        return catalog
    }

    /// Adds the definitions of one YAML document.
    public mutating func add(yaml text: String, file: String) throws(SagaDefinitionError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw SagaDefinitionError(file: file, line: 0, reason: "not valid YAML: \(error)")
        }
        guard let mapping = root?.mapping else { return }
        let parser = DefinitionParser(file: file)
        for (key, value) in mapping {
            switch key.string {
            case "sagas":
                guard let list = value.sequence else { throw parser.error(value, "sagas must be a list of saga definitions ({type, steps, …})") }
                for item in list {
                    let saga = try parser.saga(item)
                    try checkUnique(saga.type, line: saga.line, file: file)
                    sagas.append(saga)
                }
            case "observed_sagas":
                guard let list = value.sequence else {
                    throw parser.error(value, "observed_sagas must be a list of {type, start, success, failure, compensated, timeout_ms}")
                }
                for item in list {
                    let saga = try parser.observed(item)
                    try checkUnique(saga.type, line: saga.line, file: file)
                    observed.append(saga)
                }
            default:
                continue
            }
        }
    }

    private func checkUnique(_ type: String, line: Int, file: String) throws(SagaDefinitionError) {
        if let other = sagas.first(where: { $0.type == type }) {
            throw SagaDefinitionError(file: file, line: line, reason: "saga type '\(type)' is already declared at \(other.file):\(other.line); saga types must be unique")
        }
        if let other = observed.first(where: { $0.type == type }) {
            throw SagaDefinitionError(file: file, line: line, reason: "saga type '\(type)' is already declared at \(other.file):\(other.line); saga types must be unique")
        }
    }
}

/// Reads definitions from YAML nodes, so that every error names the line it is about.
struct DefinitionParser {
    let file: String

    static let sagaKeys: Set<String> = ["type", "steps", "timeout_ms", "trigger", "outcome_topic"]
    static let stepKeys: Set<String> = ["name", "command", "success", "failure", "reply_topic", "timeout_ms", "compensation"]
    static let commandKeys: Set<String> = ["topic", "type", "data"]
    static let compensationKeys: Set<String> = ["command", "success", "failure", "reply_topic", "timeout_ms", "retry"]
    static let retryKeys: Set<String> = ["max_attempts", "initial_backoff_ms", "multiplier", "max_backoff_ms", "jitter"]
    static let observedKeys: Set<String> = ["type", "start", "success", "failure", "compensated", "timeout_ms", "topics"]

    func error(_ node: Node?, _ reason: String) -> SagaDefinitionError {
        SagaDefinitionError(file: file, line: node?.mark?.line ?? 0, reason: reason)
    }

    func mapping(_ node: Node, _ what: String, keys: Set<String>) throws(SagaDefinitionError) -> Node.Mapping {
        guard let mapping = node.mapping else { throw error(node, "\(what) must be a mapping with \(keys.sorted().joined(separator: ", "))") }
        for (key, _) in mapping where !keys.contains(key.string ?? "") {
            throw error(key, "unknown field '\(key.string ?? "?")' in \(what); known: \(keys.sorted().joined(separator: ", "))")
        }
        return mapping
    }

    func name(_ node: Node?, _ what: String, in parent: Node) throws(SagaDefinitionError) -> String {
        guard let node else { throw error(parent, "\(what) is required") }
        guard let text = node.scalar?.string, TopicName.isValid(text) else {
            throw error(node, "\(what) '\(node.scalar?.string ?? "…")' is invalid: use 1 to 249 characters from A-Z, a-z, 0-9, '.', '_' and '-'")
        }
        return text
    }

    func topic(_ node: Node?, _ what: String) throws(SagaDefinitionError) -> String? {
        guard let node else { return nil }
        guard let text = node.scalar?.string, TopicName.isValid(text) else { throw error(node, "\(what) '\(node.scalar?.string ?? "…")' is not a valid topic name") }
        return text
    }

    /// An event type or a list of them.
    func types(_ node: Node?, _ what: String, required: Bool, in parent: Node) throws(SagaDefinitionError) -> [String] {
        guard let node else {
            if required { throw error(parent, "\(what) is required: the event type (or list of types) it waits for") }
            return []
        }
        var out: [String] = []
        if let text = node.scalar?.string, !text.isEmpty {
            out = [text]
        } else if let list = node.sequence {
            for item in list {
                guard let text = item.scalar?.string, !text.isEmpty else { throw error(item, "\(what) must list event types (strings)") }
                out.append(text)
            }
        }
        if out.isEmpty && required { throw error(node, "\(what) must name at least one event type") }
        if node.scalar == nil && node.sequence == nil { throw error(node, "\(what) must be an event type or a list of them") }
        return out
    }

    func milliseconds(_ node: Node?, _ what: String, default value: Int64, minimum: Int64 = 1) throws(SagaDefinitionError) -> Int64 {
        guard let node else { return value }
        guard let number = node.scalar.flatMap({ Int64($0.string) }), number >= minimum, number <= 31 * 86_400_000 else {
            throw error(node, "\(what) must be an integer number of milliseconds from \(minimum) to \(31 * 86_400_000), got \(node.scalar?.string ?? "a non-scalar")")
        }
        return number
    }

    // MARK: - Orchestrated

    func saga(_ node: Node) throws(SagaDefinitionError) -> SagaDefinition {
        let map = try mapping(node, "a saga", keys: Self.sagaKeys)
        let type = try name(map["type"], "the saga's type", in: node)
        let line = node.mark?.line ?? 0
        var saga = SagaDefinition(type: type, steps: [], timeoutMs: try milliseconds(map["timeout_ms"], "saga \(type): timeout_ms", default: 0, minimum: 0),
                                  triggerType: nil, triggerTopic: nil, outcomeTopic: try topic(map["outcome_topic"], "saga \(type): outcome_topic"),
                                  file: file, line: line)
        if let trigger = map["trigger"] {
            if let text = trigger.scalar?.string {
                saga.triggerType = text
            } else {
                let triggerMap = try mapping(trigger, "saga \(type): trigger", keys: ["type", "topic"])
                guard let text = triggerMap["type"]?.scalar?.string, !text.isEmpty else { throw error(trigger, "saga \(type): trigger needs the event type that starts the saga") }
                saga.triggerType = text
                saga.triggerTopic = try topic(triggerMap["topic"], "saga \(type): trigger.topic")
            }
        }
        guard let stepsNode = map["steps"] else { throw error(node, "saga \(type) has no steps; list them under steps:") }
        guard let list = stepsNode.sequence, !list.isEmpty else { throw error(stepsNode, "saga \(type): steps must be a non-empty list") }
        for (index, item) in list.enumerated() {
            let step = try step(item, saga: type, index: index, isLast: index == list.count - 1, before: saga.steps.map(\.name))
            if let earlier = saga.steps.first(where: { $0.name == step.name }) {
                throw error(item, "saga \(type): step name '\(step.name)' is used twice (first at line \(earlier.line)); step names must be unique")
            }
            saga.steps.append(step)
        }
        return saga
    }

    func step(_ node: Node, saga: String, index: Int, isLast: Bool, before: [String]) throws(SagaDefinitionError) -> SagaStep {
        let map = try mapping(node, "saga \(saga): step \(index + 1)", keys: Self.stepKeys)
        let stepName = try name(map["name"], "saga \(saga): step \(index + 1)'s name", in: node)
        let at = "saga \(saga), step \(stepName)"
        guard let commandNode = map["command"] else { throw error(node, "\(at): command is required ({topic, type, data})") }
        let command = try self.command(commandNode, at: at, visible: before)
        let success = try types(map["success"], "\(at): success", required: true, in: node)
        let failure = try types(map["failure"], "\(at): failure", required: false, in: node)
        if let both = success.first(where: failure.contains) { throw error(map["failure"], "\(at): '\(both)' is listed under both success and failure") }
        var step = SagaStep(name: stepName, command: command, success: success, failure: failure,
                            replyTopic: try topic(map["reply_topic"], "\(at): reply_topic"),
                            timeoutMs: try milliseconds(map["timeout_ms"], "\(at): timeout_ms", default: 30_000), compensation: nil,
                            line: node.mark?.line ?? 0)
        switch map["compensation"] {
        case nil:
            if !isLast {
                throw error(node, "\(at) has no compensation, but later steps can fail and it would then need undoing; add compensation: {command: {topic, type}} or write compensation: none if there is nothing to undo")
            }
        case let node? where node.scalar?.string == "none":
            break
        case let node?:
            step.compensation = try compensation(node, at: at + ": compensation", visible: before + [stepName])
        }
        return step
    }

    func command(_ node: Node, at: String, visible: [String]) throws(SagaDefinitionError) -> SagaCommand {
        let map = try mapping(node, "\(at): command", keys: Self.commandKeys)
        guard let type = map["type"]?.scalar?.string, !type.isEmpty else { throw error(node, "\(at): command needs a type (the command event's type)") }
        var command = SagaCommand(topic: try topic(map["topic"], "\(at): command topic"), type: type, template: nil)
        if let data = map["data"] {
            try checkReferences(data, at: at, visible: visible)
            command.template = JSONValue(any: (try? Yams.load(yaml: Yams.serialize(node: data))) ?? nil)
        }
        return command
    }

    /// `${steps.NAME…}` must name a step the command can see (earlier steps; for a compensation, its own too).
    func checkReferences(_ node: Node, at: String, visible: [String]) throws(SagaDefinitionError) {
        switch node {
        case .scalar(let scalar):
            for reference in Template.references(in: scalar.string) {
                let parts = reference.split(separator: ".")
                guard let root = parts.first, ["saga", "data", "steps"].contains(root) else {
                    throw error(node, "\(at): ${\(reference)} is not a known reference; use ${saga.id}, ${data.FIELD} or ${steps.STEP.FIELD}")
                }
                if root == "steps" {
                    guard parts.count >= 2 else { throw error(node, "\(at): ${\(reference)} needs a step name, e.g. ${steps.payment.payment_id}") }
                    guard visible.contains(String(parts[1])) else {
                        throw error(node, "\(at): ${\(reference)} refers to step '\(parts[1])', which is unknown or not completed by then; known before this point: \(visible.isEmpty ? "none" : visible.joined(separator: ", "))")
                    }
                }
            }
        case .mapping(let mapping):
            for (_, value) in mapping { try checkReferences(value, at: at, visible: visible) }
        case .sequence(let sequence):
            for value in sequence { try checkReferences(value, at: at, visible: visible) }
        default:
            break
        }
    }

    func compensation(_ node: Node, at: String, visible: [String]) throws(SagaDefinitionError) -> SagaCompensation {
        let map = try mapping(node, at, keys: Self.compensationKeys)
        guard let commandNode = map["command"] else { throw error(node, "\(at): command is required ({topic, type, data})") }
        var compensation = SagaCompensation(
            command: try command(commandNode, at: at, visible: visible),
            success: try types(map["success"], "\(at): success", required: false, in: node),
            failure: try types(map["failure"], "\(at): failure", required: false, in: node),
            replyTopic: try topic(map["reply_topic"], "\(at): reply_topic"),
            timeoutMs: try milliseconds(map["timeout_ms"], "\(at): timeout_ms", default: 30_000), retry: RetryPolicy())
        if compensation.success.isEmpty && !compensation.failure.isEmpty {
            throw error(node, "\(at): failure types need success types too, or the compensation could never finish")
        }
        compensation.retry.initialBackoffMs = 500
        if let retryNode = map["retry"] {
            let retry = try mapping(retryNode, "\(at): retry", keys: Self.retryKeys)
            if let value = retry["max_attempts"] {
                guard let number = value.scalar.flatMap({ Int($0.string) }), (1...1000).contains(number) else { throw error(value, "\(at): retry.max_attempts must be an integer from 1 to 1000") }
                compensation.retry.maxAttempts = number
            }
            compensation.retry.initialBackoffMs = try milliseconds(retry["initial_backoff_ms"], "\(at): retry.initial_backoff_ms", default: 500)
            compensation.retry.maxBackoffMs = try milliseconds(retry["max_backoff_ms"], "\(at): retry.max_backoff_ms", default: 30_000)
            for (key, range) in [("multiplier", 1.0...100.0), ("jitter", 0.0...10.0)] {
                guard let value = retry[key] else { continue }
                guard let number = value.scalar.flatMap({ Double($0.string) }), range.contains(number) else {
                    throw error(value, "\(at): retry.\(key) must be a number from \(range.lowerBound) to \(range.upperBound)")
                }
                if key == "multiplier" { compensation.retry.multiplier = number } else { compensation.retry.jitter = number }
            }
            if compensation.retry.maxBackoffMs < compensation.retry.initialBackoffMs {
                throw error(retryNode, "\(at): retry.max_backoff_ms must be at least retry.initial_backoff_ms")
            }
        }
        return compensation
    }

    // MARK: - Observed

    func observed(_ node: Node) throws(SagaDefinitionError) -> ObservedSagaDefinition {
        let map = try mapping(node, "an observed saga", keys: Self.observedKeys)
        let type = try name(map["type"], "the observed saga's type", in: node)
        let at = "observed saga \(type)"
        var topics: [String]?
        if let node = map["topics"] {
            guard let list = node.sequence, !list.isEmpty else { throw error(node, "\(at): topics must be a non-empty list of topic names") }
            topics = []
            for item in list { topics!.append(try topic(item, "\(at): topics")!) }
        }
        let saga = ObservedSagaDefinition(
            type: type, start: try types(map["start"], "\(at): start", required: true, in: node),
            success: try types(map["success"], "\(at): success", required: true, in: node),
            failure: try types(map["failure"], "\(at): failure", required: false, in: node),
            compensated: try types(map["compensated"], "\(at): compensated", required: false, in: node),
            timeoutMs: try milliseconds(map["timeout_ms"], "\(at): timeout_ms", default: 600_000), topics: topics,
            file: file, line: node.mark?.line ?? 0)
        var seen: [String: String] = [:]
        for (role, list) in [("start", saga.start), ("success", saga.success), ("failure", saga.failure), ("compensated", saga.compensated)] {
            for type in list {
                if let other = seen[type] { throw error(node, "\(at): '\(type)' is listed under both \(other) and \(role)") }
                seen[type] = role
            }
        }
        if !saga.compensated.isEmpty && saga.failure.isEmpty {
            throw error(map["compensated"], "\(at): compensated types need failure types (a saga is compensated after it failed)")
        }
        return saga
    }
}

/// `${path}` references in command data.
public enum Template {
    /// The references in a string, without `${` and `}`.
    static func references(in text: String) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else { break }
            out.append(String(rest[start.upperBound..<end]).trimmingCharacters(in: .whitespaces))
            rest = rest[rest.index(after: end)...]
        }
        return out
    }

    /// The template with references replaced from `context`: a string that is exactly one reference becomes
    /// the referenced value (any JSON type); references inside longer strings become text. Missing values are null.
    public static func render(_ template: JSONValue, context: JSONValue) -> JSONValue {
        switch template {
        case .string(let text):
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            let references = references(in: trimmed)
            if references.count == 1, trimmed.hasPrefix("${"), trimmed.hasSuffix("}"), trimmed.firstRange(of: "}")?.upperBound == trimmed.endIndex {
                return context.lookup(references[0].split(separator: ".")) ?? .null
            }
            guard !references.isEmpty else { return template }
            // Each `${…}` in turn, as written (spaces inside the braces allowed).
            var out = ""
            var rest = Substring(text)
            while let start = rest.range(of: "${"), let end = rest[start.upperBound...].firstIndex(of: "}") {
                out += rest[..<start.lowerBound]
                let reference = rest[start.upperBound..<end].trimmingCharacters(in: .whitespaces)
                out += context.lookup(reference.split(separator: "."))?.interpolated ?? ""
                rest = rest[rest.index(after: end)...]
            }
            return .string(out + rest)
        case .array(let values):
            return .array(values.map { render($0, context: context) })
        case .object(let values):
            return .object(values.mapValues { render($0, context: context) })
        default:
            return template
        }
    }
}

extension SagaCatalog {
    /// The files saga definitions are read from: the config file, then `sagas.file` (`--sagas`).
    public static func files(config: SluiceConfig) -> [String] {
        var files: [String] = []
        if let file = config.configFile { files.append(file) }
        let extra = config.string("sagas.file")
        if !extra.isEmpty { files.append(extra) }
        return files
    }

    /// The agent's definitions.
    public static func load(config: SluiceConfig) throws(SagaDefinitionError) -> SagaCatalog {
        try load(files: files(config: config))
    }
}
