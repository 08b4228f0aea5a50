import ArgumentParser
import Dispatch
import Foundation
import SluiceLog

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the agent: open (and recover) the embedded log and keep it until SIGTERM or SIGINT.",
        discussion: "On SIGTERM/SIGINT everything accepted is flushed, the clean-shutdown marker is written, and the process exits 0."
    )

    @Option(name: .long, help: "Directory holding the log.")
    var dataDir: String = "./sluice-data"

    @Option(name: .customLong("retention-check-interval-ms"), help: "How often retention runs, in milliseconds.")
    var retentionCheckIntervalMs: Int64 = 300_000

    func validate() throws {
        guard retentionCheckIntervalMs >= 1 else {
            throw ValidationError("--retention-check-interval-ms must be at least 1, got \(retentionCheckIntervalMs)")
        }
    }

    func run() async throws {
        // Signals are caught before anything else, so a SIGTERM during recovery still ends in a clean stop.
        var sources: [any DispatchSourceSignal] = []
        let signals = AsyncStream<Int32> { continuation in
            for number in [SIGTERM, SIGINT] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler { continuation.yield(number) }
                source.resume()
                sources.append(source)
            }
        }
        defer { sources.forEach { $0.cancel() } }
        let log: LogManager
        do {
            log = try LogManager.open(dataDirectory: dataDir)
        } catch {
            throw cliError(error)
        }
        let report = log.recovery
        writeLine(jsonLine(StartLine(
            message: "sluice started", data_dir: dataDir, clean_shutdown: report.cleanShutdown, topics: report.topics,
            partitions: report.partitions, segments: report.segments, recovery_seconds: report.duration)))
        for damage in report.damages {
            writeLine(jsonLine(DamageLine(level: damage.repaired ? "warn" : "error", message: damage.description, file: damage.file, position: damage.position)))
        }

        let maintenance = Task { await log.runMaintenance(retentionCheckInterval: retentionCheckIntervalMs) }
        var iterator = signals.makeAsyncIterator()
        let received = await iterator.next() ?? SIGTERM
        maintenance.cancel()
        do {
            try await log.close()
        } catch {
            throw cliError(error)
        }
        writeLine(jsonLine(StopLine(message: "sluice stopped cleanly", signal: received)))
    }

    struct StartLine: Encodable {
        var message: String
        var data_dir: String
        var clean_shutdown: Bool
        var topics: Int
        var partitions: Int
        var segments: Int
        var recovery_seconds: Double
    }

    struct DamageLine: Encodable {
        var level: String
        var message: String
        var file: String
        var position: Int64
    }

    struct StopLine: Encodable {
        var message: String
        var signal: Int32
    }
}
