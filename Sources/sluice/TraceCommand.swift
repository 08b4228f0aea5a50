import ArgumentParser
import Foundation

/// `sluice trace ID`: one correlation's journey as a timeline and a causation tree (talks to the running agent).
struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Show a correlation's journey: every event, delivery attempt, dead letter, replay and saga step, in time and as a causation tree."
    )

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The correlation id (or the id of a saga, for the trace of what started it).")
    var id: String
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let trace = try await agent.call(.GET, "/v1/traces/\(id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? id)")
        if json { return printJSON(trace) }
        for line in Self.render(trace) { writeLine(line) }
    }

    /// The trace as lines of text: a summary, the timeline, the causation tree.
    static func render(_ trace: [String: Any]) -> [String] {
        let totals = trace["totals"] as? [String: Any] ?? [:]
        let pending = trace["pending"] as? [String: Any] ?? [:]
        func number(_ object: [String: Any], _ key: String) -> Int { (object[key] as? NSNumber)?.intValue ?? 0 }
        var lines = [
            "trace \(trace["correlation_id"] as? String ?? "")  \(trace["status"] as? String ?? "")  "
                + String(format: "%.3f s", Double(number(trace, "duration_ms")) / 1000)
                + "  (\(number(totals, "events")) events, \(number(totals, "delivery_attempts")) delivery attempts, \(number(totals, "failures")) failed, "
                + "\(number(totals, "dead_letters")) dead-lettered, \(number(totals, "replays")) replays, \(number(totals, "sagas")) sagas)",
            "started \(trace["started_at"] as? String ?? "-"), last activity \(trace["last_activity_at"] as? String ?? "-")",
        ]
        let waitingSagas = pending["sagas"] as? [String] ?? []
        if number(pending, "deliveries") > 0 || !waitingSagas.isEmpty {
            lines.append("waiting for: \(number(pending, "deliveries")) deliveries" + (waitingSagas.isEmpty ? "" : ", sagas \(waitingSagas.joined(separator: ", "))"))
        }
        if number(totals, "dropped_hops") > 0 { lines.append("\(number(totals, "dropped_hops")) hops beyond trace.max.hops are not shown") }
        lines.append("")
        let hops = trace["hops"] as? [[String: Any]] ?? []
        let start = (hops.first?["time_ms"] as? NSNumber)?.int64Value ?? 0
        for hop in hops {
            let at = Double(((hop["time_ms"] as? NSNumber)?.int64Value ?? start) - start) / 1000
            let place = hop["topic"].map { "\($0)/\(hop["partition"] ?? 0)@\(hop["offset"] ?? 0)" } ?? ""
            var detail: [String] = []
            switch hop["kind"] as? String {
            case "event":
                detail = [hop["event_type"] as? String ?? "", place, "id=\(hop["event_id"] ?? "")"]
                if let source = hop["source"] { detail.append("source=\(source)") }
                if let cause = hop["causation_id"] { detail.append("caused by \(cause)") }
            case "delivery":
                detail = [hop["event_type"] as? String ?? "", place, "→ \(hop["subscription"] ?? "")", "attempt \(hop["attempt"] ?? 1)",
                          [hop["http_status"].map { "\($0)" }, hop["outcome"] as? String].compactMap { $0 }.joined(separator: " ")]
                if let latency = hop["latency_ms"] as? NSNumber { detail.append(String(format: "%.1f ms", latency.doubleValue)) }
            case "dead_letter":
                detail = [hop["event_type"] as? String ?? "", place, "→ \(hop["subscription"] ?? "")", "dead-lettered: \(hop["outcome"] ?? "")"]
            case "replay":
                detail = [hop["event_type"] as? String ?? "", place, "→ \(hop["subscription"] ?? "")", "replay: \(hop["outcome"] ?? "")"]
            case "saga":
                detail = [hop["saga_type"] as? String ?? "", hop["saga_id"] as? String ?? "", hop["outcome"] as? String ?? "",
                          hop["step"].map { "step \($0)" } ?? "", hop["saga_status"] as? String ?? ""]
            default:
                break
            }
            lines.append(String(format: "+%8.3fs  ", at) + cell(hop["kind"], 12) + detail.filter { !$0.isEmpty }.joined(separator: "  "))
        }
        let tree = trace["tree"] as? [[String: Any]] ?? []
        if !tree.isEmpty {
            lines.append("")
            lines.append("causation:")
            func walk(_ node: [String: Any], prefix: String, last: Bool, root: Bool) {
                let deliveries = (node["deliveries"] as? [[String: Any]] ?? []).map { "\($0["subscription"] ?? ""): \($0["outcome"] ?? "")" }
                let sagas = (node["sagas_started"] as? [String] ?? []).map { "started saga \($0)" }
                let label = "\(node["type"] ?? "") \(node["event_id"] ?? "") (\(node["topic"] ?? "")/\(node["partition"] ?? 0)@\(node["offset"] ?? 0))"
                    + ((deliveries + sagas).isEmpty ? "" : "  " + (deliveries + sagas).joined(separator: ", "))
                lines.append(root ? label : prefix + (last ? "└─ " : "├─ ") + label)
                let children = node["children"] as? [[String: Any]] ?? []
                for (index, child) in children.enumerated() {
                    walk(child, prefix: root ? "" : prefix + (last ? "   " : "│  "), last: index == children.count - 1, root: false)
                }
            }
            for node in tree { walk(node, prefix: "", last: true, root: true) }
        }
        return lines
    }
}

/// `sluice traces`: traces by status, most recent activity first.
struct TracesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traces",
        abstract: "List correlation traces, most recent activity first, with their status (in_flight, stale, complete)."
    )

    @OptionGroup var agent: AgentOptions
    @Option(name: .long, help: "Only this status: in_flight, stale, complete.")
    var status: String?
    @Option(name: .long, help: "Most traces to list.")
    var limit = 100
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 10000") }
        if let status, !["in_flight", "stale", "complete"].contains(status) {
            throw ValidationError("--status \(status) is not one of in_flight, stale, complete")
        }
    }

    func run() async throws {
        var query = ["limit=\(limit)"]
        if let status { query.append("status=\(status)") }
        let answer = try await agent.call(.GET, "/v1/traces?" + query.joined(separator: "&"))
        if json { return printJSON(answer) }
        let counts = answer["counts"] as? [String: Any] ?? [:]
        writeLine("in flight \(counts["in_flight"] ?? 0), stale \(counts["stale"] ?? 0), complete \(counts["complete"] ?? 0)")
        writeLine(cell("CORRELATION ID", 38) + cell("STATUS", 11) + cell("FIRST EVENT", 24) + cell("EVENTS", 8) + cell("HOPS", 7) + cell("LAST ACTIVITY", 26) + "DURATION")
        for trace in answer["traces"] as? [[String: Any]] ?? [] {
            let duration = ((trace["duration_ms"] as? NSNumber)?.doubleValue).map { String(format: "%.3f s", $0 / 1000) } ?? "-"
            writeLine(cell(trace["correlation_id"], 38) + cell(trace["status"], 11) + cell(trace["first_event_type"], 24) + cell(trace["events"], 8)
                + cell(trace["hops"], 7) + cell(trace["last_activity_at"], 26) + duration)
        }
    }
}
