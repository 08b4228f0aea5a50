// swift-tools-version: 6.2
import PackageDescription

/// The same strict settings for every target.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceLog", targets: ["SluiceLog"]),
        .library(name: "SluiceBroker", targets: ["SluiceBroker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // OTLP over HTTP only: the gRPC exporter would add grpc-swift to every build.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // The system zlib (Debian: zlib1g-dev) for gzip record batches.
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        // Kafka's other codecs from the system libraries (Debian: libsnappy-dev, liblz4-dev, libzstd-dev; snappy
        // through CSnappyLoader below).
        .systemLibrary(name: "CLZ4", providers: [.apt(["liblz4-dev"]), .brew(["lz4"])]),
        .systemLibrary(name: "CZstd", providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),
        // librdkafka (Debian: librdkafka-dev), the Kafka client of the cluster backend (log.backend=kafka).
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"]), .brew(["librdkafka"])]),
        // Libraries opened at run time (dlopen) rather than linked, through trampolines: librdkafka for the cluster
        // backend only, so the embedded log never maps it; snappy for snappy batches only, so an agent without them
        // never maps the C++ runtime snappy brings.
        .target(name: "CLibraryLoader", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "CRdKafkaLoader", dependencies: ["CLibraryLoader"]),  // librdkafka's header, not its link (CRdKafka)
        .target(name: "CSnappyLoader", dependencies: ["CLibraryLoader"]),  // snappy's header, not its link
        // glibc's <malloc.h> (mallopt), for the agent's allocator settings.
        .systemLibrary(name: "CMalloc"),
        // CRC-32C with the CPU's instruction (SSE 4.2 / ARMv8 CRC), for SluiceLog's checksum.
        .target(name: "CCRC32C"),
        // The storage engine: record-batch codec, segments, indexes, recovery, retention. No HTTP.
        .target(
            name: "SluiceLog",
            dependencies: ["CZlib", "CSnappyLoader", "CLZ4", "CZstd", "CCRC32C"]
        ),
        // Metric and log-field names in one place, the JSON LogHandler, correlation context.
        .target(
            name: "SluiceTelemetry",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // JSON values and JSON Schema (draft-07): our own validator, checked against the official test suite.
        .target(name: "SluiceSchema"),
        // Topics, partitioner, CloudEvents, the batching producer path, fetches, configuration.
        .target(
            name: "SluiceBroker",
            dependencies: [
                "SluiceLog",
                "SluiceSchema",
                "SluiceTelemetry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // Correlation traces: every event, delivery, dead letter, replay and saga step of a correlation id, bounded and journalled.
        .target(
            name: "SluiceTrace",
            dependencies: [
                "SluiceBroker",
                "SluiceLog",
                "SluiceTelemetry",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Push delivery to the app: subscriptions, retries, circuit breaking, dead letters and replay.
        .target(
            name: "SluiceDelivery",
            dependencies: [
                "SluiceBroker",
                "SluiceLog",
                "SluiceTelemetry",
                "SluiceTrace",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // Sagas: definitions, the orchestrating engine, observed sagas and their durable state.
        .target(
            name: "SluiceSaga",
            dependencies: [
                "SluiceBroker",
                "SluiceSchema",
                "SluiceDelivery",
                "SluiceLog",
                "SluiceTelemetry",
                "SluiceTrace",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        // The Kafka wire protocol: a versioned request/response codec and a SwiftNIO listener over the broker. No HTTP.
        .target(
            name: "SluiceKafka",
            dependencies: [
                "SluiceBroker",
                "SluiceLog",
                "SluiceTelemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The log seam's cluster backend: events in a Kafka cluster through librdkafka. No HTTP.
        .target(
            name: "SluiceCluster",
            dependencies: [
                "CRdKafkaLoader",
                "SluiceBroker",
                "SluiceLog",
                "SluiceTelemetry",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // librdkafka's mock cluster in a process of its own (C), for the cluster tests and for trying log.backend=kafka.
        .executableTarget(name: "sluice-mock-cluster", dependencies: ["CRdKafka"]),
        // The HTTP API, /metrics and health, wired into one ServiceGroup.
        .target(
            name: "SluiceServer",
            dependencies: [
                "SluiceLog",  // imported directly: without the arrow, incremental builds miss its layout changes
                "SluiceBroker",
                "SluiceDelivery",
                "SluiceSaga",
                "SluiceSchema",
                "SluiceKafka",
                "SluiceTelemetry",
                "SluiceTrace",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),  // HTTPParserError, as Hummingbird's responder closure
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The `sluice` executable: thin commands over the modules above.
        .executableTarget(
            name: "sluice",
            dependencies: [
                "CMalloc",
                "SluiceCluster",
                "SluiceLog",
                "SluiceBroker",
                "SluiceServer",
                "SluiceDelivery",
                "SluiceSaga",
                "SluiceSchema",
                "SluiceTelemetry",
                "SluiceTrace",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Helpers every test target shares (temporary directories, the package root, the built binary).
        .target(
            name: "SluiceTestSupport",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird")],
            path: "Tests/SluiceTestSupport"
        ),
        .testTarget(
            name: "SluiceLogTests",
            dependencies: [
                "SluiceLog",
                "SluiceTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["Oracle"]  // kafka_oracle.py, run by the tests with python3
        ),
        .testTarget(
            name: "SluiceSchemaTests",
            dependencies: ["SluiceSchema", "SluiceTestSupport"],
            exclude: ["JSONSchemaTestSuite"]  // the official draft-07 suite, read by the tests
        ),
        .testTarget(
            name: "SluiceTelemetryTests",
            dependencies: ["SluiceTelemetry"]
        ),
        .testTarget(
            name: "SluiceTraceTests",
            dependencies: ["SluiceTrace", "SluiceBroker", "SluiceTelemetry", "SluiceLog", "SluiceTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "SluiceDeliveryTests",
            dependencies: ["SluiceDelivery", "SluiceBroker", "SluiceLog", "SluiceTestSupport"]
        ),
        .testTarget(
            name: "SluiceSagaTests",
            dependencies: ["SluiceSaga", "SluiceSchema", "SluiceTestSupport"]
        ),
        .testTarget(
            name: "SluiceBrokerTests",
            dependencies: ["SluiceBroker", "SluiceTelemetry", "SluiceLog", "SluiceTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "SluiceKafkaTests",
            dependencies: ["SluiceKafka", "SluiceServer", "SluiceBroker", "SluiceLog", "SluiceTelemetry", "SluiceTestSupport",
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
                           .product(name: "PropertyBased", package: "swift-property-based")],
            exclude: ["Clients"]  // Python and C clients, run by the tests
        ),
        .testTarget(
            name: "SluiceClusterTests",
            dependencies: ["SluiceCluster", "SluiceBroker", "SluiceTestSupport"]
        ),
        .testTarget(
            name: "SluiceServerTests",
            dependencies: ["SluiceServer", "SluiceDelivery", "SluiceSaga", "SluiceSchema", "SluiceBroker", "SluiceTelemetry", "SluiceTrace", "SluiceLog", "SluiceTestSupport",
                           .product(name: "Logging", package: "swift-log"), .product(name: "Hummingbird", package: "hummingbird")],
            exclude: ["OTLP", "Console"]  // the OTLP/HTTP receiver and the browser check, run by the tests with python3
        ),
    ]
)

for target in package.targets where target.type != .system && target.name != "sluice-mock-cluster" {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}
