import ArgumentParser
import Foundation
import SluiceLog

/// `sluice`: the event-broker sidecar and its tools.
@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A sidecar event broker: a durable, compressed, partitioned log with Kafka semantics.",
        discussion: """
            Exit codes: 0 success; 1 failure (or damage found by fsck); 2 bad input (unknown flag, \
            invalid value); 4 damage fsck could not repair.
            """,
        subcommands: [ServeCommand.self, ConfigCommand.self, LogsCommand.self, PartitionsCommand.self, GroupsCommand.self, SubscriptionsCommand.self, SchemasCommand.self, DLQCommand.self, SagasCommand.self, TraceCommand.self, TracesCommand.self, ProduceCommand.self, DumpCommand.self, FsckCommand.self, BenchCommand.self, CrashWriterCommand.self]
    )

    /// Parses and runs a command; bad input exits with code 2 and a message saying what to fix.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as ExitCode {
            exit(withError: error)
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)  // --help, --version
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            // ArgumentParser uses 64 for usage errors; Sluice's contract for bad input is 2.
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// An error for the user, with the exit code it maps to.
struct CLIError: Error {
    var message: String
    var exitCode: Int32

    static func badInput(_ message: String) -> CLIError { CLIError(message: message, exitCode: 2) }
    static func failure(_ message: String) -> CLIError { CLIError(message: message, exitCode: 1) }
}

/// Maps storage errors from user input (bad names, configs) to exit code 2, the rest to 1.
func cliError(_ error: any Error) -> CLIError {
    if let error = error as? LogError {
        switch error.code {
        case .invalidName, .invalidConfig, .unknownTopic, .unknownPartition, .offsetOutOfRange:
            return .badInput(error.message)
        default:
            return .failure(error.description)
        }
    }
    return .failure("\(error)")
}

/// Writes a whole line to a file descriptor with write(2), so lines are never interleaved or buffered away.
func writeLine(_ line: String, to fd: Int32 = 1) {
    var bytes = Array(line.utf8)
    bytes.append(UInt8(ascii: "\n"))
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }
}

/// Encodes a value as one line of JSON with sorted keys.
func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
