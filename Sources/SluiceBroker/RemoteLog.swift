public import SluiceLog

/// What one read of a remote partition returned.
public struct RemoteRead: Sendable {
    /// In offset order, at most the records asked for.
    public var records: [Record]
    /// The offset to read next: past the last record returned, or the offset asked for when none came.
    public var nextOffset: Int64
    public var logStartOffset: Int64
    public var logEndOffset: Int64

    public init(records: [Record], nextOffset: Int64, logStartOffset: Int64, logEndOffset: Int64) {
        self.records = records
        self.nextOffset = nextOffset
        self.logStartOffset = logStartOffset
        self.logEndOffset = logEndOffset
    }
}

/// The log seam's cluster side: what the broker needs from a log kept by a Kafka cluster (`log.backend=kafka`).
///
/// The embedded backend is ``LogManager`` with the broker's own producer path. The broker chooses one at start;
/// the modules above it (the API, delivery, sagas) call the broker and never see which one runs. Every method
/// answers with a ``BrokerError`` that says what went wrong in the cluster's terms.
public protocol RemoteLog: Sendable {
    /// Who the log is, for log lines and errors (e.g. the bootstrap servers).
    var description: String { get }
    /// Whether a broker of the cluster is reachable now (readiness).
    var isReachable: Bool { get }
    /// Topic names and partition counts as the cluster last told; refreshed in the background and by
    /// ``refreshTopics()``. Never calls the cluster.
    func topics() -> [String: Int]
    /// Asks the cluster for its topics now.
    @discardableResult
    func refreshTopics() async throws(BrokerError) -> [String: Int]
    func createTopic(_ name: String, partitions: Int, config: [String: String]) async throws(BrokerError)
    func deleteTopic(_ name: String) async throws(BrokerError)
    /// Appends `records` to one partition in order and returns their offsets once the cluster acknowledged them
    /// per `acks`; nil with acks=0, where nothing is waited for.
    func append(topic: String, partition: Int32, records: [Record]) async throws(BrokerError) -> [Int64]?
    /// Appends `records` (over any topics and partitions) as one transaction: read_committed readers see all of
    /// them or none. Returns their offsets once the transaction is committed, whatever `acks` says.
    func appendAtomically(_ records: [(topic: String, partition: Int32, record: Record)]) async throws(BrokerError) -> [Int64]
    /// Reads from `offset`, waiting up to `maxWaitMs` for the first record when none is there yet. `offsets` are the
    /// partition's log start and end as ``offsets(topic:partition:)`` just gave them (the records below the end
    /// exist, so they are waited for).
    func read(topic: String, partition: Int32, from offset: Int64, offsets: (start: Int64, end: Int64), maxRecords: Int, maxBytes: Int,
              maxWaitMs: Int64) async throws(BrokerError) -> RemoteRead
    /// The partition's log start and end offsets, as the cluster says now.
    func offsets(topic: String, partition: Int32) async throws(BrokerError) -> (start: Int64, end: Int64)
    /// Creates the topic when it is missing (with `partitions`, or as the cluster's own auto-creation makes it when
    /// the cluster does not offer CreateTopics) and returns its partition count.
    func ensureTopic(_ name: String, partitions: Int) async throws(BrokerError) -> Int
    /// Joins `group` in the cluster as a consumer of `options.topics`.
    func join(group: String, options: MemberOptions) async throws(BrokerError) -> any GroupMember
    /// The groups whose lag is computed: those this agent's subscribers are members of (with their member count
    /// here and topics) and the cluster's groups that `lag.groups` names.
    func lagGroups() async -> [String: (members: Int, topics: Set<String>)]
    /// The offsets `group` committed in the cluster on the partitions of `topics` (every topic when empty).
    func committedOffsets(group: String, topics: Set<String>) async throws(BrokerError) -> [TopicPartition: Int64]
    /// Delivers what was accepted (up to a bound) and closes the clients.
    func close() async
}
