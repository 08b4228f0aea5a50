#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// A topic: a name, its storage configuration and its partitions.
public final class Topic: Sendable {
    public let name: String
    public let config: TopicConfig
    public let partitions: [PartitionLog]

    init(name: String, config: TopicConfig, partitions: [PartitionLog]) {
        self.name = name
        self.config = config
        self.partitions = partitions
    }

    /// The partition with number `partition`, or an `unknownPartition` error.
    public func partition(_ partition: Int32) throws -> PartitionLog {
        guard partition >= 0, Int(partition) < partitions.count else {
            throw LogError(.unknownPartition, "topic \(name) has partitions 0...\(partitions.count - 1); \(partition) does not exist")
        }
        return partitions[Int(partition)]
    }
}

/// What opening the data directory found.
public struct RecoveryReport: Sendable {
    /// Whether the previous run shut down cleanly (the marker was present).
    public var cleanShutdown: Bool
    public var topics: Int
    public var partitions: Int
    public var segments: Int
    public var damages: [LogDamage]
    /// File descriptors the data needs (one per partition, the log's own, and the reserve the caller asked for).
    public var descriptorsNeeded: Int
    /// The soft `RLIMIT_NOFILE` it was checked against.
    public var descriptorLimit: Int
    /// Wall-clock time spent opening, in seconds.
    public var duration: Double
}

/// The data directory: every topic and partition, the clean-shutdown marker, and a lock against a second process.
///
/// Layout: `DATA/topics/TOPIC/topic.json` and `DATA/topics/TOPIC/PARTITION/<20-digit base offset>.{log,index,timeindex}`.
public final class LogManager: Sendable {
    public static let cleanShutdownMarker = ".clean_shutdown"
    public let dataDirectory: String
    public let defaults: TopicConfig
    public let recovery: RecoveryReport
    private let topics: Mutex<[String: Topic]>
    private let lockFD: Int32
    /// Descriptors kept free for everything but partitions (connections, clients).
    public let reservedDescriptors: Int

    private init(dataDirectory: String, defaults: TopicConfig, topics: [String: Topic], recovery: RecoveryReport, lockFD: Int32,
                 reservedDescriptors: Int) {
        self.reservedDescriptors = reservedDescriptors
        self.dataDirectory = dataDirectory
        self.defaults = defaults
        self.topics = Mutex(topics)
        self.recovery = recovery
        self.lockFD = lockFD
    }

    deinit { FileIO.close(lockFD) }

    var topicsDirectory: String { dataDirectory + "/topics" }

