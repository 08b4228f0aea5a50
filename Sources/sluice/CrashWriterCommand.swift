import ArgumentParser
import Foundation
import SluiceLog

/// A test helper: appends forever with fsync-before-ack and prints one line per acknowledged batch, so a test
/// can kill it with SIGKILL at any moment and check that every acknowledged record survived exactly once.
struct CrashWriterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash-writer",
        abstract: "Test helper: append until killed, printing `ACK <partition> <offset> <value>` per acknowledged record.",
        shouldDisplay: false
    )

    @Option(name: .long) var dataDir: String
    @Option(name: .long) var topic: String = "crash"
    @Option(name: .long) var run: Int = 0
    @Option(name: .long) var writers: Int = 4
    @Option(name: .long) var partitions: Int = 2

    func run() async throws {
        let log = try LogManager.open(dataDirectory: dataDir)
        // Small segments and a dense index, so kills land in rolls and index writes too.
        let topicLog = try log.topic(topic)
            ?? log.createTopic(topic, partitions: partitions, config: ["segment.bytes": "32768", "index.interval.bytes": "512", "flush.policy": "sync"])
        writeLine("READY \(log.recovery.cleanShutdown)")
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var sequence = 0
                    var generator = SystemRandomNumberGenerator()
                    while true {
                        let partition = topicLog.partitions[(writer + sequence) % topicLog.partitions.count]
                        let count = Int.random(in: 1...5, using: &generator)
                        var records: [Record] = []
                        for i in 0..<count {
                            let value = "r\(run)-w\(writer)-s\(sequence)-i\(i)"
                            records.append(Record(timestamp: currentTimeMillis(), key: Array("w\(writer)".utf8),
                                                  value: Array((value + String(repeating: ".", count: Int.random(in: 0...300))).utf8),
                                                  headers: [RecordHeader(key: "id", value: Array(value.utf8))]))
                        }
                        let codec: Compression = sequence % 2 == 0 ? .none : .gzip(level: 1)
                        guard let batch = try? RecordBatch.encode(records, compression: codec),
                              let info = try? await partition.append(batch)
                        else { return }
                        var lines: [String] = []
                        for i in 0..<count {
                            lines.append("ACK \(partition.partition) \(info.baseOffset + Int64(i)) r\(run)-w\(writer)-s\(sequence)-i\(i)")
                        }
                        writeLine(lines.joined(separator: "\n"))
                        sequence += 1
                    }
                }
            }
        }
    }
}
