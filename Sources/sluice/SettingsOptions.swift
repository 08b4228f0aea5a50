import ArgumentParser
import Foundation
import SluiceBroker

/// The settings shared by `serve` and `config show`: `--config FILE`, every property as a flag
/// (`--linger-ms 20`), `-X name=value`, and `--route PATTERN=TOPIC`.
struct SettingsOptions: ParsableArguments {
    @Option(name: .long, help: "YAML configuration file (property names as keys; routes; env SLUICE_CONFIG).")
    var config: String?

    @Option(name: .long, help: .init("YAML file with sagas and observed_sagas sections (the sagas.file setting).", valueName: "file"))
    var sagas: String?

    @Argument(parsing: .allUnrecognized, help: .init("Settings: --<property> VALUE, -X <property>=VALUE, --route PATTERN=TOPIC (see below).", valueName: "settings"))
    var settings: [String] = []

    /// Resolves the configuration; any problem is bad input (exit code 2).
    func load() throws -> SluiceConfig {
        try Self.load(config: config, sagas: sagas, settings: settings)
    }

    static func load(config: String?, sagas: String?, settings: [String]) throws -> SluiceConfig {
        let environment = ProcessInfo.processInfo.environment
        let file = config ?? environment["SLUICE_CONFIG"]
        var variables = environment
        variables["SLUICE_CONFIG"] = nil
        do {
            return try SluiceConfig.load(arguments: (sagas.map { ["--sagas-file", $0] } ?? []) + settings, environment: variables, file: file)
        } catch {
            throw CLIError.badInput(error.message)
        }
    }

    /// Every setting with its flag, environment variable, default and meaning, for `--help`.
    static var settingsHelp: String {
        var text = "Settings (precedence: flag > environment > --config file > default):\n"
        for group in ConfigProperty.Group.allCases {
            text += "\n\(group.rawValue.prefix(1).uppercased() + group.rawValue.dropFirst()):\n"
            for property in ConfigProperty.all where property.group == group {
                let shown = property.defaultValue.isEmpty ? "\"\"" : property.defaultValue
                text += "  \(property.flag) (-X \(property.name), \(property.environmentVariable)) default \(shown)\n      \(property.help)\n"
            }
        }
        text += "\n  -X cluster.<librdkafka property>=VALUE (SLUICE_CLUSTER_<PROPERTY>, YAML cluster.<property>:)\n      With log.backend=kafka: passed to the cluster's clients, checked by librdkafka at startup.\n"
        text += "\n  --route PATTERN=TOPIC (repeatable; SLUICE_ROUTES=a.*=t1,b.*=t2; YAML routes:)\n      Where POST /v1/events sends each event type; the first match wins, else default.topic.\n"
        return text
    }
}