    /// Opens the data directory, creating it if needed, and recovers every partition.
    ///
    /// After a clean shutdown only the tails after the last index entries are checked; otherwise each active
    /// segment is validated batch by batch and a torn tail truncated. Damage in sealed segments is reported
    /// in ``recovery`` and never stops the open.
    ///
    /// - Parameter reservedDescriptors: file descriptors to keep free for everything but partitions; a data directory
    ///   whose partitions would not fit beside them under the soft `RLIMIT_NOFILE` is refused with `tooManyFiles`,
    ///   and so is a topic created later that would not fit.
    public static func open(dataDirectory: String, defaults: TopicConfig = TopicConfig(), reservedDescriptors: Int = 64) throws -> LogManager {
        let started = DispatchTime.now()
        try FileIO.makeDirectories(dataDirectory + "/topics")
        let lockPath = dataDirectory + "/.lock"
        let lockFD = try FileIO.open(lockPath, flags: O_RDWR | O_CREAT)
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
            FileIO.close(lockFD)
            throw LogError(.io, "data directory \(dataDirectory) is in use by another sluice process (lock \(lockPath) is held); stop it or choose another --data-dir")
        }
        do {
            let markerPath = dataDirectory + "/" + cleanShutdownMarker
            let clean = FileIO.exists(markerPath)
            var topics: [String: Topic] = [:]
            var damages: [LogDamage] = []
            var partitionCount = 0
            var segmentCount = 0
            var found: [(name: String, directory: String, metadata: TopicMetadata, config: TopicConfig)] = []
            for name in try FileIO.list(dataDirectory + "/topics") where TopicName.isValid(name) {
                let directory = dataDirectory + "/topics/" + name
                guard FileIO.isDirectory(directory) else { continue }
                // A topic without topic.json was never completely created; it holds no acknowledged data.
                guard FileIO.exists(directory + "/topic.json") else { continue }
                do {
                    let metadata = try TopicMetadata.read(directory + "/topic.json")
                    found.append((name, directory, metadata, try defaults.applying(metadata.config)))
                } catch {
                    damages.append(LogDamage(topic: name, partition: -1, file: directory + "/topic.json", position: 0,
                                             reason: "the topic is not loaded: \(error.logMessage)", repaired: false))
                }
            }
            // Refuse, before opening anything, a directory whose partitions cannot all be open at once.
            let limit = DescriptorLimit.current.soft
            let needed = found.reduce(0) { $0 + $1.metadata.partitions } + DescriptorLimit.logOverhead + reservedDescriptors
            guard needed <= limit else {
                throw LogError(.tooManyFiles, "the data directory \(dataDirectory) holds \(needed - DescriptorLimit.logOverhead - reservedDescriptors) partitions, which with the agent's own \(DescriptorLimit.logOverhead + reservedDescriptors) need \(needed) open files, but the limit is \(limit): raise it to at least \(needed) (ulimit -n, systemd LimitNOFILE=, or the container's nofile ulimit), or lower http.max.connections")
            }
            for (name, directory, metadata, config) in found {
                var partitions: [PartitionLog] = []
                for p in 0..<metadata.partitions {
                    let log = try PartitionLog.open(topic: name, partition: Int32(p), directory: directory + "/\(p)",
                                                    config: config, mode: clean ? .clean : .recover)
                    damages += log.damages
                    segmentCount += log.segments.count
                    partitions.append(log)
                }
                partitionCount += partitions.count
                topics[name] = Topic(name: name, config: config, partitions: partitions)
            }
            // From here on the data can change, so the marker must go before anything is appended.
            if clean {
                try FileIO.remove(markerPath)
                try FileIO.fsyncDirectory(dataDirectory)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            let report = RecoveryReport(cleanShutdown: clean, topics: topics.count, partitions: partitionCount,
                                        segments: segmentCount, damages: damages, descriptorsNeeded: needed, descriptorLimit: limit, duration: seconds)
            return LogManager(dataDirectory: dataDirectory, defaults: defaults, topics: topics, recovery: report, lockFD: lockFD,
                              reservedDescriptors: reservedDescriptors)
        } catch {
            FileIO.close(lockFD)
            throw error
        }
    }

    /// The configuration a new topic with `overrides` would have, refused when it names a codec whose library this
    /// machine lacks (snappy without libsnappy): said at creation rather than at the topic's first batch. Topics
    /// already on disk keep loading whatever their codec.
    func configForNewTopic(_ overrides: [String: String]) throws -> TopicConfig {
        let config = try defaults.applying(overrides)
        if config.compression == .snappy, let unavailable = Snappy.unavailable {
            throw LogError(.invalidConfig, "topic property compression.type=snappy cannot be used here: \(unavailable)")
        }
        return config
    }

