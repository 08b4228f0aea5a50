import ArgumentParser
import Foundation
import Logging
import SluiceBroker
import SluiceCluster
import SluiceDelivery
import SluiceLog
import SluiceSaga
import SluiceSchema
import SluiceServer
import SluiceTelemetry

struct ServeCommand: AsyncParsableCommand {
    /// Also what `Sluice.parseServe` looks for, without building `configuration` (its help text) at every start.
    static let name = "serve"
    static let configuration = CommandConfiguration(
        commandName: name,
        abstract: "Run the agent: the embedded log (or a Kafka cluster), the HTTP API, /metrics and JSON logs.",
        discussion: """
            Opens (and after a crash recovers) the log in data.dir, or with log.backend=kafka keeps events in the \
            cluster at cluster.bootstrap.servers; serves the API on api.address and /metrics, \
            /healthz and /readyz on metrics.address. The first log line names the bound addresses. On SIGTERM or \
            SIGINT it stops accepting, writes everything accepted, writes the clean-shutdown marker and exits 0. \
            An invalid setting stops it with exit code 2 before any port is bound.

            \(SettingsOptions.settingsHelp)
            """
    )

    @OptionGroup var options: SettingsOptions

    func run() async throws {
        try await Self.serve(try options.load())
    }

    static func serve(_ config: SluiceConfig) async throws {
        if let file = config.configFile {
            // Subscriptions are checked before any port is bound, like settings.
            do {
                _ = try DeliveryService.loadFile(file)
            } catch {
                throw CLIError.badInput("subscriptions: \(error.message)")
            }
        }
        // So are saga definitions: a bad one names its file and line.
        if case .failure(let error) = Result(catching: { () throws(SagaDefinitionError) in try SagaCatalog.load(config: config) }) {
            throw CLIError.badInput("sagas: \(error)")
        }
        if !config.string("schemas").isEmpty {
            // Schemas too: a bad file is named with the reason.
            do {
                _ = try SchemaRegistry.loadDirectory(config.string("schemas"), fromDirectory: true,
                                                     compatibility: SchemaCompatibility(rawValue: config.string("schema.compatibility")) ?? .none)
            } catch {
                throw CLIError.badInput("schemas: \(error.message)")
            }
        }
        // Every partition keeps a descriptor open: take all the process may have (the limit is logged at recovery).
        DescriptorLimit.raiseToHard()
        MallocTuning.apply(environment: ProcessInfo.processInfo.environment)
        let (logger, sink) = try bootstrapLogging(config)
        let metrics = SluiceMetrics(logSink: sink)
        var cluster: KafkaCluster?
        if config.logBackend == .kafka {
            do {
                cluster = try KafkaCluster(config: config, metrics: metrics, logger: logger)
            } catch {
                throw CLIError.badInput(error.message)
            }
        }
        do {
            try await SluiceAgent.run(config: config, logger: logger, metrics: metrics, remote: cluster)
        } catch let error as LogError {
            logger.critical("sluice could not start: \(error.message)")
            throw CLIError.failure(error.message)
        }
    }
}

/// Installs the JSON (or text) log handler per log.level, log.format and log.file.
func bootstrapLogging(_ config: SluiceConfig) throws -> (Logger, LogSink) {
    let sink: LogSink
    if config.string("log.file").isEmpty {
        sink = .standardOutput
    } else {
        do {
            sink = try LogSink.file(path: config.string("log.file"), maxBytes: config.int("log.file.max.bytes"), maxFiles: config.int("log.file.max.files"))
        } catch {
            throw CLIError.badInput("log.file: \(error)")
        }
    }
    let level = Logger.Level(rawValue: config.string("log.level")) ?? .info
    let format = LogFormat(rawValue: config.string("log.format")) ?? .json
    LoggingSystem.bootstrap({ label, provider in
        JSONLogHandler(label: label, sink: sink, format: format, level: level, metadataProvider: provider)
    }, metadataProvider: Correlation.metadataProvider)
    return (Logger(label: "sluice"), sink)
}
