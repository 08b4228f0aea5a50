import Foundation
import SluiceTestSupport
import Testing

/// Real Kafka clients against `sluice serve`: kcat (librdkafka) and kafka-python, installed by scripts/test.
@Suite(.serialized)
struct KafkaClientTests {
    static let kcat = "/usr/bin/kcat"
    static let clients = packageRoot + "/Tests/SluiceKafkaTests/Clients"

    /// kcat's JSON consume output, one object per message.
    struct KcatMessage: Decodable {
        var topic: String
        var partition: Int
        var offset: Int64
        var key: String?
        var payload: String?
        var headers: [String]?

        var headerPairs: [(String, String)] {
            let flat = headers ?? []
            return stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
        }
    }

    static func consume(_ kafka: String, _ arguments: [String]) throws -> [KcatMessage] {
        let result = try runProcess(kcat, ["-b", kafka, "-C", "-J", "-e", "-q"] + arguments)
        #expect(result.status == 0, "kcat consume failed: \(result.stderr)")
        return try result.stdout.split(separator: "\n").map { try JSONDecoder().decode(KcatMessage.self, from: Data($0.utf8)) }
    }

    /// A Fetch answer is sent as several ranges of segment files (sendfile) between the protocol's own bytes:
    /// here many small segments per partition, so that one response carries ranges of several files each.
    @Test func kcatReadsEveryRecordAcrossManySegments() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, [])
            defer { agent.stop() }
            let created = try await http("POST", agent.base + "/v1/topics",
                                         body: json(["name": "segmented", "partitions": 2, "config": ["segment.bytes": "8192"]]))
            #expect(created.status == 201, "\(created.text)")
            let padding = String(repeating: "x", count: 480)
            let lines = (0..<300).map { "k\($0 % 11):\($0) \(padding)" }.joined(separator: "\n") + "\n"
            let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "segmented", "-K:",
                                                     "-X", "batch.num.messages=7", "-X", "linger.ms=0"], stdin: lines)
            #expect(produce.status == 0, "kcat produce failed: \(produce.stderr)")
            let described = try await http("GET", agent.base + "/v1/topics/segmented")
            let segments = (described.json["partitions"] as? [[String: Any]] ?? []).map { $0["segments"] as? Int ?? 0 }
            #expect(segments.allSatisfy { $0 >= 5 }, "segments per partition: \(segments)")

            let messages = try Self.consume(agent.kafka, ["-t", "segmented"])
            #expect(messages.count == 300)
            #expect(messages.compactMap(\.payload).sorted() == (0..<300).map { "\($0) \(padding)" }.sorted())
            for partition in 0..<2 {
                let offsets = messages.filter { $0.partition == partition }.map(\.offset)
                #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition) offsets \(offsets)")
            }
            // From an offset in the middle of a later segment.
            let tail = try Self.consume(agent.kafka, ["-t", "segmented", "-p", "0", "-o", "100", "-c", "5"])
            #expect(tail.map(\.offset) == [100, 101, 102, 103, 104])
        }
    }

    /// librdkafka writes snappy as one raw block and reads Sluice's xerial framing; lz4 and zstd are frames both ways.
    /// The log must hold batches of the codec from both paths: librdkafka falls back to uncompressed batches, silently,
    /// when ApiVersions does not list what it wants (Produce v0 for gzip, snappy and lz4).
    @Test(arguments: ["gzip", "snappy", "lz4", "zstd"])
    func everyCodecCrossesBetweenKcatAndHTTP(_ codec: String) async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1", "--compression-type", codec, "--linger-ms", "0"])
            defer { agent.stop() }
            // Every value long and repetitive: librdkafka sends a batch uncompressed when compressing does not shrink it.
            let lines = (0..<30).map { "k\($0 % 3):kcat \(codec) \($0) " + String(repeating: "z", count: 400 + $0 * 40) }.joined(separator: "\n") + "\n"
            let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "codecs", "-K:", "-z", codec, "-X", "acks=all"], stdin: lines)
            #expect(produce.status == 0, "kcat produce failed: \(produce.stderr)")
            let events = (0..<20).map { n -> [String: Any] in
                ["specversion": "1.0", "id": "\(codec)-\(n)", "source": "/codecs", "type": "codec.tested", "data": ["n": n, "codec": codec]]
            }
            let published = try await http("POST", agent.base + "/v1/topics/codecs/events", headers: ["Content-Type": "application/cloudevents-batch+json"],
                                           body: json(events))
            #expect(published.status == 200, "\(published.text)")

            // The log holds batches of the codec from both paths.
            let dump = try runProcess(sluiceBinary, ["dump", "--data-dir", dir + "/data", "--topic", "codecs", "--partition", "0"])
            #expect(dump.status == 0, "\(dump.stderr)")
            let codecs = dump.stdout.split(separator: "\n").compactMap { line -> String? in
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], object["type"] as? String == "batch" else { return nil }
                return object["codec"] as? String
            }
            #expect(codecs.count >= 2 && Set(codecs) == [codec], "batches' codecs: \(codecs)")

            let messages = try Self.consume(agent.kafka, ["-t", "codecs"])
            #expect(messages.count == 50)
            #expect(messages.map(\.offset) == Array(0..<50))
            #expect(Array(messages.prefix(30)).compactMap(\.payload) == (0..<30).map { "kcat \(codec) \($0) " + String(repeating: "z", count: 400 + $0 * 40) })
            #expect(messages.suffix(20).allSatisfy { $0.payload?.contains("\"codec\":\"\(codec)\"") == true })

            // And HTTP reads decode both: kcat's records as bytes, the CloudEvents as events.
            let read = try await http("GET", agent.base + "/v1/topics/codecs/partitions/0/events?offset=0&limit=100")
            let got = read.json["events"] as? [[String: Any]] ?? []
            #expect(got.count == 50, "\(read.text.prefix(400))")
            #expect(got.suffix(20).compactMap { ($0["event"] as? [String: Any])?["id"] as? String } == (0..<20).map { "\(codec)-\($0)" })
        }
    }

    /// Kafka's topic setting: `producer` keeps each batch as it came; a codec makes every batch of the topic that
    /// codec, from Kafka clients (recompressed) and over HTTP (instead of the agent's compression.type).
    @Test func topicCompressionTypeDecidesTheStoredCodec() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--compression-type", "gzip", "--linger-ms", "0"])
            defer { agent.stop() }
            for (name, setting) in [("kept", "producer"), ("squeezed", "zstd")] {
                let created = try await http("POST", agent.base + "/v1/topics",
                                             body: json(["name": name, "partitions": 1, "config": ["compression.type": setting]]))
                #expect(created.status == 201, "\(created.text)")
                let lines = (0..<25).map { "k\($0 % 3):\(name) \($0) " + String(repeating: "q", count: 200) }.joined(separator: "\n") + "\n"
                let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", name, "-K:", "-z", "lz4"], stdin: lines)
                #expect(produce.status == 0, "kcat produce failed: \(produce.stderr)")
                let event: [String: Any] = ["specversion": "1.0", "id": "\(name)-1", "source": "/t", "type": "t", "data": ["n": 1]]
                let published = try await http("POST", agent.base + "/v1/topics/\(name)/events", headers: ["Content-Type": "application/cloudevents+json"],
                                               body: json(event))
                #expect(published.status == 200, "\(published.text)")
                let messages = try Self.consume(agent.kafka, ["-t", name])
                #expect(messages.count == 26)
                #expect(messages.prefix(25).compactMap(\.payload) == (0..<25).map { "\(name) \($0) " + String(repeating: "q", count: 200) })
            }
            let described = try await http("GET", agent.base + "/v1/topics/squeezed")
            #expect((described.json["config"] as? [String: Any])?["compression.type"] as? String == "zstd", "\(described.text)")
            func storedCodecs(_ topic: String) throws -> [String] {
                let dump = try runProcess(sluiceBinary, ["dump", "--data-dir", dir + "/data", "--topic", topic, "--partition", "0"])
                return dump.stdout.split(separator: "\n").compactMap { line in
                    let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    return object?["type"] as? String == "batch" ? object?["codec"] as? String : nil
                }
            }
            // kcat's lz4 as sent and the agent's gzip over HTTP; zstd for both in the zstd topic.
            let kept = try storedCodecs("kept"), squeezed = try storedCodecs("squeezed")
            #expect(kept.first == "lz4" && kept.last == "gzip", "\(kept)")
            #expect(!squeezed.isEmpty && Set(squeezed) == ["zstd"], "\(squeezed)")
            let refused = try await http("POST", agent.base + "/v1/topics", body: json(["name": "bad", "config": ["compression.type": "brotli"]]))
            #expect(refused.status == 400 && refused.text.contains("compression.type=brotli"), "\(refused.text)")
        }
    }

    @Test func kcatProducesConsumesAndListsMetadata() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "2"])
            defer { agent.stop() }
            let lines = (0..<40).map { "key-\($0 % 5):value \($0)" }.joined(separator: "\n") + "\n"
            let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "orders", "-K:", "-H", "source=kcat", "-H", "empty=",
                                                     "-X", "acks=all", "-z", "gzip"], stdin: lines)
            #expect(produce.status == 0, "kcat produce failed: \(produce.stderr)")

            let messages = try Self.consume(agent.kafka, ["-t", "orders"])
            #expect(messages.count == 40)
            #expect(Set(messages.compactMap(\.payload)) == Set((0..<40).map { "value \($0)" }))
            // The default partitioner hashes keys: one key, one partition, in produce order.
            for key in Set(messages.compactMap(\.key)) {
                let partitions = Set(messages.filter { $0.key == key }.map(\.partition))
                #expect(partitions.count == 1, "key \(key) landed on \(partitions)")
            }
            #expect(messages.allSatisfy { $0.headerPairs.contains { $0 == ("source", "kcat") } && $0.headerPairs.contains { $0 == ("empty", "") } })
            for partition in 0..<2 {
                let offsets = messages.filter { $0.partition == partition }.map(\.offset)
                #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition) offsets \(offsets)")
            }

            // Reading from an offset, and a bounded count.
            let tail = try Self.consume(agent.kafka, ["-t", "orders", "-p", "0", "-o", "2", "-c", "3"])
            #expect(tail.map(\.offset) == [2, 3, 4])

            // -L: the topic with its partitions, led by the one broker at the advertised (bound) address.
            let metadata = try runProcess(Self.kcat, ["-b", agent.kafka, "-L", "-J"])
            #expect(metadata.status == 0, "\(metadata.stderr)")
            let listing = try JSONSerialization.jsonObject(with: Data(metadata.stdout.utf8)) as? [String: Any]
            let brokers = listing?["brokers"] as? [[String: Any]]
            #expect(brokers?.count == 1 && brokers?.first?["name"] as? String == agent.kafka, "\(metadata.stdout)")
            let topics = listing?["topics"] as? [[String: Any]] ?? []
            let orders = topics.first { $0["topic"] as? String == "orders" }
            #expect((orders?["partitions"] as? [Any])?.count == 2)

            // What Kafka clients produced reads over HTTP too (a plain record, base64).
            let read = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=0&limit=1")
            #expect(read.status == 200)
            let event = (read.json["events"] as? [[String: Any]])?.first
            #expect(event?["value_base64"] as? String != nil, "\(read.text)")
            #expect(agent.logText().contains("\"topic created\""))
        }
    }

    /// Transactions published atomically over HTTP reach Kafka consumers as Kafka's own: librdkafka (kcat) and
    /// kafka-python at read_committed skip the aborted one (Fetch's last stable offset and aborted-transaction
    /// list), at read_uncommitted they see it; neither sees the markers.
    @Test func kafkaConsumersHonourIsolationOnAtomicPublishes() async throws {
        try await withTemporaryDirectory { dir in
            let config = dir + "/sluice.yaml"
            try "routes:\n  - match: \"order.*\"\n    topic: orders\n  - match: \"payment.*\"\n    topic: tiny\n".write(toFile: config, atomically: true, encoding: .utf8)
            let agent = try await startServed(dir, ["--num-partitions", "1", "--config", config])
            defer { agent.stop() }
            let created = try await http("POST", agent.base + "/v1/topics", body: json(["name": "tiny", "partitions": 1, "config": ["max.message.bytes": "2000"]]))
            #expect(created.status == 201, "\(created.text)")
            func event(_ id: String, _ type: String, size: Int = 10) -> [String: Any] {
                ["specversion": "1.0", "id": id, "source": "/kafka-test", "type": type, "data": ["pad": String((0..<size).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })]]
            }
            func publish(_ events: [[String: Any]]) async throws -> Int {
                try await http("POST", agent.base + "/v1/events?atomic=true", headers: ["Content-Type": "application/cloudevents-batch+json"], body: json(events)).status
            }
            #expect(try await publish([event("c1", "order.created"), event("c2", "order.created"), event("c3", "payment.captured")]) == 200)
            // The payment is too large for tiny's max.message.bytes after the orders' batch was written: the whole
            // transaction is aborted, so the two orders stay in the log behind an ABORT marker.
            #expect(try await publish([event("a1", "order.created"), event("a2", "order.created"), event("a3", "payment.captured", size: 5000)]) == 413)
            #expect(try await publish([event("c4", "order.created")]) == 200)

            for (isolation, expected) in [("read_committed", ["c1", "c2", "c4"]), ("read_uncommitted", ["c1", "c2", "a1", "a2", "c4"])] {
                let kcat = try Self.consume(agent.kafka, ["-t", "orders", "-o", "beginning", "-X", "isolation.level=\(isolation)"])
                #expect(kcat.compactMap { $0.headerPairs.first { $0.0 == "ce_id" }?.1 } == expected, "kcat \(isolation): \(kcat.map(\.offset))")
                let python = try runProcess("/usr/bin/env", ["python3", Self.clients + "/kafka_python_isolation.py", agent.kafka, "orders", isolation])
                #expect(python.status == 0, "kafka-python failed: \(python.stderr.suffix(2000))")
                let summary = try JSONSerialization.jsonObject(with: Data(python.stdout.utf8)) as? [String: Any] ?? [:]
                #expect(summary["ids"] as? [String] == expected, "kafka-python \(isolation): \(python.stdout)")
                // Four events and a marker per transaction: the consumer's position is past the last COMMIT.
                #expect((summary["positions"] as? [String: Int])?["0"] == 8, "\(python.stdout)")
            }
        }
    }

    /// Exactly-once consume-transform-produce with confluent-kafka (librdkafka): init_transactions, begin,
    /// send_offsets_to_transaction, commit and abort, and a zombie fenced by a newer producer of the same id.
    @Test func confluentTransactionalProducerIsExactlyOnce() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            let result = try runProcess("/usr/bin/env", ["python3", Self.clients + "/confluent_transactions.py", agent.kafka])
            #expect(result.status == 0, "confluent-kafka failed: \(result.stderr.suffix(3000))")
            let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            let committed = (0..<10).map { "out-\($0)" } + (20..<30).map { "out-\($0)" }
            #expect(summary["read_committed"] as? [String] == committed, "\(result.stdout)")
            #expect(summary["read_uncommitted"] as? [String] == (0..<30).map { "out-\($0)" }, "the aborted ten are in the log")
            #expect(summary["group_committed"] as? Int == 30, "offsets of the aborted transaction are not committed, the last commit's are")
            #expect(summary["zombie"] as? String == "fenced", "\(result.stdout)")
            #expect(summary["after_fencing"] as? [String] == ["out-29", "successor"], "\(result.stdout)")
            let metrics = try await http("GET", "http://\(agent.metrics)/metrics").text
            #expect(metrics.contains(#"sluice_kafka_requests_total{api="EndTxn""#))
            #expect(metrics.contains(#"sluice_kafka_requests_total{api="TxnOffsetCommit""#))
        }
    }

    @Test func kafkaPythonProducesWithEveryAcksAndConsumes() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "3"])
            defer { agent.stop() }
            let result = try runProcess("/usr/bin/env", ["python3", Self.clients + "/kafka_python_client.py", agent.kafka, "payments"])
            #expect(result.status == 0, "kafka-python client failed: \(result.stderr.suffix(3000))")
            let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            let produced = summary["produced"] as? [String: [String: Int]] ?? [:]
            #expect(produced["1"]?["count"] == 100 && produced["all"]?["count"] == 100 && produced["0"]?["count"] == 50)
            #expect(produced["1"]?["offsets_known"] == 100 && produced["all"]?["offsets_known"] == 100)
            #expect(summary["received"] as? Int == 250)
            #expect(summary["matches"] as? Bool == true, "records read back differ from those sent: \(result.stdout)")
            #expect(summary["unique_offsets"] as? Bool == true)
            #expect(summary["partitions"] as? [Int] == [0, 1, 2])
            #expect(summary["end_offsets_total"] as? Int == 250)
            #expect(summary["beginning_offsets_total"] as? Int == 0)
            #expect((summary["offsets_for_first_time"] as? [String: Int])?.values.allSatisfy { $0 == 0 } == true)
            #expect((summary["offsets_for_future"] as? [Any])?.allSatisfy { $0 is NSNull } == true, "\(summary)")

            // Produced records count as published events, and the listener's own series exist.
            let metrics = try await http("GET", "http://\(agent.metrics)/metrics").text
            let published = metrics.split(separator: "\n").filter { $0.hasPrefix("sluice_events_published_total{") }
            #expect(published == [#"sluice_events_published_total{topic="payments",event_type="sluice.record",status="written"} 250"#], "\(published)")
            #expect(metrics.contains("sluice_kafka_requests_total{api=\"Produce\""))
            #expect(metrics.contains("sluice_kafka_request_duration_seconds_bucket{api=\"Fetch\""))
            #expect(metrics.contains("sluice_kafka_connections "))
        }
    }

    /// The CloudEvents Kafka binding both ways: an event published over HTTP reaches a Kafka consumer in binary
    /// mode (`ce_*` headers, key = partitionkey, value = data); a record produced with `ce_*` headers is a
    /// CloudEvent to HTTP reads.
    @Test func cloudEventsCrossBetweenHTTPAndKafka() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            let event: [String: Any] = ["specversion": "1.0", "id": "o-1", "source": "/shop", "type": "order.created",
                                        "partitionkey": "customer-7", "correlationid": "c-42", "data": ["total": 12]]
            let published = try await http("POST", agent.base + "/v1/topics/orders/events", headers: ["Content-Type": "application/cloudevents+json"],
                                           body: json(event))
            #expect(published.status == 200 || published.status == 201, "\(published.text)")
            let consumed = try Self.consume(agent.kafka, ["-t", "orders"])
            #expect(consumed.count == 1)
            let headers = Dictionary(consumed.first?.headerPairs ?? [], uniquingKeysWith: { a, _ in a })
            #expect(headers["ce_id"] == "o-1" && headers["ce_source"] == "/shop" && headers["ce_type"] == "order.created")
            #expect(headers["ce_specversion"] == "1.0" && headers["ce_correlationid"] == "c-42")
            #expect(consumed.first?.key == "customer-7")
            #expect(consumed.first?.payload == #"{"total":12}"#)

            let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "orders", "-K:", "-H", "ce_specversion=1.0", "-H", "ce_id=k-1",
                                                     "-H", "ce_source=/kcat", "-H", "ce_type=order.paid", "-H", "content-type=application/json"],
                                         stdin: "customer-7:{\"paid\":true}\n")
            #expect(produce.status == 0, "\(produce.stderr)")
            let read = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=1&limit=1")
            let readEvent = ((read.json["events"] as? [[String: Any]])?.first?["event"]) as? [String: Any]
            #expect(readEvent?["id"] as? String == "k-1" && readEvent?["type"] as? String == "order.paid", "\(read.text)")
            #expect(readEvent?["partitionkey"] as? String == "customer-7")
            #expect((readEvent?["data"] as? [String: Any])?["paid"] as? Bool == true)

            // Structured mode: the whole event as the value, marked by its content type.
            let structured = #"{"specversion":"1.0","id":"k-2","source":"/kcat","type":"order.shipped","data":{"carrier":"dhl"}}"#
            let produceStructured = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "orders", "-K:",
                                                               "-H", "content-type=application/cloudevents+json; charset=UTF-8"],
                                                   stdin: "customer-7:" + structured + "\n")
            #expect(produceStructured.status == 0, "\(produceStructured.stderr)")
            let readStructured = try await http("GET", agent.base + "/v1/topics/orders/partitions/0/events?offset=2&limit=1")
            let structuredEvent = ((readStructured.json["events"] as? [[String: Any]])?.first?["event"]) as? [String: Any]
            #expect(structuredEvent?["id"] as? String == "k-2" && structuredEvent?["type"] as? String == "order.shipped", "\(readStructured.text)")
            #expect(structuredEvent?["partitionkey"] as? String == "customer-7")
            #expect((structuredEvent?["data"] as? [String: Any])?["carrier"] as? String == "dhl")
        }
    }

    /// A topic with schema.validation=enforce refuses a Kafka batch whose CloudEvent fails its schema with INVALID_RECORD
    /// and the reason, and stores none of it; valid events and records that are not CloudEvents go in.
    @Test func schemaEnforcementRefusesKafkaBatchesWithInvalidRecord() async throws {
        try await withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/schemas/order.paid", withIntermediateDirectories: true)
            try #"{"type": "object", "required": ["paid"], "properties": {"paid": {"type": "boolean"}}}"#
                .write(toFile: dir + "/schemas/order.paid/1.json", atomically: true, encoding: .utf8)
            let agent = try await startServed(dir, ["--num-partitions", "1", "--schemas", dir + "/schemas", "--schema-validation", "enforce"])
            defer { agent.stop() }
            func produce(_ value: String, headers: Bool = true) throws -> ProcessResult {
                let ce = headers ? ["-H", "ce_specversion=1.0", "-H", "ce_id=p-\(value.count)", "-H", "ce_source=/kcat", "-H", "ce_type=order.paid",
                                    "-H", "content-type=application/json"] : []
                return try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "payments", "-X", "message.send.max.retries=0"] + ce, stdin: value + "\n")
            }
            #expect(try produce(#"{"paid":true}"#).status == 0)
            let refused = try produce(#"{"paid":"yes"}"#)
            #expect(refused.status != 0 && refused.stderr.contains("Broker failed to validate record"), "\(refused.status) \(refused.stderr)")
            #expect(try produce("plain bytes, not a CloudEvent", headers: false).status == 0)
            let stored = try Self.consume(agent.kafka, ["-t", "payments"])
            #expect(stored.map(\.payload) == [#"{"paid":true}"#, "plain bytes, not a CloudEvent"], "\(stored.map(\.payload))")
            let log = agent.logText()
            #expect(log.contains("event refused: its data does not match its schema")
                && (log.contains(#""schema.pointer":"\/paid""#) || log.contains(#""schema.pointer":"/paid""#)), "\(log.suffix(2000))")
        }
    }

    /// KafkaAdminClient (kafka-python): CreateTopics with configs and each kind of refusal, DescribeConfigs with
    /// sources and read-only settings, CreatePartitions, DeleteTopics; what it made survives a restart and is
    /// the same topic over HTTP.
    @Test func kafkaPythonAdminClientManagesTopics() async throws {
        try await withTemporaryDirectory { dir in
            var agent = try await startServed(dir, ["--num-partitions", "3"])
            defer { agent.stop() }
            let result = try runProcess("/usr/bin/env", ["python3", Self.clients + "/kafka_python_admin.py", agent.kafka])
            #expect(result.status == 0, "kafka-python admin failed: \(result.stderr.suffix(3000))")
            let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] ?? [:]
            #expect(summary["create_again"] as? String == "TopicAlreadyExistsError")
            #expect(summary["create_compacted"] as? String == "InvalidConfigurationError")
            #expect(summary["create_unknown_config"] as? String == "InvalidConfigurationError")
            #expect(summary["create_replicated"] as? String == "InvalidReplicationFactorError")
            #expect(summary["create_bad_name"] as? String == "InvalidTopicError")
            #expect(summary["shrink"] as? String == "InvalidPartitionsError")
            #expect(summary["delete_missing"] as? String == "UnknownTopicOrPartitionError")
            #expect(summary["partitions_after"] as? [String: Int] == ["audit": 4])
            #expect(summary["topics"] as? [String] == ["audit"], "\(summary)")
            #expect(((summary["describe_missing"] as? [String: Any])?["topic"] as? [String: Any])?["nope"] as? [String: Any] != nil)
            let configs = ((summary["configs"] as? [String: Any])?["topic"] as? [String: Any])?["audit"] as? [String: [String: Any]] ?? [:]
            #expect(configs["retention.ms"]?["value"] as? String == "3600000" && configs["retention.ms"]?["config_source"] as? String == "DYNAMIC_TOPIC_CONFIG", "\(configs)")
            #expect(configs["segment.bytes"]?["config_source"] as? String == "DEFAULT_CONFIG")
            #expect(configs["cleanup.policy"]?["value"] as? String == "delete" && configs["cleanup.policy"]?["read_only"] as? Bool == true)
            for name in ["segment.bytes", "segment.ms", "retention.bytes", "max.message.bytes", "index.interval.bytes", "flush.policy"] {
                #expect(configs[name] != nil, "DescribeConfigs lacks \(name)")
            }

            #expect(agent.logText().contains("\"Kafka CreateTopics refused\""))

            // The grown topic and its setting outlive a restart, and the topic is the HTTP API's.
            agent.stop()
            agent = try await startServed(dir, [])
            let topic = try await http("GET", agent.base + "/v1/topics/audit")
            #expect((topic.json["partitions"] as? [Any])?.count == 4, "\(topic.text)")
            #expect((topic.json["config"] as? [String: String])?["retention.ms"] == "3600000")
            let produce = try runProcess(Self.kcat, ["-b", agent.kafka, "-P", "-t", "audit", "-p", "3"], stdin: "into the new partition\n")
            #expect(produce.status == 0, "\(produce.stderr)")
            #expect(try Self.consume(agent.kafka, ["-t", "audit", "-p", "3"]).map(\.payload) == ["into the new partition"])
        }
    }

    /// The README's Kafka examples, run as written against an agent (its address put in for 127.0.0.1:9092).
    @Test func readmeKafkaExamplesRun() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, [])
            defer { agent.stop() }
            let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
            let section = try #require(readme.components(separatedBy: "## Kafka protocol\n").dropFirst().first)
            let block = try #require(section.components(separatedBy: "```sh\n").dropFirst().first?.components(separatedBy: "```").first)
            let commands = block.split(separator: "\n").map { line in
                String(line.split(separator: "#", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces)
                    .replacingOccurrences(of: "127.0.0.1:9092", with: agent.kafka)
            }
            #expect(commands.count == 3)
            var outputs: [String] = []
            for command in commands {
                let result = try runProcess("/bin/bash", ["-c", "set -o pipefail; " + command])
                #expect(result.status == 0, "`\(command)` failed: \(result.stderr)")
                outputs.append(result.stdout)
            }
            #expect(outputs[0].contains("1 brokers:") && outputs[0].contains("broker 0 at \(agent.kafka)"), "\(outputs[0])")
            #expect(outputs[2] == "customer-7 {\"total\":12} ce_type=order.created\n", "\(outputs[2])")
        }
    }
}
