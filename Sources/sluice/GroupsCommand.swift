import ArgumentParser
import Foundation

/// `sluice groups`: consumer groups and their offsets, through a running agent's API.
struct GroupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "groups",
        abstract: "List and describe consumer groups and reset their offsets (talks to the running agent).",
        subcommands: [GroupsList.self, GroupsDescribe.self, GroupsReset.self]
    )
}

/// Where a reset or rewind goes: one of Kafka's `--reset-offsets` modes, as the API's body takes it.
struct ResetTargetOptions: ParsableArguments {
    @Flag(name: .long, help: "To the oldest record still kept.")
    var toEarliest = false
    @Flag(name: .long, help: "To the log end (only records written from now on).")
    var toLatest = false
    @Option(name: .long, help: "To the first record at or after this RFC 3339 time, e.g. 2026-12-04T10:00:00Z.")
    var toDatetime: String?
    @Option(name: .long, help: "To this offset (moved into the log's range when outside it).")
    var toOffset: Int64?
    @Option(name: .long, parsing: .unconditional, help: "Move the committed offset by N records (negative: back, e.g. --shift-by -10).")
    var shiftBy: Int64?
    @Option(name: .long, help: "To the first record of this long ago: 1h, 90m, 1h30m, 2d, or ISO 8601 PT1H.")
    var byDuration: String?

    func validate() throws {
        let chosen = [toEarliest, toLatest, toDatetime != nil, toOffset != nil, shiftBy != nil, byDuration != nil].filter { $0 }.count
        guard chosen == 1 else {
            throw ValidationError("give exactly one of --to-earliest, --to-latest, --to-datetime T, --to-offset N, --shift-by N or --by-duration D")
        }
    }

    /// The body fields of the target.
    var body: [String: Any] {
        if toEarliest { return ["to": "earliest"] }
        if toLatest { return ["to": "latest"] }
        if let toDatetime { return ["to": toDatetime] }
        if let toOffset { return ["to": toOffset] }
        if let shiftBy { return ["shift_by": shiftBy] }
        return ["by_duration": byDuration ?? ""]
    }
}

/// Prints a reset plan as Kafka's tool does: one row per partition, the offset before and after.
func printResetPlan(_ answer: [String: Any], title: String) {
    writeLine(title)
    writeLine(cell("TOPIC", 28) + "PARTITION  CURRENT-OFFSET  NEW-OFFSET  LOG-START  LOG-END")
    for row in answer["partitions"] as? [[String: Any]] ?? [] {
        writeLine(cell(row["topic"], 28) + cell(row["partition"], 11) + cell(row["previous_offset"], 16) + cell(row["new_offset"], 12)
            + cell(row["log_start_offset"], 11) + "\(row["log_end_offset"] ?? "-")")
    }
}

/// The partitions of two answers as comparable rows.
func resetRows(_ answer: [String: Any]) -> [String] {
    (answer["partitions"] as? [[String: Any]] ?? []).map { "\($0["topic"] ?? "")/\($0["partition"] ?? "")→\($0["new_offset"] ?? "")" }
}

struct GroupsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every consumer group with its state, members and lag.")

    @OptionGroup var agent: AgentOptions
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let answer = try await agent.call(.GET, "/v1/groups")
        if json { return printJSON(answer) }
        writeLine(cell("GROUP", 32) + "STATE        MEMBERS  LAG       STATUS")
        for group in answer["groups"] as? [[String: Any]] ?? [] {
            writeLine(cell(group["name"], 32) + cell(group["state"], 13) + cell(group["members"], 9) + cell(group["lag"], 10) + "\(group["status"] ?? "")")
        }
    }
}

struct GroupsDescribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "A group's members and, per partition, its committed offset and lag.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The consumer group.")
    var group: String
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let answer = try await agent.call(.GET, "/v1/groups/\(group)")
        if json { return printJSON(answer) }
        let members = answer["members"] as? [[String: Any]] ?? []
        writeLine("group \(group): \(answer["state"] ?? "") (generation \(answer["generation"] ?? 0)), \(members.count) member(s), status \(answer["status"] ?? "")")
        writeLine(cell("TOPIC", 28) + "PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG       LAG-SECONDS  OWNER")
        let owners = Dictionary(members.flatMap { member in
            (member["assignment"] as? [[String: Any]] ?? []).map { ("\($0["topic"] ?? "")/\($0["partition"] ?? "")", member["member_id"] as? String ?? "") }
        }, uniquingKeysWith: { first, _ in first })
        for row in answer["partitions"] as? [[String: Any]] ?? [] {
            let key = "\(row["topic"] ?? "")/\(row["partition"] ?? "")"
            writeLine(cell(row["topic"], 28) + cell(row["partition"], 11) + cell(row["committed_offset"], 16) + cell(row["log_end_offset"], 16)
                + cell(row["lag"], 10) + cell((row["lag_seconds"] as? Double).map { String(format: "%.1f", $0) }, 13) + (owners[key] ?? "-"))
        }
    }
}

