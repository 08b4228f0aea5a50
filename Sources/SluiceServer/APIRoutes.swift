import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// The v1 HTTP API over a ``Broker``.
struct APIRoutes: Sendable {
    let broker: Broker
    let logger: Logger

    var config: SluiceConfig { broker.config }

    func register(on router: Router<BasicRequestContext>) {
        router.get(RouterPath(HTTPPath.health)) { _, _ in Self.health() }
        router.get(RouterPath(HTTPPath.ready)) { _, _ in Self.ready(broker) }
        router.post(RouterPath(HTTPPath.topics)) { request, context in try await createTopic(request, context) }
        router.get(RouterPath(HTTPPath.topics)) { _, _ in listTopics() }
        router.get(RouterPath(HTTPPath.topic)) { _, context in try describeTopic(context) }
        router.delete(RouterPath(HTTPPath.topic)) { _, context in try await deleteTopic(context) }
        router.post(RouterPath(HTTPPath.topicEvents)) { request, context in try await publish(request, context, topic: nil) }
        router.post(RouterPath(HTTPPath.routedEvents)) { request, context in try await publish(request, context, topic: .routed) }
        router.get(RouterPath(HTTPPath.partitionEvents)) { request, context in try await readEvents(request, context) }
    }

    static func health() -> Response {
        jsonResponse(["status": "up"])
    }

    static func ready(_ broker: Broker) -> Response {
        broker.isReady
            ? jsonResponse(["status": "ready"])
            : jsonResponse(["status": "starting"], status: .serviceUnavailable)
    }

    // MARK: - Topics

