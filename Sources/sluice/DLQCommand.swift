import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SluiceDelivery

/// `sluice dlq`: inspect dead letters and replay them, through a running agent's API.
struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "List, show and replay dead letters (talks to the running agent).",
        subcommands: [DLQList.self, DLQShow.self, DLQReplay.self]
    )
}

/// Where the agent is and how to authenticate.
struct AgentOptions: ParsableArguments {
    @Option(name: .long, help: "The agent's API base URL.")
    var api = ProcessInfo.processInfo.environment["SLUICE_API"] ?? "http://127.0.0.1:7470"
    @Option(name: .long, help: "Bearer token when the agent has api.token set (default: $SLUICE_API_TOKEN).")
    var token: String?

    func validate() throws {
        guard let url = URL(string: api), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw ValidationError("--api \(api) is not an http(s) URL such as http://127.0.0.1:7470")
        }
    }

    /// Calls the agent; a problem answer becomes a CLIError (400 → exit 2, others → 1).
    func call(_ method: HTTPMethod, _ path: String, body: [String: Any]? = nil) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: api.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path)
        request.method = method
        if let token = token ?? ProcessInfo.processInfo.environment["SLUICE_API_TOKEN"] { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        // Fail fast when the agent is not there (no connection retries).
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let response: HTTPClientResponse
        let bytes: [UInt8]
        do {
            response = try await client.execute(request, timeout: .seconds(30))
            bytes = Array(buffer: try await response.body.collect(upTo: 64 << 20))
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw CLIError.failure("cannot reach the agent at \(api): \(error); start it with `sluice serve` or pass --api")
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
        guard (200..<300).contains(Int(response.status.code)) else {
            let detail = object["detail"] as? String ?? String(decoding: bytes, as: UTF8.self)
            throw response.status.code == 400 ? CLIError.badInput(detail) : CLIError.failure("\(response.status.code): \(detail)")
        }
        return object
    }
}

/// One cell of a table the commands print: the value (a missing or JSON null one as "-") cut to fit and padded to `width`.
func cell(_ value: Any?, _ width: Int) -> String {
    let text = value.map { $0 is NSNull ? "-" : "\($0)" } ?? "-"
    return String(text.prefix(width - 1)).padding(toLength: width, withPad: " ", startingAt: 0)
}

func printJSON(_ object: Any) {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]) else { return }
    writeLine(String(decoding: data, as: UTF8.self))
}

struct DLQList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Without a topic: every DLQ topic with its depth. With one: its unresolved dead letters.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "A DLQ topic, e.g. orders.dlq.")
    var topic: String?
    @Option(name: .long, help: "Most dead letters to list.")
    var limit = 100
    @Flag(name: .long, help: "Print the API's JSON.")
    var json = false

    func validate() throws {
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        guard let topic else {
            let answer = try await agent.call(.GET, "/v1/dlq")
            if json { return printJSON(answer) }
            writeLine("DLQ TOPIC".padding(toLength: 32, withPad: " ", startingAt: 0) + "DEPTH   OLDEST FAILURE")
            for entry in answer["dlq_topics"] as? [[String: Any]] ?? [] {
                let name = (entry["topic"] as? String ?? "").padding(toLength: 32, withPad: " ", startingAt: 0)
                let depth = String(entry["depth"] as? Int ?? 0).padding(toLength: 8, withPad: " ", startingAt: 0)
                writeLine(name + depth + (entry["oldest_failure"] as? String ?? "-"))
            }
            return
        }
        let answer = try await agent.call(.GET, "/v1/dlq/\(topic)?limit=\(limit)")
        if json { return printJSON(answer) }
        writeLine("PARTITION/OFFSET  ORIGINAL            EVENT TYPE            ERROR        ATTEMPTS REPLAYS LAST FAILURE")
        for letter in answer["dead_letters"] as? [[String: Any]] ?? [] {
            writeLine(cell("\(letter["partition"] ?? "")/\(letter["offset"] ?? "")", 18)
                + cell("\(letter["original_topic"] ?? "")/\(letter["original_partition"] ?? "")/\(letter["original_offset"] ?? "")", 20)
                + cell(letter["event_type"] as? String ?? "-", 22) + cell(letter["error_type"] as? String ?? "", 13)
                + cell("\(letter["attempts"] ?? "")", 9) + cell("\(letter["replays"] ?? "")", 8) + (letter["last_failure"] as? String ?? ""))
        }
    }
}