    /// Creates a topic with `partitions` partitions and the defaults overridden by `config` (Kafka property names).
    @discardableResult
    public func createTopic(_ name: String, partitions: Int, config overrides: [String: String] = [:]) throws -> Topic {
        try TopicName.validate(name)
        guard (1...10_000).contains(partitions) else {
            throw LogError(.invalidConfig, "topic \(name) needs 1...10000 partitions, not \(partitions)")
        }
        let config = try configForNewTopic(overrides)
        return try topics.withLock { topics throws -> Topic in
            if topics[name] != nil { throw LogError(.topicExists, "topic \(name) already exists") }
            let open = topics.values.reduce(0) { $0 + $1.partitions.count }
            let limit = DescriptorLimit.current.soft
            let free = limit - open - DescriptorLimit.logOverhead - reservedDescriptors
            guard partitions <= free else {
                throw LogError(.tooManyFiles, "topic \(name) needs \(partitions) open files (one per partition), but only \(max(free, 0)) of the limit of \(limit) are free (\(open) partitions are open, \(DescriptorLimit.logOverhead + reservedDescriptors) are kept for connections and the log): use fewer partitions, or raise the limit (ulimit -n / LimitNOFILE=) and restart")
            }
            let directory = topicsDirectory + "/" + name
            try FileIO.makeDirectories(directory)
            var logs: [PartitionLog] = []
            for p in 0..<partitions {
                logs.append(try PartitionLog.open(topic: name, partition: Int32(p), directory: directory + "/\(p)", config: config, mode: .recover))
            }
            // topic.json is written last and atomically: a topic without it is incomplete and ignored at open.
            try TopicMetadata(name: name, partitions: partitions, config: overrides).write(directory + "/topic.json")
            try FileIO.fsyncDirectory(topicsDirectory)
            let topic = Topic(name: name, config: config, partitions: logs)
            topics[name] = topic
            return topic
        }
    }

    public func topic(_ name: String) -> Topic? {
        topics.withLock { $0[name] }
    }

    /// Grows topic `name` to `count` partitions (Kafka's CreatePartitions: partitions are only ever added).
    /// The new partition directories are made first and `topic.json` is rewritten atomically last, so a crash
    /// in between leaves the topic as it was (the empty directories are reused next time).
    @discardableResult
    public func addPartitions(_ name: String, count: Int) throws -> Topic {
        try topics.withLock { topics throws -> Topic in
            guard let topic = topics[name] else { throw LogError(.unknownTopic, "topic \(name) does not exist") }
            let current = topic.partitions.count
            guard count > current else {
                throw LogError(.invalidConfig, "topic \(name) has \(current) partitions; partitions can only be added, so ask for more than \(current)")
            }
            guard count <= 10_000 else { throw LogError(.invalidConfig, "topic \(name) can have at most 10000 partitions, not \(count)") }
            let open = topics.values.reduce(0) { $0 + $1.partitions.count }
            let limit = DescriptorLimit.current.soft
            let free = limit - open - DescriptorLimit.logOverhead - reservedDescriptors
            guard count - current <= free else {
                throw LogError(.tooManyFiles, "topic \(name) needs \(count - current) more open files (one per partition), but only \(max(free, 0)) of the limit of \(limit) are free: add fewer partitions, or raise the limit (ulimit -n / LimitNOFILE=) and restart")
            }
            let directory = topicsDirectory + "/" + name
            var metadata = try TopicMetadata.read(directory + "/topic.json")
            var logs = topic.partitions
            for p in current..<count {
                logs.append(try PartitionLog.open(topic: name, partition: Int32(p), directory: directory + "/\(p)", config: topic.config, mode: .recover))
            }
            try FileIO.fsyncDirectory(directory)
            metadata.partitions = count
            try metadata.write(directory + "/topic.json")
            let grown = Topic(name: name, config: topic.config, partitions: logs)
            topics[name] = grown
            return grown
        }
    }

    /// The topic named `name`, or an `unknownTopic` error.
    public func requireTopic(_ name: String) throws -> Topic {
        guard let topic = topic(name) else { throw LogError(.unknownTopic, "topic \(name) does not exist") }
        return topic
    }

    public var topicNames: [String] {
        topics.withLock { $0.keys.sorted() }
    }

