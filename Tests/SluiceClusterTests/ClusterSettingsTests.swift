import Foundation
import SluiceBroker
@testable import SluiceCluster
import SluiceTestSupport
import Testing

/// `log.backend=kafka` settings: Sluice's knobs under librdkafka's names, `cluster.*` passed through and checked by
/// the real librdkafka, and the combinations that cannot work refused at load.
@Suite struct ClusterSettingsTests {
    static let base = ["--log-backend", "kafka", "--cluster-bootstrap-servers", "127.0.0.1:1,127.0.0.1:2"]

    func load(_ arguments: [String], environment: [String: String] = [:]) throws -> SluiceConfig {
        try SluiceConfig.load(arguments: Self.base + arguments, environment: environment)
    }

    @Test("Sluice's producer and consumer settings become the clients' properties, each with its origin; cluster.* wins and goes to the client that reads it")
    func mapping() throws {
        let config = try load(["--linger-ms", "20", "-X", "buffer.memory=65536000", "-X", "cluster.security.protocol=plaintext",
                               "-X", "cluster.fetch.wait.max.ms=50", "-X", "cluster.linger.ms=7", "--compression-type", "lz4", "--compression-level", "3"])
        let settings = ClusterSettings(config: config)
        func last(_ list: [ClusterSettings.Property], _ name: String) -> ClusterSettings.Property? { list.last { $0.name == name } }
        #expect(last(settings.producer, "bootstrap.servers")?.value == "127.0.0.1:1,127.0.0.1:2")
        #expect(last(settings.producer, "acks")?.value == "all")
        #expect(last(settings.producer, "enable.idempotence")?.value == "true")
        #expect(last(settings.producer, "compression.type")?.value == "lz4")
        #expect(last(settings.producer, "compression.level")?.value == "3")
        #expect(last(settings.producer, "queue.buffering.max.kbytes")?.value == "64000")
        #expect(last(settings.producer, "message.timeout.ms")?.value == String(ClusterSettings.defaultMessageTimeoutMs))
        // The flag set linger.ms=20, and -X cluster.linger.ms=7 is applied after it.
        #expect(settings.producer.filter { $0.name == "linger.ms" }.map(\.value) == ["20", "7"])
        #expect(settings.producer.first { $0.name == "linger.ms" }?.origin == "linger.ms (from flag --linger-ms)")
        #expect(last(settings.producer, "linger.ms")?.origin == "cluster.linger.ms (from flag -X cluster.linger.ms)")
        #expect(last(settings.reader, "fetch.wait.max.ms")?.value == "50")
        #expect(last(settings.producer, "fetch.wait.max.ms") == nil)
        #expect(last(settings.reader, "security.protocol")?.value == "plaintext")
        #expect(last(settings.producer, "security.protocol")?.value == "plaintext")
        #expect(last(settings.reader, "isolation.level")?.value == "read_committed")
        try settings.check()
    }

    @Test("a property librdkafka does not know, or a value it refuses, stops startup naming the property, where it came from and why")
    func librdkafkaRefuses() throws {
        let unknown = ClusterSettings(config: try load(["-X", "cluster.no.such.property=1"]))
        let error = #expect(throws: ConfigError.self) { try unknown.check() }
        #expect(error?.message.contains("no.such.property=1 from cluster.no.such.property (from flag -X cluster.no.such.property)") == true)
        #expect(error?.message.contains("is not a property of librdkafka 2.") == true)

        let invalid = ClusterSettings(config: try load([], environment: ["SLUICE_CLUSTER_SECURITY_PROTOCOL": "carrier-pigeon"]))
        let refused = #expect(throws: ConfigError.self) { try invalid.check() }
        #expect(refused?.message.contains("security.protocol=carrier-pigeon from cluster.security.protocol (from env SLUICE_CLUSTER_SECURITY_PROTOCOL) is invalid") == true)

        let level = ClusterSettings(config: try load(["--compression-type", "zstd", "--compression-level", "19"]))
        #expect(throws: ConfigError.self) { try level.check() }
    }

    @Test("combinations that cannot work are refused when the configuration loads")
    func refusedCombinations() throws {
        func message(_ arguments: [String], environment: [String: String] = [:]) -> String {
            do {
                _ = try SluiceConfig.load(arguments: arguments, environment: environment)
                return "accepted"
            } catch {
                return error.message
            }
        }
        #expect(message(["-X", "cluster.sasl.username=app"]).contains("cluster.sasl.username (from flag -X cluster.sasl.username) is a cluster client property, but log.backend=embedded"))
        #expect(message(["--cluster-bootstrap-servers", "b1:9092"]).contains("set log.backend=kafka"))
        #expect(message(["--log-backend", "kafka"]).contains("needs the cluster's brokers: set cluster.bootstrap.servers"))
        #expect(message(Self.base + ["--kafka-address", "127.0.0.1:9092"]).contains("cannot be served with log.backend=kafka"))
        #expect(message(Self.base + ["-X", "cluster.metadata.broker.list=x:1"]).contains("set by cluster.bootstrap.servers (--cluster-bootstrap-servers) alone"))
        #expect(message(["--log-backend", "kafka", "--cluster-bootstrap-servers", "b1:9092,nonsense"]).contains("'nonsense' is not host:port"))
        let config = try load([], environment: ["SLUICE_CLUSTER_SASL_USERNAME": "app"])
        #expect(config.clusterProperties["sasl.username"]?.value == "app")
        // The default Kafka listener address is simply not served beside a cluster.
        #expect(config.kafkaBindAddress == nil)
    }

    @Test("librdkafka is opened at run time: a missing library or one without librdkafka's functions is a clear reason, and the real one loads")
    func libraryLoading() throws {
        let missing = try #require(RdKafkaLibrary.open(path: "/nonexistent/librdkafka.so.1"))
        #expect(missing.contains("/nonexistent/librdkafka.so.1"), "\(missing)")
        // zlib opens but is not librdkafka: the first function it lacks is named.
        let wrong = try #require(RdKafkaLibrary.open(path: "libz.so.1"))
        #expect(wrong.contains("libz.so.1 has no function rd_kafka_"), "\(wrong)")
        #expect(RdKafkaLibrary.message(missing).contains("log.backend=kafka needs librdkafka"))
        #expect(RdKafkaLibrary.message(missing).contains("apt-get install librdkafka1"))
        #expect(RdKafkaLibrary.open(path: nil) == nil)
        #expect(ClusterSettings.librdkafkaVersion.hasPrefix("2."))
    }

    @Test("an agent on the embedded log does not map librdkafka or the TLS libraries it brings")
    func embeddedAgentDoesNotMapLibrdkafka() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, [])
            defer { agent.stop() }
            let maps = try agent.memoryMap()
            #expect(maps.contains("/sluice"), "the maps of the agent process")
            for library in ["librdkafka", "libssl", "libcrypto", "libsasl2"] {
                #expect(!maps.contains(library), "\(library) is mapped by an agent on the embedded log")
            }
        }
    }
}
