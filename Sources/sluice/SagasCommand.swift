import ArgumentParser
import Foundation
import SluiceBroker
import SluiceSaga

/// `sluice sagas`: list, show and start sagas through a running agent's API, and check definition files.
struct SagasCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sagas",
        abstract: "List, show and start sagas (talks to the running agent); check saga definition files.",
        subcommands: [SagasList.self, SagasShow.self, SagasStart.self, SagasCheck.self]
    )
}

struct SagasList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Sagas, newest first, with status, current step and duration.")

    @OptionGroup var agent: AgentOptions
    @Option(name: .long, help: "Only this saga type.")
    var type: String?
    @Option(name: .long, help: "Only this status: running, compensating, completed, compensated, failed, timed_out, needs_intervention.")
    var status: String?
    @Option(name: .long, help: "Most sagas to list.")
    var limit = 100
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 10000") }
        if let status, SagaStatus(rawValue: status) == nil {
            throw ValidationError("--status \(status) is not one of \(SagaStatus.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        var query = ["limit=\(limit)"]
        if let type { query.append("type=\(type.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? type)") }
        if let status { query.append("status=\(status)") }
        let answer = try await agent.call(.GET, "/v1/sagas?" + query.joined(separator: "&"))
        if json { return printJSON(answer) }
        writeLine(cell("ID", 38) + cell("TYPE", 16) + cell("STATUS", 20) + cell("STEP", 18) + cell("STARTED", 26) + "DURATION")
        for saga in answer["sagas"] as? [[String: Any]] ?? [] {
            let duration = (saga["duration_seconds"] as? Double).map { String(format: "%.3f s", $0) } ?? "-"
            writeLine(cell(saga["id"] as? String ?? "", 38) + cell(saga["type"] as? String ?? "", 16) + cell(saga["status"] as? String ?? "", 20)
                + cell(saga["current_step"] as? String ?? saga["failed_step"] as? String ?? "-", 18) + cell(saga["started_at"] as? String ?? "", 26) + duration)
        }
    }
}

struct SagasShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "One saga: its data, and every step with its times, outcome and compensation.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The saga id (for observed sagas, the correlation id).")
    var id: String
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let saga = try await agent.call(.GET, "/v1/sagas/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id)")
        if json { return printJSON(saga) }
        writeLine("saga \(saga["id"] ?? "") (\(saga["type"] ?? ""), \(saga["kind"] ?? "")): \(saga["status"] ?? "")")
        writeLine("  started \(saga["started_at"] ?? "")" + ((saga["finished_at"] as? String).map { ", finished \($0)" } ?? "")
            + ((saga["duration_seconds"] as? Double).map { String(format: " after %.3f s", $0) } ?? ""))
        if let reason = saga["reason"] as? String { writeLine("  reason: \(reason)") }
        for step in saga["steps"] as? [[String: Any]] ?? [] {
            var line = "  - \((step["name"] as? String ?? "").padding(toLength: 18, withPad: " ", startingAt: 0)) \((step["status"] as? String ?? "").padding(toLength: 11, withPad: " ", startingAt: 0))"
            if let duration = step["duration_seconds"] as? Double { line += String(format: " %.3f s", duration) }
            if let reply = step["reply_type"] as? String { line += "  reply \(reply)" }
            if let error = step["error"] as? String { line += "  (\(error))" }
            writeLine(line)
            if let compensation = step["compensation"] as? [String: Any] {
                writeLine("      compensation \(compensation["status"] ?? ""), \(compensation["attempts"] ?? 0) attempt(s)"
                    + ((compensation["last_error"] as? String).map { ", last error: \($0)" } ?? ""))
            }
        }
        writeLine("  data: " + String(decoding: (try? JSONSerialization.data(withJSONObject: saga["data"] ?? [:], options: [.sortedKeys, .fragmentsAllowed])) ?? Data(), as: UTF8.self))
    }
}

struct SagasStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a saga of TYPE with --data (a JSON object).")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The saga type, as declared.")
    var type: String
    @Option(name: .long, help: "The saga's data, a JSON object.")
    var data = "{}"
    @Option(name: .long, help: "A saga id of your own (starting twice with one id starts one saga).")
    var id: String?

    func run() async throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else {
            throw CLIError.badInput("--data must be a JSON object, e.g. --data '{\"order_id\": \"o-1\"}'")
        }
        let path = "/v1/sagas/\(type)" + (id.map { "?id=\($0.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? $0)" } ?? "")
        let saga = try await agent.call(.POST, path, body: object)
        writeLine("\(saga["id"] ?? "") \(saga["status"] ?? "")")
    }
}

struct SagasCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check saga definition files as `sluice serve` would (exit 2 with file:line on the first problem).")

    @Argument(help: "YAML files with sagas and observed_sagas sections.")
    var files: [String]

    func run() async throws {
        let catalog: SagaCatalog
        do {
            catalog = try SagaCatalog.load(files: files)
        } catch {
            throw CLIError.badInput("\(error)")
        }
        for saga in catalog.sagas {
            writeLine("saga \(saga.type): \(saga.steps.count) steps (\(saga.steps.map(\.name).joined(separator: " → ")))"
                + (saga.triggerType.map { ", started by \($0)" } ?? "") + (saga.timeoutMs > 0 ? ", timeout \(saga.timeoutMs) ms" : ""))
        }
        for saga in catalog.observed {
            writeLine("observed saga \(saga.type): starts on \(saga.start.joined(separator: ", ")), timeout \(saga.timeoutMs) ms")
        }
        if catalog.isEmpty { writeLine("no sagas declared in \(files.joined(separator: ", "))") }
    }
}
