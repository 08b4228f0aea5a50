import HTTPTypes
/// The HTTP paths Sluice serves. These are a contract: clients, probes and the OpenAPI file use them.
public enum HTTPPath {
    public static let health = "/healthz"
    public static let ready = "/readyz"
    public static let metrics = "/metrics"
    public static let topics = "/v1/topics"
    public static let topic = "/v1/topics/{topic}"
    public static let topicEvents = "/v1/topics/{topic}/events"
    public static let partitionEvents = "/v1/topics/{topic}/partitions/{partition}/events"
    public static let routedEvents = "/v1/events"
    public static let groups = "/v1/groups"
    public static let group = "/v1/groups/{group}"
    public static let groupMembers = "/v1/groups/{group}/members"
    public static let groupMember = "/v1/groups/{group}/members/{member}"
    public static let memberHeartbeat = "/v1/groups/{group}/members/{member}/heartbeat"
    public static let memberPoll = "/v1/groups/{group}/members/{member}/poll"
    public static let groupOffsets = "/v1/groups/{group}/offsets"
    /// POST: move an inactive group's committed offsets (Kafka's `--reset-offsets`), or plan it with `dry_run`.
    public static let groupOffsetsReset = "/v1/groups/{group}/offsets/reset"
    public static let subscriptions = "/v1/subscriptions"
    public static let subscription = "/v1/subscriptions/{name}"
    /// POST: re-deliver from an earlier point (a projection rebuild).
    public static let subscriptionRewind = "/v1/subscriptions/{name}/rewind"
    public static let deadLetterTopics = "/v1/dlq"
    public static let deadLetterTopic = "/v1/dlq/{dlqTopic}"
    public static let deadLetter = "/v1/dlq/{dlqTopic}/partitions/{partition}/offsets/{offset}"
    public static let replay = "/v1/dlq/{dlqTopic}/replay"
    public static let replayJob = "/v1/dlq/replays/{id}"
    public static let schemas = "/v1/schemas"
    /// GET a type's versions and settings; PUT (the body is `{"compatibility", "upcasters"}`) and DELETE its settings.
    public static let schemaType = "/v1/schemas/{type}"
    /// GET, PUT (the body is the schema) and DELETE one schema.
    public static let schema = "/v1/schemas/{type}/{version}"
    public static let sagas = "/v1/sagas"
    /// POST: start a saga of this type. GET: the saga with this id.
    public static let saga = "/v1/sagas/{name}"
    /// GET: traces, most recent activity first (`?status=in_flight|stale|complete&limit=`).
    public static let traces = "/v1/traces"
    /// GET: one correlation's journey (a saga id finds the trace of the request or event that started it).
    public static let trace = "/v1/traces/{correlationId}"
    /// GET: the event-flow map (producers' sources → topics → subscriptions → endpoints; sagas → their topics).
    public static let flow = "/v1/flow"
    /// GET: the web console (static HTML, CSS and JavaScript that read the API above).
    public static let console = "/ui"

    /// Every path above.
    public static let all = [health, ready, metrics, topics, topic, topicEvents, partitionEvents, routedEvents,
                             groups, group, groupMembers, groupMember, memberHeartbeat, memberPoll, groupOffsets, groupOffsetsReset,
                             subscriptions, subscription, subscriptionRewind, deadLetterTopics, deadLetterTopic, deadLetter, replay, replayJob, schemas, schemaType, schema, sagas, saga,
                             traces, trace, flow, console]
}

/// Header names Sluice reads or writes.
public enum HeaderName {
    public static let correlationId = "X-Correlation-ID"
    public static let traceparent = "traceparent"
}

extension HTTPField.Name {
    /// ``HeaderName`` as field names, made once.
    static let correlationId = HTTPField.Name(HeaderName.correlationId)!
    static let traceparent = HTTPField.Name(HeaderName.traceparent)!
    /// The header that marks a binary-mode CloudEvent.
    static let ceSpecversion = HTTPField.Name("ce-specversion")!
}

/// Media types of the CloudEvents HTTP binding and RFC 9457.
public enum MediaTypes {
    public static let cloudEvent = "application/cloudevents+json"
    public static let cloudEventBatch = "application/cloudevents-batch+json"
    public static let json = "application/json"
    public static let problem = "application/problem+json"
}
