import ArgumentParser
import Foundation
import SluiceTelemetry

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Tail and filter Sluice's JSON logs.",
        discussion: """
            Reads FILE (or standard input with - or no FILE). Lines that are not JSON are printed as they are when \
            no filter is given and skipped otherwise. --follow keeps reading as the file grows and reopens it when \
            it is rotated.
            """
    )

    @Argument(help: "Log file, or - for standard input.")
    var file: String = "-"
    @Flag(name: .shortAndLong, help: "Keep reading as the file grows.")
    var follow = false
    @Option(name: .long, help: "Only lines with this correlation_id.")
    var correlationId: String?
    @Option(name: .long, help: "Only lines at this level or above (trace, debug, info, notice, warning, error, critical).")
    var level: String?
    @Flag(name: .long, help: "Human-readable lines instead of JSON.")
    var pretty = false

    static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    func validate() throws {
        if let level, !Self.levels.contains(level) {
            throw ValidationError("--level must be one of \(Self.levels.joined(separator: ", ")), got '\(level)'")
        }
        if follow && file == "-" { throw ValidationError("--follow needs a FILE, not standard input") }
        if file != "-" && !FileManager.default.fileExists(atPath: file) {
            throw ValidationError("log file \(file) does not exist")
        }
    }

    func run() async throws {
        let minimum = level.flatMap { Self.levels.firstIndex(of: $0) } ?? 0
        let filtering = correlationId != nil || level != nil
        func emit(_ line: Substring) {
            guard !line.isEmpty else { return }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                if !filtering { writeLine(String(line)) }
                return
            }
            if let correlationId, object[LogField.correlationId] as? String != correlationId { return }
            if level != nil {
                let index = (object[LogField.level] as? String).flatMap { Self.levels.firstIndex(of: $0) } ?? 0
                if index < minimum { return }
            }
            writeLine(pretty ? Self.prettyLine(object) : String(line))
        }

        if file == "-" {
            while let line = readLine(strippingNewline: true) { emit(Substring(line)) }
            return
        }
        var handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        var inode = Self.inode(file)
        var pending = Data()
        while true {
            let chunk = handle.availableData
            if !chunk.isEmpty {
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    emit(Substring(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)))
                    pending.removeSubrange(pending.startIndex...newline)
                }
                continue
            }
            guard follow else { break }
            try await Task.sleep(for: .milliseconds(200))
            // Rotation: the path now names a different file; finish the old one and switch.
            if let current = Self.inode(file), current != inode {
                handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
                inode = current
            }
        }
        if !pending.isEmpty { emit(Substring(String(decoding: pending, as: UTF8.self))) }
    }

    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    static func prettyLine(_ object: [String: Any]) -> String {
        let time = object[LogField.timestamp] as? String ?? "-"
        let level = (object[LogField.level] as? String ?? "-").uppercased()
        let message = object[LogField.message] as? String ?? ""
        let skip: Set<String> = [LogField.timestamp, LogField.level, LogField.message, LogField.serviceName, LogField.ecsVersion, LogField.logger]
        let rest = object.keys.filter { !skip.contains($0) }.sorted().map { "\($0)=\(object[$0]!)" }.joined(separator: " ")
        return "\(time) \(level.padding(toLength: 8, withPad: " ", startingAt: 0)) \(message)" + (rest.isEmpty ? "" : "  " + rest)
    }
}
