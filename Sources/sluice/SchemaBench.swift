import ArgumentParser
import Foundation
import SluiceSchema

/// `sluice bench schemas`: the in-process cost per event of checking data against a schema: parsing the data
/// (JSONValue.parse) and validating the parsed value, against the check on the bytes that publishing uses first
/// (``JSONSchema/quickCheck(_:)``, which builds no values).
struct SchemaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schemas",
        abstract: "Per-event cost of parsing event data and validating it against a schema, in process.",
        discussion: "EVENTS is a file of CloudEvents, one JSON object per line (scripts/bench/events.py); each is checked by its data. Prints µs per event, medians of --runs.")

    @Argument(help: "CloudEvents, one per line.")
    var events: String
    @Option(name: .long, help: "The schema (a JSON Schema draft-07 file).")
    var schema: String
    @Option(name: .long, help: "Runs; medians are reported.")
    var runs = 5

    func run() throws {
        guard let schemaBytes = FileManager.default.contents(atPath: schema), let text = try? String(contentsOfFile: events, encoding: .utf8) else {
            throw CLIError.badInput("cannot read \(schema) or \(events)")
        }
        let compiled: JSONSchema
        do { compiled = try JSONSchema(json: Array(schemaBytes)) } catch { throw CLIError.badInput("\(schema): \(error.message)") }
        // The data of each event, as the bytes a publish holds.
        let datas: [[UInt8]] = text.split(separator: "\n").compactMap { line in
            guard case .object(let event)? = JSONValue.parse(Array(line.utf8)), let data = event["data"] else { return nil }
            return data.bytes
        }
        guard !datas.isEmpty else { throw CLIError.badInput("\(events) has no CloudEvents with data") }
        let parsed = datas.compactMap { JSONValue.parse($0) }
        var parse: [Double] = [], validate: [Double] = [], quick: [Double] = []
        var valid = 0, decided = 0
        for _ in 0..<runs {
            var start = DispatchTime.now().uptimeNanoseconds
            for bytes in datas { _ = JSONValue.parse(bytes) }
            parse.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000 / Double(datas.count))
            start = DispatchTime.now().uptimeNanoseconds
            valid = 0
            for value in parsed where compiled.isValid(value) { valid += 1 }
            validate.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000 / Double(datas.count))
            start = DispatchTime.now().uptimeNanoseconds
            decided = 0
            for bytes in datas where compiled.quickCheck(bytes) == true { decided += 1 }
            quick.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000 / Double(datas.count))
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        writeLine("| events | valid | parse µs/event | validate µs/event | parse + validate | check on the bytes µs/event (decided valid) |")
        writeLine("|---|---|---|---|---|---|")
        writeLine("| \(datas.count) | \(valid) | \(String(format: "%.2f", median(parse))) | \(String(format: "%.2f", median(validate))) | "
                  + "\(String(format: "%.2f", median(parse) + median(validate))) | \(String(format: "%.2f", median(quick))) (\(decided)) |")
    }
}
