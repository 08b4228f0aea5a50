import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SluiceBroker
import SluiceLog
import SluiceTelemetry
import SluiceTrace

/// The v1 HTTP API over a ``Broker``.
struct APIRoutes: Sendable {
    let holder: BrokerHolder
    let config: SluiceConfig
    let logger: Logger
    /// OpenTelemetry spans, when `otlp.endpoint` is set.
    let spans: EventSpans?

    var broker: Broker {
        get throws { try holder.require() }
    }

    func register(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.health)) { _, _ in Self.health() }
        router.get(RouterPath(HTTPPath.ready)) { _, _ in Self.ready(holder) }
        router.post(RouterPath(HTTPPath.topics)) { request, context in try await createTopic(request, context) }
        router.get(RouterPath(HTTPPath.topics)) { _, _ in try listTopics() }
        router.get(RouterPath(HTTPPath.topic)) { _, context in try await describeTopic(context) }
        router.patch(RouterPath(HTTPPath.topic)) { request, context in try await growTopic(request, context) }
        router.delete(RouterPath(HTTPPath.topic)) { _, context in try await deleteTopic(context) }
        router.post(RouterPath(HTTPPath.topicEvents)) { request, context in try await publish(request, context, topic: nil) }
        router.post(RouterPath(HTTPPath.routedEvents)) { request, context in try await publish(request, context, topic: .routed) }
        router.get(RouterPath(HTTPPath.partitionEvents)) { request, context in try await readEvents(request, context) }
        registerGroups(on: router)
        registerDelivery(on: router)
        registerSagas(on: router)
        registerSchemas(on: router)
        registerTraces(on: router)
        registerFlow(on: router)
        registerConsole(on: router)
    }

    // Probes' answers are fixed bytes: these run every few seconds for the agent's whole life, and the first
    // `/readyz` is part of start-up (JSONSerialization's first use cost ~1 ms there).
    static func health() -> Response {
        rawJSONResponse(Array(#"{"status":"up"}"#.utf8))
    }

    /// Ready once the log is recovered, both listeners are bound and the saga states are read back.
    static func ready(_ holder: BrokerHolder) -> Response {
        holder.broker?.isReady == true && holder.sagasLoaded
            ? rawJSONResponse(Array(#"{"status":"ready"}"#.utf8))
            : rawJSONResponse(Array(#"{"status":"starting"}"#.utf8), status: .serviceUnavailable)
    }

    // MARK: - Topics

    func createTopic(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw BrokerError.badRequest("the body must be a JSON object such as {\"name\": \"orders\", \"partitions\": 6, \"config\": {\"retention.ms\": \"86400000\"}}", attribute: nil)
        }
        guard let name = object["name"] as? String else {
            throw BrokerError.badRequest("'name' (a string) is required", attribute: "name")
        }
        let partitions = try object["partitions"].map(Self.partitionCount)
        var overrides: [String: String] = [:]
        if let value = object["config"] {
            guard let map = value as? [String: Any] else {
                throw BrokerError.badRequest("'config' must be an object of topic properties, e.g. {\"retention.ms\": \"86400000\"}", attribute: "config")
            }
            for (key, raw) in map {
                switch raw {
                case let text as String: overrides[key] = text
                case let number as NSNumber: overrides[key] = number.stringValue
                default: throw BrokerError.badRequest("config value of '\(key)' must be a string or number", attribute: "config.\(key)")
                }
            }
        }
        let topic = try await self.broker.create(topic: name, partitions: partitions, config: overrides)
        return jsonResponse(describe(topic), status: .created)
    }

    func listTopics() throws -> Response {
        let broker = try self.broker
        let topics = broker.topicNames.compactMap { name in broker.partitionCount(name).map { ["name": name, "partitions": $0] as [String: Any] } }
        return jsonResponse(["topics": topics])
    }

    func describeTopic(_ context: AgentRequestContext) async throws -> Response {
        let name = try context.parameters.require("topic")
        guard let topic = try await broker.describeTopic(name) else { throw BrokerError(.notFound, "topic \(name) does not exist") }
        return jsonResponse(describe(topic))
    }

    func describe(_ topic: Topic) -> [String: Any] { describe(TopicDescription(topic)) }

    func describe(_ topic: TopicDescription) -> [String: Any] {
        let partitions = topic.partitions.map { log -> [String: Any] in
            var entry: [String: Any] = ["partition": Int(log.partition), "log_start_offset": log.logStartOffset, "log_end_offset": log.logEndOffset]
            if let size = log.sizeBytes { entry["size_bytes"] = size }
            if let segments = log.segments { entry["segments"] = segments }
            if let last = log.lastAppendTime { entry["last_append_time"] = Timestamp.rfc3339Millis(millisecondsSinceEpoch: last) }
            return entry
        }
        return ["name": topic.name, "partitions": partitions, "config": topic.config]
    }

    /// A `partitions` field of a JSON body: an integer (not a boolean, not a fraction) from 1 to 10000.
    static func partitionCount(_ value: Any) throws -> Int {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c", let count = number as? Int,
              (1...10_000).contains(count) else {
            throw BrokerError.badRequest("'partitions' must be an integer from 1 to 10000", attribute: "partitions")
        }
        return count
    }

    /// Grows a topic to `partitions` partitions (Kafka's CreatePartitions). Asking for the current count changes
    /// nothing, so the request can be repeated; fewer is refused, because partitions can only be added.
    func growTopic(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let name = try context.parameters.require("topic")
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw BrokerError.badRequest("the body must be a JSON object such as {\"partitions\": 12}", attribute: nil)
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "partitions" }) {
            throw BrokerError.badRequest("'\(unknown)' cannot be changed here; only 'partitions' can (topic settings are fixed at creation)", attribute: unknown)
        }
        guard let requested = object["partitions"] else {
            throw BrokerError.badRequest("'partitions' (an integer from 1 to 10000, the new total) is required", attribute: "partitions")
        }
        let count = try Self.partitionCount(requested)
        let broker = try self.broker
        guard let topic = broker.topic(name) else { throw BrokerError(.notFound, "topic \(name) does not exist") }
        let current = topic.partitions.count
        if count == current && !OffsetsTopic.isInternal(name) { return jsonResponse(describe(topic)) }
        guard count > current else {
            throw BrokerError.badRequest("topic \(name) has \(current) partitions and partitions can only be added: ask for more than \(current)", attribute: "partitions")
        }
        return jsonResponse(describe(try broker.addPartitions(name, count: count)))
    }

    func deleteTopic(_ context: AgentRequestContext) async throws -> Response {
        let name = try context.parameters.require("topic")
        try await self.broker.deleteTopic(name)
        await (try? holder.requireGroups())?.topicDeleted(name)
        return Response(status: .noContent)
    }

    // MARK: - Publish

    enum Target { case routed }

    /// How the publish of one topic's part of a request went.
    struct TopicOutcome: Sendable {
        var position: Int
        var result: Result<[PublishResult], BrokerError>
    }

    /// What one publish counts in `sluice_events_published_total`.
    struct PublishedCount: Equatable {
        var topic: String
        var type: String
        var duplicate: Bool
    }

    func publish(_ request: Request, _ context: AgentRequestContext, topic target: Target?) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let broker = try self.broker
        let limit = config.int("max.request.size")
        if let length = request.headers[.contentLength].flatMap(Int.init) {
            if length > limit { throw BrokerError(.payloadTooLarge, "the request body is \(length) bytes; max.request.size is \(limit)") }
            // Under backpressure, say so before spending CPU on a body that could not be accepted anyway.
            try broker.checkBufferRoom(for: length)
        }
        let atomic = try Self.queryBoolean(request, "atomic") ?? false
        let body = Array(buffer: try await request.body.collect(upTo: limit))
        var events = try parseEvents(request, body: body)
        let requestContext = Correlation.current

        // Trace context: the event's extension, else the request's traceparent header (for every event, whatever
        // its correlation id).
        if let header = request.headers[HTTPField.Name.traceparent], Correlation.isTraceparent(header) {
            for index in events.indices where events[index].traceparent == nil { events[index].extensions["traceparent"] = header }
        }
        // Correlation id: the event's extension, else X-Correlation-ID, else traceparent's trace id, else new.
        for index in events.indices where events[index].correlationId == nil {
            if let trace = events[index].traceparent.flatMap(Correlation.parseTraceparent), request.headers[HTTPField.Name.correlationId] == nil {
                events[index].extensions["correlationid"] = trace.traceId
            } else {
                events[index].extensions["correlationid"] = requestContext?.correlationId ?? Correlation.newId()
            }
        }
        guard let spans else {
            return try await write(events, request, context, target: target, broker: broker, atomic: atomic, started: started, spans: nil)
        }
        // A span per event, continuing its traceparent; the event then carries the span's, so that its deliveries are
        // children of its publish.
        let path = target == .routed ? nil : try context.parameters.require("topic")
        var open: [EventSpan] = []
        open.reserveCapacity(events.count)
        for index in events.indices {
            let topic = path ?? broker.route(eventType: events[index].type)
            let span = spans.start("publish \(topic)", kind: .producer, operation: "publish", event: events[index], topic: topic,
                                   parent: events[index].traceparent)
            if let traceparent = span.traceparent { events[index].extensions["traceparent"] = traceparent }
            open.append(span)
        }
        do {
            return try await write(events, request, context, target: target, broker: broker, atomic: atomic, started: started, spans: open)
        } catch {
            let failure = BrokerError(error)
            for span in open {
                span.fail(failure.kind.rawValue, message: failure.message)
                span.end()
            }
            throw error
        }
    }

    /// Writes parsed events (to their topic, or each to its route) and answers with their offsets.
    private func write(_ events: [CloudEvent], _ request: Request, _ context: AgentRequestContext, target: Target?, broker: Broker, atomic: Bool,
                       started: UInt64, spans: [EventSpan]?) async throws -> Response {
        let requestContext = Correlation.current
        var byTopic: [(topic: String, events: [CloudEvent])] = []
        // Where each topic's events are in the request, so that results come back in request order.
        var requestOrder: [Int] = []
        if target == .routed {
            var groups: [String: [(index: Int, event: CloudEvent)]] = [:]
            var order: [String] = []
            for (index, event) in events.enumerated() {
                let topic = broker.route(eventType: event.type)
                if groups[topic] == nil { order.append(topic) }
                groups[topic, default: []].append((index, event))
            }
            byTopic = order.map { ($0, groups[$0]!.map(\.event)) }
            requestOrder = order.flatMap { groups[$0]!.map(\.index) }
        } else {
            byTopic = [(try context.parameters.require("topic"), events)]
        }

        // Schemas first: a request with an event that fails its schema (enforce) writes nothing.
        var violations: [EventSchemaViolation] = []
        var position = 0
        for (topic, group) in byTopic {
            violations += broker.schemaViolations(topic: topic, events: group, firstIndex: position)
            position += group.count
        }
        if let first = violations.first {
            let events = Set(violations.map(\.index)).count
            var error = BrokerError.badRequest("\(events) event(s) do not match their schema, so nothing was published; the first: event \(first.eventId) (\(first.type) \(first.version ?? "")) at '\(first.instancePath)': \(first.message) (\(first.keyword)); every failure is in errors", attribute: "data")
            error.schemaViolations = violations
            for (topic, group) in byTopic {
                for event in group { broker.metrics.eventRefused(topic: topic, topicExists: broker.log.topic(topic) != nil, eventType: event.type, status: "rejected") }
            }
            throw error
        }

        var results: [PublishResult] = []
        if atomic {
            do {
                results = try await broker.publishAtomic(byTopic)
            } catch {
                for (topic, group) in byTopic {
                    let exists = broker.log.topic(topic) != nil
                    for event in group {
                        broker.metrics.eventRefused(topic: topic, topicExists: exists, eventType: event.type, status: error.status >= 500 ? "failed" : "rejected")
                    }
                }
                throw error
            }
        }
        if !atomic {
            // Every topic's events are handed over before any is waited for, so a request routed to several topics
            // waits for one round of fsyncs, not one after another.
            let parts = byTopic
            let outcomes = await withTaskGroup(of: TopicOutcome.self) { tasks in
                for position in parts.indices {
                    let (topic, group) = parts[position]
                    tasks.addTask {
                        do throws(BrokerError) {
                            return TopicOutcome(position: position, result: .success(try await broker.publish(topic: topic, events: group)))
                        } catch {
                            return TopicOutcome(position: position, result: .failure(error))
                        }
                    }
                }
                var outcomes = [Result<[PublishResult], BrokerError>?](repeating: nil, count: parts.count)
                while let outcome = await tasks.next() { outcomes[outcome.position] = outcome.result }
                return outcomes
            }
            var firstError: BrokerError?
            for (position, outcome) in outcomes.enumerated() {
                switch outcome! {
                case .success(let published): results += published
                case .failure(let error):
                    let (topic, group) = byTopic[position]
                    let exists = broker.log.topic(topic) != nil
                    for event in group {
                        broker.metrics.eventRefused(topic: topic, topicExists: exists, eventType: event.type, status: error.status >= 500 ? "failed" : "rejected")
                    }
                    firstError = firstError ?? error
                }
            }
            if let firstError { throw firstError }
        }
        if target == .routed {
            var ordered = results
            for (position, index) in requestOrder.enumerated() where position < results.count { ordered[index] = results[position] }
            results = ordered
        }
        if let spans {
            for (span, result) in zip(spans, results) {
                var written: [(String, EventSpan.Value)] = [(SpanAttributeName.partition, .string(String(result.partition)))]
                if let offset = result.offset { written.append((SpanAttributeName.offset, .int(Int(offset)))) }
                span.set(written)
                span.end()
            }
        }
        // An atomic publish always waits for fsync.
        let acks = atomic ? "all" : config.string("acks")
        broker.metrics.publishDuration(acks: acks, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        // One debug line per event, built only when debug lines are written (it parses the traceparent again).
        let logEach = logger.logLevel <= .debug
        // One counter update per topic, type and outcome, not per event (a request has few of them).
        var counts: [(key: PublishedCount, count: Int)] = []
        for index in results.indices {
            let key = PublishedCount(topic: results[index].topic, type: events[index].type, duplicate: results[index].duplicate)
            if let index = counts.lastIndex(where: { $0.key == key }) { counts[index].count += 1 } else { counts.append((key, 1)) }
        }
        for (key, count) in counts {
            broker.metrics.eventPublished(topic: key.topic, eventType: key.type, status: key.duplicate ? "duplicate" : "written", count: count)
        }
        for (event, result) in zip(events, results) {
            guard logEach else { break }
            let trace = event.traceparent.flatMap(Correlation.parseTraceparent)
            let eventContext = CorrelationContext(
                correlationId: event.correlationId ?? "", causationId: event.causationId,
                traceId: trace?.traceId ?? requestContext?.traceId, spanId: trace?.spanId ?? requestContext?.spanId,
                eventId: event.id, eventType: event.type, topic: result.topic, partition: result.partition, offset: result.offset)
            Correlation.$current.withValue(eventContext) {
                logger.debug(result.duplicate ? "duplicate event acknowledged with its original offset" : "event published")
            }
        }

        // The events' correlation id when they share one, else the request's.
        let first = events.first?.correlationId
        let shared = first != nil && !events.indices.contains { events[$0].correlationId != first }
        let echoed = shared ? first! : (requestContext?.correlationId ?? "")
        var out = JSONWriter()
        out.beginObject()
        out.field("acks", string: acks)
        out.beginArray("results")
        for result in results {
            out.beginObject()
            out.field("duplicate", bool: result.duplicate)
            out.field("id", string: result.id)
            if let offset = result.offset { out.field("offset", int: offset) } else { out.fieldNull("offset") }
            out.field("partition", int: Int64(result.partition))
            out.field("topic", string: result.topic)
            out.endObject()
        }
        out.endArray()
        out.endObject()
        return rawJSONResponse(out.bytes, status: acks == "0" ? .accepted : .ok, correlationId: echoed)
    }

    func parseEvents(_ request: Request, body: [UInt8]) throws -> [CloudEvent] {
        let contentType = request.headers[.contentType] ?? ""
        // The usual spellings are taken as they are; anything else is read without case and parameters.
        let media = contentType == MediaTypes.cloudEvent || contentType == MediaTypes.cloudEventBatch
            ? contentType : contentType.lowercased().split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if request.headers[HTTPField.Name.ceSpecversion] != nil {
            let headers = request.headers.map { (name: $0.name.canonicalName, value: $0.value) }
            return [try CloudEvent.parse(binaryHeaders: headers, body: body)]
        }
        switch media {
        case MediaTypes.cloudEvent:
            return [try CloudEvent.parse(json: body)]
        case MediaTypes.cloudEventBatch:
            return try CloudEvent.parseBatch(json: body)
        default:
            throw BrokerError(.unsupportedMediaType,
                              "Content-Type '\(contentType)' is not a CloudEvents mode: use \(MediaTypes.cloudEvent) (structured), \(MediaTypes.cloudEventBatch) (batch), or ce-* headers with any Content-Type (binary)")
        }
    }

    // MARK: - Read

    func readEvents(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let topic = try context.parameters.require("topic")
        guard let partition = Int32(try context.parameters.require("partition")) else {
            throw BrokerError.badRequest("partition must be a number", attribute: "partition")
        }
        let broker = try self.broker
        func integer(_ name: String, range: ClosedRange<Int64>) throws -> Int64? { try Self.queryInteger(request, name, range: range) }
        let offset = try integer("offset", range: 0...Int64.max)
        let maxRecords = Int(try integer("max", range: 1...Int64(config.int("max.poll.records"))) ?? config.integer("max.poll.records"))
        let waitMs = try integer("wait_ms", range: 0...300_000) ?? config.integer("fetch.max.wait.ms")
        let minBytes = Int(try integer("min_bytes", range: 1...Int64(Int32.max)) ?? config.integer("fetch.min.bytes"))
        let version = try Self.queryVersion(request)
        let isolation = try Self.queryIsolation(request)
        let result = try await broker.fetch(topic: topic, partition: partition, offset: offset, maxRecords: maxRecords,
                                            maxBytes: config.int("max.partition.fetch.bytes"), minBytes: minBytes, maxWaitMs: waitMs, isolation: isolation)
        var out = JSONWriter()
        out.beginObject()
        out.beginArray("events")
        for fetched in result.events { writeEvent(fetched, version: version, into: &out) }
        out.endArray()
        out.field("log_end_offset", int: result.logEndOffset)
        out.field("last_stable_offset", int: result.lastStableOffset)
        out.field("log_start_offset", int: result.logStartOffset)
        out.field("next_offset", int: result.nextOffset)
        out.field("partition", int: Int64(partition))
        out.field("topic", string: topic)
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    /// An integer query parameter within `range`, or a 400 naming it.
    static func queryInteger(_ request: Request, _ name: String, range: ClosedRange<Int64>) throws -> Int64? {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int64(raw), range.contains(value) else {
            throw BrokerError.badRequest("query parameter \(name)=\(raw) must be an integer from \(range.lowerBound) to \(range.upperBound)", attribute: name)
        }
        return value
    }

    /// `?version=latest` or `?version=V`: the version of their types events are read in; nil (absent) reads them as published.
    /// `?atomic=true|false`-style query parameters, or a 400 naming the parameter.
    static func queryBoolean(_ request: Request, _ name: String) throws -> Bool? {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return nil }
        switch raw {
        case "true", "1": return true
        case "false", "0": return false
        default: throw BrokerError.badRequest("query parameter \(name) must be true or false, not '\(raw)'", attribute: name)
        }
    }

    /// `?isolation_level=read_committed|read_uncommitted`, over the agent's `isolation.level`.
    static func queryIsolation(_ request: Request) throws -> IsolationLevel? {
        guard let raw = request.uri.queryParameters["isolation_level"] else { return nil }
        guard let level = IsolationLevel(rawValue: String(raw)) else {
            throw BrokerError.badRequest("query parameter isolation_level must be read_committed or read_uncommitted, not '\(raw)'", attribute: "isolation_level")
        }
        return level
    }

    static func queryVersion(_ request: Request) throws -> VersionTarget? {
        guard let raw = request.uri.queryParameters["version"] else { return nil }
        guard let target = VersionTarget(String(raw)) else {
            throw BrokerError.badRequest("query parameter version must be latest or a version of the event types' schemas, such as 2.0", attribute: "version")
        }
        return target
    }

    /// One read event: its position, and the CloudEvent (or the raw record, base64, when it is not one). With a
    /// `version`, the event is upcast to it; one that cannot be has `error` (`unsupported_event_version`) instead of
    /// `event`. Logs "event read" with the event's correlation.
    func writeEvent(_ fetched: FetchedEvent, version: VersionTarget? = nil, into out: inout JSONWriter) {
        out.beginObject()
        out.field("offset", int: fetched.offset)
        out.field("partition", int: Int64(fetched.partition))
        out.field("timestamp", string: Timestamp.rfc3339Millis(millisecondsSinceEpoch: fetched.timestamp))
        out.field("topic", string: fetched.topic)
        if var event = fetched.event {
            if let version, let broker = try? self.broker {
                switch broker.upcast(event, to: version) {
                case .success(let upcast):
                    event = upcast.event
                    if let from = upcast.upcastFrom { out.field("upcast_from", string: from) }
                case .failure(let failure):
                    out.key("error")
                    out.beginObject()
                    out.field("message", string: failure.message)
                    out.field("type", string: "unsupported_event_version")
                    out.endObject()
                    out.endObject()
                    return
                }
            }
            out.key("event")
            event.writeJSON(into: &out)
            let trace = event.traceparent.flatMap(Correlation.parseTraceparent)
            let eventContext = CorrelationContext(
                correlationId: event.correlationId ?? Correlation.current?.correlationId ?? "", causationId: event.causationId,
                traceId: trace?.traceId, spanId: trace?.spanId, eventId: event.id, eventType: event.type,
                topic: fetched.topic, partition: fetched.partition, offset: fetched.offset)
            Correlation.$current.withValue(eventContext) { logger.debug("event read") }
        } else {
            if let key = fetched.record.key { out.field("key_base64", string: Data(key).base64EncodedString()) } else { out.fieldNull("key_base64") }
            if let value = fetched.record.value { out.field("value_base64", string: Data(value).base64EncodedString()) } else { out.fieldNull("value_base64") }
            out.key("headers")
            out.beginObject()
            for header in fetched.record.headers { out.field(header.key, string: header.value.map { Data($0).base64EncodedString() } ?? "") }
            out.endObject()
        }
        out.endObject()
    }
}

/// The `limit` of a listing (sagas, traces): 1 to 10,000, 100 when absent.
func listLimit(_ text: String?) throws(BrokerError) -> Int {
    guard let text else { return 100 }
    guard let number = Int(text), (1...10_000).contains(number) else {
        throw BrokerError.badRequest("limit must be an integer from 1 to 10000", attribute: "limit")
    }
    return number
}