    /// Closes and deletes a topic with all its data.
    public func deleteTopic(_ name: String) async throws {
        guard let topic = topics.withLock({ $0.removeValue(forKey: name) }) else {
            throw LogError(.unknownTopic, "topic \(name) does not exist")
        }
        for partition in topic.partitions { try? await partition.close() }
        let directory = topicsDirectory + "/" + name
        // Removing topic.json first makes a half-deleted topic invisible after a crash.
        try FileIO.remove(directory + "/topic.json")
        try FileIO.removeTree(directory)
        try FileIO.fsyncDirectory(topicsDirectory)
    }

    /// Applies retention to every partition; returns the number of segments deleted.
    @discardableResult
    public func enforceRetention(now: Int64 = currentTimeMillis()) throws -> Int {
        var deleted = 0
        for topic in topics.withLock({ Array($0.values) }) {
            for partition in topic.partitions { deleted += try partition.enforceRetention(now: now) }
        }
        return deleted
    }

    /// fsyncs every partition whose policy is `interval` or whose data is dirty.
    public func flushAll() async throws {
        for topic in topics.withLock({ Array($0.values) }) {
            for partition in topic.partitions { try await partition.flush() }
        }
    }

    /// Runs until cancelled: fsyncs partitions whose policy is `interval`, and applies retention every
    /// `retentionCheckInterval` milliseconds (Kafka's `log.retention.check.interval.ms`, default 5 minutes).
    public func runMaintenance(retentionCheckInterval: Int64 = 300_000) async {
        var lastRetention = currentTimeMillis()
        var lastFlush: [ObjectIdentifier: Int64] = [:]
        while !Task.isCancelled {
            let partitions = topics.withLock { $0.values.flatMap(\.partitions) }
            let intervals = partitions.compactMap { log -> Int64? in
                if case .interval(let ms) = log.config.flushPolicy { return ms }
                return nil
            }
            let tick = min(intervals.min() ?? 1000, 1000, retentionCheckInterval)
            try? await Task.sleep(for: .milliseconds(tick))
            let now = currentTimeMillis()
            for log in partitions {
                guard case .interval(let ms) = log.config.flushPolicy else { continue }
                let id = ObjectIdentifier(log)
                if now - (lastFlush[id] ?? 0) >= ms {
                    lastFlush[id] = now
                    try? await log.flush()
                }
            }
            if now - lastRetention >= retentionCheckInterval {
                lastRetention = now
                _ = try? enforceRetention(now: now)
            }
        }
    }

    /// Flushes and closes every partition, then writes the clean-shutdown marker so the next open skips the scan.
    ///
    /// Every partition is closed even when one fails; the marker is written only when all of them closed cleanly,
    /// so a partition whose writes were stopped by a disk error is recovered at the next start.
    public func close() async throws {
        var firstFailure: (any Error)?
        for topic in topics.withLock({ Array($0.values) }) {
            for partition in topic.partitions {
                do {
                    try await partition.close()
                } catch {
                    firstFailure = firstFailure ?? error
                }
            }
        }
        if let firstFailure {
            flock(lockFD, LOCK_UN)
            throw firstFailure
        }
        try FileIO.writeAtomically(dataDirectory + "/" + Self.cleanShutdownMarker, Array("clean\n".utf8))
        // Another process (or a later open in this one) may use the directory from now on.
        flock(lockFD, LOCK_UN)
    }
}

/// `topic.json`: a topic's name, partition count and configuration overrides.
struct TopicMetadata: Codable {
    var name: String
    var partitions: Int
    var config: [String: String]

    static func read(_ path: String) throws -> TopicMetadata {
        let bytes = try FileIO.readFile(path)
        do {
            let metadata = try JSONDecoder().decode(TopicMetadata.self, from: Data(bytes))
            guard metadata.partitions >= 1 else { throw LogError(.invalidConfig, "partitions must be at least 1") }
            return metadata
        } catch {
            throw LogError(.invalidConfig, "\(path) is not valid topic metadata: \(error)")
        }
    }

    func write(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self) else { throw LogError(.io, "could not encode \(path)") }
        try FileIO.writeAtomically(path, Array(data))
    }
}
