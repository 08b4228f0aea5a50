import Foundation
import Hummingbird
import SluiceBroker
import SluiceLog
import SluiceTelemetry

/// The consumer-group endpoints of the v1 API.
extension APIRoutes {
    var groups: GroupCoordinator {
        get throws { try holder.requireGroups() }
    }

    func registerGroups(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.groups)) { _, _ in try listGroups() }
        router.get(RouterPath(HTTPPath.group)) { _, context in try describeGroup(context) }
        router.delete(RouterPath(HTTPPath.group)) { _, context in
            try await self.groups.deleteGroup(try context.parameters.require("group"))
            return Response(status: .noContent)
        }
        router.post(RouterPath(HTTPPath.groupMembers)) { request, context in try await join(request, context) }
        router.delete(RouterPath(HTTPPath.groupMember)) { _, context in
            try await self.groups.leave(group: try context.parameters.require("group"), member: try context.parameters.require("member"))
            return Response(status: .noContent)
        }
        router.post(RouterPath(HTTPPath.memberHeartbeat)) { _, context in
            let assignment = try await self.groups.heartbeatMember(group: try context.parameters.require("group"), member: try context.parameters.require("member"))
            var out = JSONWriter()
            out.beginObject()
            writeAssignment(assignment, into: &out)
            out.endObject()
            return rawJSONResponse(out.bytes)
        }
        router.post(RouterPath(HTTPPath.memberPoll)) { request, context in try await poll(request, context) }
        router.post(RouterPath(HTTPPath.groupOffsets)) { request, context in try await commit(request, context) }
        router.post(RouterPath(HTTPPath.groupOffsetsReset)) { request, context in try await resetOffsets(request, context) }
    }

    func resetOffsets(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        try broker.requireEmbedded("resetting a group's offsets through Sluice (use the cluster's own tools, e.g. kafka-consumer-groups --reset-offsets)")
        let group = try context.parameters.require("group")
        let object = try await jsonObjectBody(request, example: "{\"to\": \"earliest\", \"topics\": [\"orders\"], \"dry_run\": true}")
        let target = try Self.resetTarget(object)
        var scope: [OffsetResetScope]?
        if let value = object["topics"] {
            guard let list = value as? [String] else {
                throw BrokerError.badRequest("'topics' must be an array of topic names, each optionally with partitions: [\"orders\", \"payments:0,2\"]", attribute: "topics")
            }
            scope = try list.map { text in
                guard let entry = OffsetResetScope.parse(text) else {
                    throw BrokerError.badRequest("'topics' entry '\(text)' is not TOPIC or TOPIC:P1,P2 (partition numbers)", attribute: "topics")
                }
                return entry
            }
        }
        let dryRun = try booleanField(object, "dry_run") ?? false
        let rows = try await groups.resetOffsets(group: group, to: target, scope: scope, dryRun: dryRun, requester: context.clientAddress)
        var out = JSONWriter()
        out.beginObject()
        out.field("dry_run", bool: dryRun)
        out.field("group", string: group)
        writeResetRows(rows, into: &out)
        out.field("to", string: target.description)
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    func writeResetRows(_ rows: [OffsetResetRow], into out: inout JSONWriter) {
        out.beginArray("partitions")
        for row in rows {
            out.beginObject()
            out.field("log_end_offset", int: row.logEndOffset)
            out.field("log_start_offset", int: row.logStartOffset)
            out.field("new_offset", int: row.offset)
            out.field("partition", int: Int64(row.partition.partition))
            if let previous = row.previous { out.field("previous_offset", int: previous) } else { out.fieldNull("previous_offset") }
            out.field("topic", string: row.partition.topic)
            out.endObject()
        }
        out.endArray()
    }

    /// The target of a reset or rewind body: exactly one of `to` ("earliest", "latest", an RFC 3339 time or an
    /// offset), `shift_by` (records, negative = back) or `by_duration` ("1h", "PT30M").
    static func resetTarget(_ object: [String: Any]) throws -> OffsetResetTarget {
        let given = ["to", "shift_by", "by_duration"].filter { object[$0] != nil }
        guard given.count == 1 else {
            throw BrokerError.badRequest("give exactly one of 'to' (\"earliest\", \"latest\", an RFC 3339 time or an offset), 'shift_by' (an integer) or 'by_duration' (e.g. \"1h\"); got \(given.isEmpty ? "none" : given.joined(separator: ", "))",
                                         attribute: given.first ?? "to")
        }
        func integer(_ value: Any) -> Int64? {
            guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else { return nil }
            return Int64(exactly: number.doubleValue)
        }
        if let value = object["to"] {
            if let text = value as? String {
                switch text {
                case "earliest": return .earliest
                case "latest": return .latest
                default:
                    guard let millis = Timestamp.parseRFC3339Millis(text) else {
                        throw BrokerError.badRequest("'to' is \"\(text)\": use \"earliest\", \"latest\", an RFC 3339 time such as 2026-12-04T10:00:00Z, or an offset number", attribute: "to")
                    }
                    return .datetime(millis)
                }
            }
            guard let offset = integer(value) else {
                throw BrokerError.badRequest("'to' must be \"earliest\", \"latest\", an RFC 3339 time or an integer offset", attribute: "to")
            }
            return .offset(offset)
        }
        if let value = object["shift_by"] {
            guard let count = integer(value) else { throw BrokerError.badRequest("'shift_by' must be an integer (negative moves back)", attribute: "shift_by") }
            return .shiftBy(count)
        }
        guard let text = object["by_duration"] as? String, let millis = OffsetResetTarget.parseDuration(text), millis >= 0 else {
            throw BrokerError.badRequest("'by_duration' must be a duration such as \"1h\", \"90m\", \"1h30m\", \"2d\" or ISO 8601 \"PT1H\"", attribute: "by_duration")
        }
        return .byDuration(millis)
    }

    func listGroups() throws -> Response {
        let groups = try self.groups
        let summaries = try groups.groupNames.map { name -> [String: Any] in
            let description = try groups.describe(group: name)
            return ["name": name, "state": description.state.rawValue, "members": description.members.count, "status": description.status.name,
                    "lag": description.partitions.reduce(0) { $0 + $1.lag },
                    "lag_seconds": description.partitions.reduce(0.0) { max($0, $1.lagSeconds) }]
        }
        return jsonResponse(["groups": summaries])
    }

    func describeGroup(_ context: AgentRequestContext) throws -> Response {
        let description = try groups.describe(group: try context.parameters.require("group"))
        var out = JSONWriter()
        out.beginObject()
        out.field("generation", int: Int64(description.generation))
        out.beginArray("members")
        for member in description.members {
            out.beginObject()
            writePartitions("assignment", member.assignment, into: &out)
            if let autoCommit = member.autoCommit { out.field("auto_commit", bool: autoCommit) }
            if let host = member.clientHost { out.field("client_host", string: host) }
            out.field("client_id", string: member.clientId)
            if let instance = member.instanceId { out.field("instance_id", string: instance) }
            out.field("joined", string: Timestamp.rfc3339Millis(millisecondsSinceEpoch: member.joinedMillis))
            out.field("last_seen", string: Timestamp.rfc3339Millis(millisecondsSinceEpoch: member.lastSeenMillis))
            out.field("member_id", string: member.id)
            out.field("session_timeout_ms", int: member.sessionTimeoutMs)
            out.beginArray("topics")
            for topic in member.topics { out.value(string: topic) }
            out.endArray()
            out.endObject()
        }
        out.endArray()
        out.field("name", string: description.name)
        out.beginArray("partitions")
        for row in description.partitions {
            out.beginObject()
            out.field("commit_age_seconds", double: row.commitAgeSeconds)
            out.field("committed_at", string: Timestamp.rfc3339Millis(millisecondsSinceEpoch: row.committed.commitTime))
            out.field("committed_offset", int: row.committed.offset)
            out.field("expired_records", int: row.expired)
            out.field("lag", int: row.lag)
            out.field("lag_seconds", double: row.lagSeconds)
            out.field("log_end_offset", int: row.logEndOffset)
            out.field("log_start_offset", int: row.logStartOffset)
            out.field("metadata", string: row.committed.metadata)
            out.field("partition", int: Int64(row.key.partition))
            out.field("status", string: row.status.name)
            out.field("topic", string: row.key.topic)
            out.endObject()
        }
        out.endArray()
        out.field("state", string: description.state.rawValue)
        out.field("status", string: description.status.name)
        if let strategy = description.strategy { out.field("strategy", string: strategy.rawValue) } else { out.fieldNull("strategy") }
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    func join(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let group = try context.parameters.require("group")
        let object = try await jsonObjectBody(request, example: "{\"topics\": [\"orders\"], \"client_id\": \"billing-1\"}")
        guard let topics = object["topics"] as? [String] else {
            throw BrokerError.badRequest("'topics' (an array of topic names) is required, e.g. {\"topics\": [\"orders\"]}", attribute: "topics")
        }
        var options = MemberOptions(topics: topics)
        if let value = object["client_id"] {
            guard let text = value as? String else { throw BrokerError.badRequest("'client_id' must be a string", attribute: "client_id") }
            options.clientId = text
        }
        if let value = object["assignment_strategy"] {
            guard let text = value as? String, let strategy = AssignmentStrategy(rawValue: text) else {
                throw BrokerError.badRequest("'assignment_strategy' must be one of \(AssignmentStrategy.allCases.map(\.rawValue).joined(separator: ", "))", attribute: "assignment_strategy")
            }
            options.strategy = strategy
        }
        options.sessionTimeoutMs = try integerField(object, "session_timeout_ms")
        if let flag = try booleanField(object, "enable_auto_commit") { options.autoCommit = flag }
        if let value = object["auto_offset_reset"] {
            guard let text = value as? String else { throw BrokerError.badRequest("'auto_offset_reset' must be earliest, latest or none", attribute: "auto_offset_reset") }
            options.offsetReset = text
        }
        let assignment = try await groups.joinMember(group: group, options: options)
        var out = JSONWriter()
        out.beginObject()
        writeAssignment(assignment, into: &out)
        out.endObject()
        return rawJSONResponse(out.bytes, status: .created)
    }

    func poll(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let group = try context.parameters.require("group")
        let member = try context.parameters.require("member")
        let maxRecords = Int(try Self.queryInteger(request, "max", range: 1...Int64(config.int("max.poll.records"))) ?? config.integer("max.poll.records"))
        let waitMs = try Self.queryInteger(request, "wait_ms", range: 0...300_000) ?? config.integer("fetch.max.wait.ms")
        let version = try Self.queryVersion(request)
        let result = try await groups.poll(group: group, member: member, maxRecords: maxRecords, waitMs: waitMs)
        var out = JSONWriter()
        out.beginObject()
        writeAssignment(result.member, into: &out)
        out.beginArray("events")
        for fetched in result.events { writeEvent(fetched, version: version, into: &out) }
        out.endArray()
        out.beginArray("positions")
        for (tp, offset) in result.positions.sorted(by: { $0.key < $1.key }) {
            out.beginObject()
            out.field("offset", int: offset)
            out.field("partition", int: Int64(tp.partition))
            out.field("topic", string: tp.topic)
            out.endObject()
        }
        out.endArray()
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    func commit(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let group = try context.parameters.require("group")
        let example = "{\"member_id\": \"…\", \"offsets\": [{\"topic\": \"orders\", \"partition\": 0, \"offset\": 42}]}"
        let object = try await jsonObjectBody(request, example: example)
        var member: String?
        if let value = object["member_id"] {
            guard let text = value as? String else { throw BrokerError.badRequest("'member_id' must be a string", attribute: "member_id") }
            member = text
        }
        guard let list = object["offsets"] as? [[String: Any]] else {
            throw BrokerError.badRequest("'offsets' (an array of {topic, partition, offset}) is required, e.g. \(example)", attribute: "offsets")
        }
        var offsets: [(TopicPartition, Int64, String)] = []
        for (index, entry) in list.enumerated() {
            guard let topic = entry["topic"] as? String else {
                throw BrokerError.badRequest("offsets[\(index)].topic (a string) is required", attribute: "offsets[\(index)].topic")
            }
            guard let partition = try integerField(entry, "partition", path: "offsets[\(index)].partition"), let offset = try integerField(entry, "offset", path: "offsets[\(index)].offset") else {
                throw BrokerError.badRequest("offsets[\(index)] needs integer 'partition' and 'offset'", attribute: "offsets[\(index)]")
            }
            guard let partition32 = Int32(exactly: partition) else {
                throw BrokerError.badRequest("offsets[\(index)].partition=\(partition) is out of range", attribute: "offsets[\(index)].partition")
            }
            let metadata = entry["metadata"] as? String ?? ""
            offsets.append((TopicPartition(topic, partition32), offset, metadata))
        }
        let committed = try await groups.commit(group: group, member: member, offsets: offsets)
        var out = JSONWriter()
        out.beginObject()
        out.beginArray("offsets")
        for (key, value) in committed.sorted(by: { $0.key < $1.key }) {
            out.beginObject()
            out.field("committed_at", string: Timestamp.rfc3339Millis(millisecondsSinceEpoch: value.commitTime))
            out.field("offset", int: value.offset)
            out.field("partition", int: Int64(key.partition))
            out.field("topic", string: key.topic)
            out.endObject()
        }
        out.endArray()
        out.endObject()
        return rawJSONResponse(out.bytes)
    }

    // MARK: - Helpers

    func writeAssignment(_ assignment: MemberAssignment, into out: inout JSONWriter) {
        writePartitions("assignment", assignment.assignment, into: &out)
        out.field("generation", int: Int64(assignment.generation))
        out.field("heartbeat_interval_ms", int: assignment.heartbeatIntervalMs)
        out.field("member_id", string: assignment.memberId)
        writePartitions("pending", assignment.pending, into: &out)
        out.field("session_timeout_ms", int: assignment.sessionTimeoutMs)
        out.field("state", string: assignment.state.rawValue)
    }

    func writePartitions(_ name: String, _ partitions: [TopicPartition], into out: inout JSONWriter) {
        out.beginArray(name)
        for tp in partitions {
            out.beginObject()
            out.field("partition", int: Int64(tp.partition))
            out.field("topic", string: tp.topic)
            out.endObject()
        }
        out.endArray()
    }

    func jsonObjectBody(_ request: Request, example: String) async throws -> [String: Any] {
        let body = try await request.body.collect(upTo: 1 << 20)
        guard let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] else {
            throw BrokerError.badRequest("the body must be a JSON object such as \(example)", attribute: nil)
        }
        return object
    }

    /// A JSON true or false (not a number), or nil when absent.
    func booleanField(_ object: [String: Any], _ name: String) throws -> Bool? {
        guard let value = object[name] else { return nil }
        guard let flag = value as? Bool, (value as? NSNumber).map({ String(cString: $0.objCType) == "c" }) == true else {
            throw BrokerError.badRequest("'\(name)' must be true or false", attribute: name)
        }
        return flag
    }

    /// An integer field (not a boolean or fraction), or nil when absent.
    func integerField(_ object: [String: Any], _ name: String, path: String? = nil) throws -> Int64? {
        guard let value = object[name] else { return nil }
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c", let integer = Int64(exactly: number.doubleValue) else {
            throw BrokerError.badRequest("'\(path ?? name)' must be an integer", attribute: path ?? name)
        }
        return integer
    }
}
