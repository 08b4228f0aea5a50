import ArgumentParser
import SluiceCluster
import Foundation
import SluiceBroker

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the configuration.",
        subcommands: [ConfigShow.self, ConfigReference.self]
    )
}

struct ConfigShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the effective configuration and where every value came from (takes the same settings as serve).",
        discussion: SettingsOptions.settingsHelp
    )

    @Flag(name: .long, help: "Print JSON lines instead of a table.")
    var json = false

    @OptionGroup var options: SettingsOptions

    func run() throws {
        let config = try options.load()
        var rows: [(String, String, String)] = []
        for property in ConfigProperty.all {
            let (value, source) = config.values[property.name]!
            rows.append((property.name, property.secret && !value.isEmpty ? "***" : value, source.description))
        }
        let routes = config.routes.map { "\($0.pattern)=\($0.topic)" }.joined(separator: ",")
        rows.append(("routes", routes, config.routesSource.description))
        if config.logBackend == .kafka {
            // What the cluster's clients are configured with, each property's last value and its origin.
            let settings = ClusterSettings(config: config)
            for (client, properties) in [("producer", settings.producer), ("reader", settings.reader)] {
                var last: [String: ClusterSettings.Property] = [:]
                for property in properties { last[property.name] = property }
                for (name, property) in last.sorted(by: { $0.key < $1.key }) {
                    let value = ClusterSettings.isSecret(name) ? "***" : property.value
                    rows.append(("librdkafka \(client) \(name)", value, property.origin))
                }
            }
            let origin = config.clusterProperties["transactional.id"].map { "cluster.transactional.id (from \($0.source))" } ?? "Sluice (host and data.dir)"
            rows.append(("librdkafka transactional producer transactional.id", settings.transactionalId, origin))
        }
        if json {
            for (name, value, source) in rows { writeLine(jsonLine(["name": name, "value": value, "source": source])) }
            return
        }
        let width = rows.map(\.0.count).max() ?? 10
        let valueWidth = min(rows.map(\.1.count).max() ?? 10, 40)
        writeLine("PROPERTY".padding(toLength: width, withPad: " ", startingAt: 0) + "  " + "VALUE".padding(toLength: valueWidth, withPad: " ", startingAt: 0) + "  SOURCE")
        for (name, value, source) in rows {
            writeLine(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value.padding(toLength: max(valueWidth, value.count), withPad: " ", startingAt: 0) + "  " + source)
        }
    }
}

struct ConfigReference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reference",
        abstract: "Print every setting as a Markdown table (the README's settings reference is this output)."
    )

    func run() {
        for group in ConfigProperty.Group.allCases {
            writeLine("\n**\(group.rawValue.capitalized)**\n")
            writeLine("| flag | `-X` / YAML key | environment | default | meaning |")
            writeLine("|---|---|---|---|---|")
            for property in ConfigProperty.all where property.group == group {
                let shown = property.defaultValue.isEmpty ? "(empty)" : "`\(property.defaultValue)`"
                writeLine("| `\(property.flag)` | `\(property.name)` | `\(property.environmentVariable)` | \(shown) | \(property.help) |")
            }
        }
    }
}