struct GroupsReset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Move an inactive group's committed offsets (Kafka's --reset-offsets): the plan is printed, then applied.",
        discussion: """
        Only a group without members can be reset: stop its consumers first (a subscription's group: use POST /v1/subscriptions/{name}/rewind). \
        Without --topic, every partition the group has committed offsets for is reset. Offsets outside a partition's range are moved to its \
        nearest end, as Kafka's tool does.
        """)

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The consumer group.")
    var group: String
    @OptionGroup var target: ResetTargetOptions
    @Option(name: .long, help: "A topic to reset, optionally with partitions: orders or orders:0,2 (repeatable).")
    var topic: [String] = []
    @Flag(name: .long, help: "Print the plan without applying it.")
    var dryRun = false
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        var body = target.body
        if !topic.isEmpty { body["topics"] = topic }
        body["dry_run"] = true
        let plan = try await agent.call(.POST, "/v1/groups/\(group)/offsets/reset", body: body)
        if dryRun {
            if json { return printJSON(plan) }
            return printResetPlan(plan, title: "plan for group \(group) (dry run, nothing applied):")
        }
        if !json { printResetPlan(plan, title: "plan for group \(group):") }
        body["dry_run"] = false
        let applied = try await agent.call(.POST, "/v1/groups/\(group)/offsets/reset", body: body)
        if json { return printJSON(applied) }
        if resetRows(applied) != resetRows(plan) {
            printResetPlan(applied, title: "the logs moved while planning; applied instead:")
        } else {
            writeLine("applied: \(resetRows(applied).count) partition(s) of group \(group) reset")
        }
    }
}

/// `sluice subscriptions`: push subscriptions, through a running agent's API.
struct SubscriptionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscriptions",
        abstract: "List push subscriptions and rewind one to re-deliver its events (talks to the running agent).",
        subcommands: [SubscriptionsList.self, SubscriptionsRewind.self]
    )
}

struct SubscriptionsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Every subscription with its endpoint, breaker and last rewind.")

    @OptionGroup var agent: AgentOptions
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        let answer = try await agent.call(.GET, "/v1/subscriptions")
        if json { return printJSON(answer) }
        writeLine(cell("SUBSCRIPTION", 24) + "BREAKER     IN-FLIGHT  REWIND                  ENDPOINT")
        for entry in answer["subscriptions"] as? [[String: Any]] ?? [] {
            let rewind = (entry["rewind"] as? [String: Any]).map { r in
                r["completed_at"] is String ? "\(r["id"] ?? "") done" : "\(r["id"] ?? "") \(r["remaining"] ?? 0) left"
            }
            writeLine(cell(entry["name"], 24) + cell(entry["circuit_breaker_state"], 12) + cell(entry["in_flight"], 11) + cell(rewind, 24) + "\(entry["endpoint"] ?? "")")
        }
    }
}

struct SubscriptionsRewind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewind",
        abstract: "Re-deliver a subscription's events from an earlier point (a projection rebuild).",
        discussion: """
        The subscription pauses, its group's offsets move on every partition of its topics, and it resumes. Events it had delivered before \
        carry the X-Sluice-Rewind header when delivered again; progress is in `sluice subscriptions list` and on /metrics.
        """)

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The subscription.")
    var name: String
    @OptionGroup var target: ResetTargetOptions
    @Flag(name: .long, help: "Print the plan without applying it.")
    var dryRun = false
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func run() async throws {
        var body = target.body
        body["dry_run"] = dryRun
        let answer = try await agent.call(.POST, "/v1/subscriptions/\(name)/rewind", body: body)
        if json { return printJSON(answer) }
        printResetPlan(answer, title: dryRun ? "plan for subscription \(name) (dry run, nothing applied):" : "subscription \(name) rewound (\(answer["rewind_id"] ?? "")):")
        writeLine("\(answer["events"] ?? 0) event(s) will be delivered again")
    }
}
