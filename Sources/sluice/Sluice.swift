import ArgumentParser
import Foundation
import SluiceLog

/// `sluice`: the event-broker sidecar and its tools.
@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A sidecar event broker: a durable, compressed, partitioned log with Kafka semantics.",
        discussion: """
            Exit codes: 0 success; 1 failure (or damage found by fsck); 2 bad input (unknown flag, \
            invalid value); 4 damage fsck could not repair.
            """,
        subcommands: [ServeCommand.self, ConfigCommand.self, LogsCommand.self, PartitionsCommand.self, GroupsCommand.self, SubscriptionsCommand.self, SchemasCommand.self, DLQCommand.self, SagasCommand.self, TraceCommand.self, TracesCommand.self, ProduceCommand.self, DumpCommand.self, FsckCommand.self, BenchCommand.self, CrashWriterCommand.self]
    )

    /// Runs the command on Swift's global executor while the main thread waits for it.
    ///
    /// Not an `async` main: that one ends the main thread with `dispatch_main()`, whose `pthread_exit` unwinds the
    /// main thread's stack through the binary's unwind tables and left ~0.5 MiB of them resident in every agent.
    /// Nothing in Sluice or its packages runs on the main actor or the main dispatch queue, so nothing waits for
    /// this thread.
    static func main() {
        // Signals sent to the process are taken by this thread, as they are by the thread dispatch_main() parks:
        // every other thread (Dispatch's, NIO's) blocks them, and a parent may have started us with them blocked
        // (Foundation's Process does), which would leave SIGTERM pending for ever.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        let finished = DispatchSemaphore(value: 0)
        let arguments = CommandLine.arguments
        Task.detached {
            await runCommand(arguments)
            finished.signal()
        }
        finished.wait()
    }

    /// Parses and runs a command; bad input exits with code 2 and a message saying what to fix.
    nonisolated static func runCommand(_ arguments: [String]) async {
        do {
            if let serve = parseServe(arguments) {
                try await ServeCommand.serve(SettingsOptions.load(config: serve.config, sagas: serve.sagas, settings: serve.settings))
                return
            }
            var command = try parseAsRoot(Array(arguments.dropFirst()))
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

    /// `sluice serve …` read without ArgumentParser, whose reflection over the command's arguments took ~3 ms of each
    /// start (and ~4 ms more for the whole command tree). Serve's own options are `--config FILE` and `--sagas FILE`
    /// (``SettingsOptions``); every other word is a setting, which ``SluiceConfig`` reads and checks. Help, and
    /// anything unusual about the two options (a missing value, `--config=FILE`, given twice), takes ArgumentParser's
    /// way, so that usage and messages stay its own.
    nonisolated static func parseServe(_ commandLine: [String]) -> (config: String?, sagas: String?, settings: [String])? {
        guard commandLine.dropFirst().first == ServeCommand.name else { return nil }
        var words = commandLine.dropFirst(2)[...]
        var options: [String: String] = [:]
        var settings: [String] = []
        while let word = words.popFirst() {
            switch word {
            case "-h", "--help", "-help", "help", "--version", "--":
                return nil
            case "--config", "--sagas":
                guard options[word] == nil, let value = words.popFirst(), !value.hasPrefix("-") else { return nil }
                options[word] = value
            case _ where word.hasPrefix("--config=") || word.hasPrefix("--sagas="):
                return nil
            default:
                settings.append(word)
            }
        }
        return (options["--config"], options["--sagas"], settings)
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