struct DLQShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "One dead letter: the event, its failure history and every header.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The DLQ topic.")
    var topic: String
    @Argument(help: "Partition of the dead letter in the DLQ topic.")
    var partition: Int
    @Argument(help: "Offset of the dead letter in the DLQ topic.")
    var offset: Int

    func validate() throws {
        guard partition >= 0, offset >= 0 else { throw ValidationError("partition and offset must not be negative") }
    }

    func run() async throws {
        printJSON(try await agent.call(.GET, "/v1/dlq/\(topic)/partitions/\(partition)/offsets/\(offset)"))
    }
}

struct DLQReplay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Re-deliver matching dead letters to their own subscription, with a progress bar.",
        discussion: "A letter that fails again returns to the DLQ with its history; after the subscription's max_replays it is parked in <topic>.poison.")

    @OptionGroup var agent: AgentOptions
    @Argument(help: "The DLQ topic, e.g. orders.dlq.")
    var topic: String
    @Option(name: .long, help: "Only letters of this subscription.")
    var subscription: String?
    @Option(name: .long, help: "Only this event type (a glob such as order.*).")
    var eventType: String?
    @Option(name: .long, help: "Only this error type: rejected, http_error, timeout or unavailable.")
    var errorType: String?
    @Option(name: .long, help: "Only letters whose last failure is at or after this RFC 3339 time.")
    var from: String?
    @Option(name: .long, help: "Only letters whose last failure is at or before this RFC 3339 time.")
    var to: String?
    @Option(name: .long, help: "Only this partition of the DLQ topic.")
    var partition: Int?
    @Option(name: .long, help: "Only letters at this DLQ offset or later.")
    var fromOffset: Int?
    @Option(name: .long, help: "Only letters at this DLQ offset or earlier.")
    var toOffset: Int?
    @Option(name: .long, help: "Events per second.")
    var rate: Double?
    @Option(name: .long, help: "At most this many letters.")
    var limit: Int?
    @Flag(name: .long, help: "No progress bar (the summary is still printed).")
    var quiet = false

    func validate() throws {
        if let rate, !ReplayRequest.rateLimits.contains(rate) {
            throw ValidationError("--rate must be events per second from \(ReplayRequest.rateLimits.lowerBound) to \(Int(ReplayRequest.rateLimits.upperBound)), got \(rate)")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let errorType, !["rejected", "http_error", "timeout", "unavailable"].contains(errorType) {
            throw ValidationError("--error-type must be rejected, http_error, timeout or unavailable")
        }
    }

    func run() async throws {
        var body: [String: Any] = [:]
        body["subscription"] = subscription
        body["event_type"] = eventType
        body["error_type"] = errorType
        body["from"] = from
        body["to"] = to
        body["partition"] = partition
        body["from_offset"] = fromOffset
        body["to_offset"] = toOffset
        body["rate_limit"] = rate
        body["limit"] = limit
        let started = try await agent.call(.POST, "/v1/dlq/\(topic)/replay", body: body)
        guard let id = started["id"] as? String else { throw CLIError.failure("the agent did not return a replay id") }
        var progress = started
        let interactive = !quiet && isatty(2) != 0
        while progress["state"] as? String != "done" {
            if interactive { drawBar(progress) }
            try await Task.sleep(for: .milliseconds(200))
            progress = try await agent.call(.GET, "/v1/dlq/replays/\(id)")
        }
        if interactive {
            drawBar(progress)
            writeLine("", to: 2)
        }
        writeLine("replayed \(progress["matched"] ?? 0) dead letters of \(topic): delivered \(progress["delivered"] ?? 0), "
                  + "back in the DLQ \(progress["dead_lettered_again"] ?? 0), poisoned \(progress["poisoned"] ?? 0), skipped \(progress["skipped"] ?? 0)")
    }

    func drawBar(_ progress: [String: Any]) {
        let matched = max(progress["matched"] as? Int ?? 0, 1)
        let done = progress["done"] as? Int ?? 0
        let width = 30
        let filled = min(width, done * width / matched)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let text = "\r[\(bar)] \(done)/\(progress["matched"] ?? 0) delivered \(progress["delivered"] ?? 0) dlq \(progress["dead_lettered_again"] ?? 0) poison \(progress["poisoned"] ?? 0)"
        FileHandle.standardError.write(Data(text.utf8))
    }
}