    func createTopic(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw BrokerError.badRequest("the body must be a JSON object such as {\"name\": \"orders\", \"partitions\": 6, \"config\": {\"retention.ms\": \"86400000\"}}", attribute: nil)
        }
        guard let name = object["name"] as? String else {
            throw BrokerError.badRequest("'name' (a string) is required", attribute: "name")
        }
        var partitions: Int?
        if let value = object["partitions"] {
            guard let number = value as? Int, number >= 1, String(cString: (value as! NSNumber).objCType) != "c" else {
                throw BrokerError.badRequest("'partitions' must be an integer from 1 to 10000", attribute: "partitions")
            }
            partitions = number
        }
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
        let topic = try broker.createTopic(name, partitions: partitions, config: overrides)
        return jsonResponse(describe(topic), status: .created)
    }

    func listTopics() -> Response {
        let topics = broker.topicNames.compactMap { broker.topic($0) }.map { ["name": $0.name, "partitions": $0.partitions.count] as [String: Any] }
        return jsonResponse(["topics": topics])
    }

    func describeTopic(_ context: BasicRequestContext) throws -> Response {
        let name = try context.parameters.require("topic")
        guard let topic = broker.topic(name) else { throw BrokerError(.notFound, "topic \(name) does not exist") }
        return jsonResponse(describe(topic))
    }

    func describe(_ topic: Topic) -> [String: Any] {
        let partitions = topic.partitions.map { log -> [String: Any] in
            var entry: [String: Any] = [
                "partition": Int(log.partition), "log_start_offset": log.logStartOffset, "log_end_offset": log.logEndOffset,
                "size_bytes": log.sizeInBytes, "segments": log.segments.count,
            ]
            if let last = log.lastAppendTime { entry["last_append_time"] = Timestamp.rfc3339Millis(millisecondsSinceEpoch: last) }
            return entry
        }
        return ["name": topic.name, "partitions": partitions, "config": topic.config.properties]
    }

    func deleteTopic(_ context: BasicRequestContext) async throws -> Response {
        try await broker.deleteTopic(try context.parameters.require("topic"))
        return Response(status: .noContent)
    }

    // MARK: - Publish

    enum Target { case routed }

    func publish(_ request: Request, _ context: BasicRequestContext, topic target: Target?) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let limit = config.int("max.request.size")
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw BrokerError(.payloadTooLarge, "the request body is \(length) bytes; max.request.size is \(limit)")
        }
        let body = Array(buffer: try await request.body.collect(upTo: limit))
        var events = try parseEvents(request, body: body)
        let requestContext = Correlation.current

        // Correlation id: the event's extension, else X-Correlation-ID, else traceparent's trace id, else new.
        for index in events.indices where events[index].correlationId == nil {
            if let trace = events[index].traceparent.flatMap(Correlation.parseTraceparent), request.headers[HTTPField.Name(HeaderName.correlationId)!] == nil {
                events[index].extensions["correlationid"] = trace.traceId
            } else {
                events[index].extensions["correlationid"] = requestContext?.correlationId ?? UUID().uuidString.lowercased()
            }
            if events[index].traceparent == nil, let header = request.headers[HTTPField.Name(HeaderName.traceparent)!], Correlation.parseTraceparent(header) != nil {
                events[index].extensions["traceparent"] = header
            }
        }

        var byTopic: [(topic: String, events: [CloudEvent])] = []
        if target == .routed {
            var groups: [String: [CloudEvent]] = [:]
            var order: [String] = []
            for event in events {
                let topic = broker.route(eventType: event.type)
                if groups[topic] == nil { order.append(topic) }
                groups[topic, default: []].append(event)
            }
            byTopic = order.map { ($0, groups[$0]!) }
        } else {
            byTopic = [(try context.parameters.require("topic"), events)]
        }

        var results: [PublishResult] = []
        for (topic, group) in byTopic {
            do {
                results += try await broker.publish(topic: topic, events: group)
            } catch {
                for event in group {
                    broker.metrics.eventPublished(topic: topic, eventType: event.type, status: error.status >= 500 ? "failed" : "rejected")
                }
                throw error
            }
        }
        let acks = config.string("acks")
        broker.metrics.publishDuration(acks: acks, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        for (event, result) in zip(events, results) {
            broker.metrics.eventPublished(topic: result.topic, eventType: event.type, status: result.duplicate ? "duplicate" : "written")
            let eventContext = CorrelationContext(
                correlationId: event.correlationId ?? "", causationId: event.causationId,
                traceId: event.traceparent.flatMap(Correlation.parseTraceparent)?.traceId ?? requestContext?.traceId,
                spanId: event.traceparent.flatMap(Correlation.parseTraceparent)?.spanId ?? requestContext?.spanId,
                eventId: event.id, eventType: event.type, topic: result.topic, partition: result.partition, offset: result.offset)
            Correlation.$current.withValue(eventContext) {
                logger.debug(result.duplicate ? "duplicate event acknowledged with its original offset" : "event published")
            }
        }

        let correlations = Set(events.compactMap(\.correlationId))
        let echoed = correlations.count == 1 ? correlations.first! : (requestContext?.correlationId ?? "")
        let body_: [String: Any] = [
            "acks": acks,
            "results": results.map { result -> [String: Any] in
                var entry: [String: Any] = ["id": result.id, "topic": result.topic, "partition": Int(result.partition), "duplicate": result.duplicate]
                entry["offset"] = result.offset.map { $0 as Any } ?? NSNull()
                return entry
            },
        ]
        return jsonResponse(body_, status: acks == "0" ? .accepted : .ok, correlationId: echoed)
    }

    func parseEvents(_ request: Request, body: [UInt8]) throws -> [CloudEvent] {
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        let media = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if request.headers[HTTPField.Name("ce-specversion")!] != nil {
            let headers = request.headers.map { (name: $0.name.canonicalName, value: $0.value) }
            return [try CloudEvent.parse(binaryHeaders: headers, body: body)]
        }
        switch media {
        case MediaTypes.cloudEvent:
            return [try CloudEvent.parse(jsonObject: try parseJSON(body))]
        case MediaTypes.cloudEventBatch:
            guard let array = try parseJSON(body) as? [Any] else {
                throw BrokerError.badRequest("a batch (\(MediaTypes.cloudEventBatch)) must be a JSON array of CloudEvents", attribute: nil)
            }
            guard !array.isEmpty else { throw BrokerError.badRequest("the batch is empty", attribute: nil) }
            return try array.enumerated().map { index, element in try CloudEvent.parse(jsonObject: element, index: index) }
        default:
            throw BrokerError(.unsupportedMediaType,
                              "Content-Type '\(contentType)' is not a CloudEvents mode: use \(MediaTypes.cloudEvent) (structured), \(MediaTypes.cloudEventBatch) (batch), or ce-* headers with any Content-Type (binary)")
        }
    }

    func parseJSON(_ body: [UInt8]) throws(BrokerError) -> Any {
        do {
            return try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        } catch {
            throw BrokerError.badRequest("the body is not valid JSON: \(error.localizedDescription)", attribute: nil)
        }
    }

    // MARK: - Read

    func readEvents(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let topic = try context.parameters.require("topic")
        guard let partition = Int32(try context.parameters.require("partition")) else {
            throw BrokerError.badRequest("partition must be a number", attribute: "partition")
        }
        let query = request.uri.queryParameters
        func integer(_ name: String, range: ClosedRange<Int64>) throws -> Int64? {
            guard let raw = query[Substring(name)] else { return nil }
            guard let value = Int64(raw), range.contains(value) else {
                throw BrokerError.badRequest("query parameter \(name)=\(raw) must be an integer from \(range.lowerBound) to \(range.upperBound)", attribute: name)
            }
            return value
        }
        let offset = try integer("offset", range: 0...Int64.max)
        let maxRecords = Int(try integer("max", range: 1...Int64(config.int("max.poll.records"))) ?? config.integer("max.poll.records"))
        let waitMs = try integer("wait_ms", range: 0...300_000) ?? config.integer("fetch.max.wait.ms")
        let minBytes = Int(try integer("min_bytes", range: 1...Int64(Int32.max)) ?? config.integer("fetch.min.bytes"))
        let result = try await broker.fetch(topic: topic, partition: partition, offset: offset, maxRecords: maxRecords,
                                            maxBytes: config.int("max.partition.fetch.bytes"), minBytes: minBytes, maxWaitMs: waitMs)
        var events: [[String: Any]] = []
        for fetched in result.events {
            var entry: [String: Any] = ["partition": Int(fetched.partition), "offset": fetched.offset,
                                        "timestamp": Timestamp.rfc3339Millis(millisecondsSinceEpoch: fetched.timestamp)]
            if let event = fetched.event {
                entry["event"] = event.jsonObject()
                let trace = event.traceparent.flatMap(Correlation.parseTraceparent)
                let eventContext = CorrelationContext(
                    correlationId: event.correlationId ?? Correlation.current?.correlationId ?? "", causationId: event.causationId,
                    traceId: trace?.traceId, spanId: trace?.spanId, eventId: event.id, eventType: event.type,
                    topic: topic, partition: partition, offset: fetched.offset)
                Correlation.$current.withValue(eventContext) { logger.debug("event read") }
            } else {
                entry["key_base64"] = fetched.record.key.map { Data($0).base64EncodedString() } ?? NSNull()
                entry["value_base64"] = fetched.record.value.map { Data($0).base64EncodedString() } ?? NSNull()
                entry["headers"] = Dictionary(fetched.record.headers.map { ($0.key, $0.value.map { Data($0).base64EncodedString() } ?? "") }) { a, _ in a }
            }
            events.append(entry)
        }
        return jsonResponse([
            "topic": topic, "partition": Int(partition), "events": events, "next_offset": result.nextOffset,
            "log_start_offset": result.logStartOffset, "log_end_offset": result.logEndOffset,
        ])
    }
}
