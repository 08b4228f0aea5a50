import ArgumentParser
import Foundation
import SluiceLog

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Verify every segment: batches, records, offsets, CRC errors, truncated bytes and indexes.",
        discussion: """
            Prints one JSON line per segment and a summary line. Refuses to run while an agent holds the \
            data directory. Exit codes: 0 clean; 1 damage found (with --repair: found and repaired); \
            4 damage that --repair could not fix; 2 bad input.
            """
    )

    @Option(name: .long, help: "Directory holding the log.")
    var dataDir: String = "./sluice-data"
    @Flag(name: .long, help: "Truncate each damaged segment at its first invalid batch and rebuild damaged indexes.")
    var repair = false

    func run() throws {
        guard FileManager.default.fileExists(atPath: dataDir) else {
            throw CLIError.badInput("--data-dir \(dataDir) does not exist; pass the directory `sluice serve` uses")
        }
        let results: [SegmentCheck]
        do {
            results = try LogChecker.check(dataDirectory: dataDir, repair: repair)
        } catch {
            throw cliError(error)
        }
        for result in results { writeLine(jsonLine(result)) }
        let damaged = results.filter { !$0.isClean }
        var unrepaired = 0
        if repair {
            let again = (try? LogChecker.check(dataDirectory: dataDir, repair: false)) ?? []
            unrepaired = again.filter { !$0.isClean }.count
        }
        writeLine(jsonLine(Summary(
            type: "summary", segments: results.count, damagedSegments: damaged.count,
            crcErrors: results.reduce(0) { $0 + $1.crcErrors }, truncatedBytes: results.reduce(0) { $0 + $1.truncatedBytes },
            records: results.reduce(0) { $0 + $1.records }, repaired: repair, stillDamaged: unrepaired)))
        if unrepaired > 0 { throw ExitCode(4) }
        if !damaged.isEmpty { throw ExitCode(1) }
    }

    struct Summary: Encodable {
        var type: String
        var segments: Int
        var damagedSegments: Int
        var crcErrors: Int
        var truncatedBytes: Int64
        var records: Int64
        var repaired: Bool
        var stillDamaged: Int
    }
}
