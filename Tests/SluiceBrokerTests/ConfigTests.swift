import Foundation
@testable import SluiceBroker
import SluiceLog
import Testing

@Suite("Configuration")
struct ConfigTests {
    @Test("precedence is flag > env > file > default, and every value knows its source")
    func precedence() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/sluice.yaml"
            try """
                # tuning
                linger.ms: 30
                batch.size: 65536
                compression.type: none
                routes:
                  - match: "user.*"
                    topic: user-events
                """.write(toFile: file, atomically: true, encoding: .utf8)
            let config = try SluiceConfig.load(
                arguments: ["--linger-ms", "20", "-X", "max.poll.records=7", "-Xfetch.min.bytes=99"],
                environment: ["SLUICE_LINGER_MS": "25", "SLUICE_BATCH_SIZE": "32768", "PATH": "/bin"],
                file: file)
            #expect(config.integer("linger.ms") == 20)
            #expect(config.source("linger.ms") == .flag("--linger-ms"))
            #expect(config.integer("batch.size") == 32768)
            #expect(config.source("batch.size") == .environment("SLUICE_BATCH_SIZE"))
            #expect(config.string("compression.type") == "none")
            #expect(config.source("compression.type") == .file(path: file, line: 4))
            #expect(config.integer("max.poll.records") == 7)
            #expect(config.source("max.poll.records") == .flag("-X max.poll.records"))
            #expect(config.integer("fetch.min.bytes") == 99)
            #expect(config.string("acks") == "all")
            #expect(config.source("acks") == .defaultValue)
            #expect(config.routes == [RouteRule(pattern: "user.*", topic: "user-events")])
            #expect(config.routesSource == .file(path: file, line: 5))
            let flagRoutes = try SluiceConfig.load(arguments: ["--route", "a.*=t-a", "--route=b.*=t-b"], environment: ["SLUICE_ROUTES": "c.*=t-c"], file: file)
            #expect(flagRoutes.routes.map(\.topic) == ["t-a", "t-b"])
            let envRoutes = try SluiceConfig.load(environment: ["SLUICE_ROUTES": "c.*=t-c,d=t-d"], file: file)
            #expect(envRoutes.routes.map(\.topic) == ["t-c", "t-d"])
        }
    }

    @Test("each invalid setting is named with its value, its source and what is allowed", arguments: [
        (["--linger-ms", "soon"], [:], "linger.ms=soon (from flag --linger-ms) is invalid: expected an integer from 0 to 60000"),
        (["--linger-ms", "-1"], [:], "linger.ms=-1 (from flag --linger-ms) is invalid"),
        (["-X", "linger.ms"], [:], "-X linger.ms must be name=value"),
        (["-X", "lingerms=5"], [:], "unknown property 'lingerms' (from flag -X lingerms); did you mean linger.ms?"),
        (["--compression-type", "brotli"], [:], "compression.type=brotli (from flag --compression-type) is invalid: expected one of none, gzip, snappy, lz4, zstd"),
        (["--compression-level", "10"], [:], "compression.level=10 (from flag --compression-level) is not a level of compression.type=gzip (from default): use 1–9"),
        (["--compression-type", "lz4", "--compression-level", "13"], [:], "is not a level of compression.type=lz4 (from flag --compression-type): use 1–12"),
        (["--compression-type", "zstd", "--compression-level", "23"], [:], "compression.level=23 (from flag --compression-level) is invalid: expected an integer from 1 to 22"),
        (["--compression-type", "snappy", "--compression-level", "3"], [:], "compression.type=snappy (from flag --compression-type) has no levels, but compression.level=3 (from flag --compression-level) is set"),
        (["--acks", "2"], [:], "acks=2 (from flag --acks) is invalid: expected one of 0, 1, all"),
        (["--enable-idempotence", "maybe"], [:], "expected true or false"),
        (["--acks", "1"], [:], "enable.idempotence=true (from default) needs acks=all, but acks=1 (from flag --acks)"),
        (["--heartbeat-interval-ms", "50000"], [:], "heartbeat.interval.ms=50000 (from flag --heartbeat-interval-ms) must be below session.timeout.ms=45000 (from default)"),
        (["--buffer-memory", "2048", "--max-request-size", "4096"], [:], "buffer.memory=2048 (from flag --buffer-memory) must be at least max.request.size=4096"),
        (["--max-in-flight-requests-per-connection", "6"], [:], "allows at most 5 in flight"),
        (["--api-address", "0.0.0.0:7470"], [:], "is not a loopback address, so api.token must be set"),
        (["--api-address", "localhost"], [:], "api.address=localhost (from flag --api-address) is invalid: expected host:port"),
        // The loopback rule decides on the resolved address, and a host that does not resolve is bad input.
        (["--api-address", "127.0.0.1.:7470"], [:], "the host '127.0.0.1.' does not resolve"),
        (["--api-address", "127.evil.invalid:7470"], [:], "the host '127.evil.invalid' does not resolve"),
        (["--metrics-address", "nowhere.invalid:9470"], [:], "metrics.address=nowhere.invalid:9470 (from flag --metrics-address): the host 'nowhere.invalid' does not resolve"),
        (["--api-token", "x"], [:], "api.token (from flag --api-token) must be at least 16 characters"),
        (["--api-token", "                    "], [:], "must be at least 16 characters without spaces"),
        (["--http-max-connections", "0"], [:], "http.max.connections=0 (from flag --http-max-connections) is invalid"),
        (["--default-topic", "a/b"], [:], "default.topic=a/b (from flag --default-topic) is not a valid topic name"),
        (["--route", "user.*"], [:], "route 'user.*' (from flag --route) must be PATTERN=TOPIC"),
        (["--linger-ms"], [:], "--linger-ms needs a value"),
        (["stray"], [:], "unexpected argument 'stray'"),
        ([], ["SLUICE_LINGER_MS": "x"], "linger.ms=x (from env SLUICE_LINGER_MS) is invalid"),
        ([], ["SLUICE_LINGR_MS": "5"], "unknown environment variable SLUICE_LINGR_MS; did you mean SLUICE_LINGER_MS?"),
        ([], ["SLUICE_ACKS": "0"], "needs acks=all, but acks=0 (from env SLUICE_ACKS)"),
    ])
    func invalid(arguments: [String], environment: [String: String], message: String) {
        let error = #expect(throws: ConfigError.self) { try SluiceConfig.load(arguments: arguments, environment: environment) }
        #expect(error?.message.contains(message) == true, "got: \(error?.message ?? "no error")")
    }

    @Test("a numeric bind address is kept as given; a name is looked up to the address the listener binds")
    func bindAddresses() throws {
        for text in ["127.0.0.1:7470", "[::1]:7470", "0.0.0.0:0"] {
            let address = try #require(HostPort(text))
            #expect(try address.resolved() == address, "\(text)")
        }
        let named = try HostPort("localhost:7470")!.resolved()
        #expect(["127.0.0.1", "::1"].contains(named.host) && named.port == 7470, "localhost resolved to \(named)")
    }

    @Test("every codec and the ends of its levels are accepted, and snappy and none without a level")
    func codecs() throws {
        let cases: [([String], Compression)] = [
            ([], .gzip(level: 1)), (["--compression-level", "9"], .gzip(level: 9)),
            (["--compression-type", "snappy"], Compression(codec: .snappy, level: 1)),
            (["--compression-type", "lz4", "--compression-level", "12"], .lz4(level: 12)),
            (["--compression-type", "zstd", "--compression-level", "22"], .zstd(level: 22)),
            (["--compression-type", "zstd"], .zstd(level: 1)), (["--compression-type", "none"], Compression(codec: .none, level: 1)),
        ]
        for (arguments, expected) in cases {
            #expect(try SluiceConfig.load(arguments: arguments, environment: [:]).compression == expected, "\(arguments)")
        }
    }

    @Test("file errors name the file and line")
    func fileErrors() async throws {
        try await withTemporaryDirectory { dir in
            let cases: [(String, String)] = [
                ("linger.ms: 5\nbatch.sise: 10\n", "unknown property 'batch.sise' (from file \(dir)/c.yaml:2); did you mean batch.size?"),
                ("acks: 1\n", "needs acks=all, but acks=1 (from file \(dir)/c.yaml:1)"),
                ("linger.ms: [1, 2]\n", "\(dir)/c.yaml:1: linger.ms must be a single value"),
                ("routes:\n  - match: x\n", "\(dir)/c.yaml:2: each route needs match and topic"),
                ("linger.ms: 5\n  bad: [\n", "is not valid YAML"),
                ("- a\n- b\n", "must be a mapping of settings"),
            ]
            for (text, message) in cases {
                try text.write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
                let error = #expect(throws: ConfigError.self) { try SluiceConfig.load(file: dir + "/c.yaml") }
                #expect(error?.message.contains(message) == true, "got: \(error?.message ?? "no error")")
            }
            let missing = #expect(throws: ConfigError.self) { try SluiceConfig.load(file: dir + "/none.yaml") }
            #expect(missing?.message.contains("cannot read config file") == true)
        }
    }

    @Test("every property has a flag, an env variable and a default that validates")
    func propertyTable() throws {
        let defaults = try SluiceConfig.load()
        for property in ConfigProperty.all {
            #expect(property.flag.hasPrefix("--"))
            #expect(property.environmentVariable.hasPrefix("SLUICE_"))
            #expect(property.normalize(property.defaultValue) != nil, "\(property.name)")
            #expect(defaults.values[property.name] != nil)
        }
        #expect(ConfigProperty.byName["linger.ms"]?.flag == "--linger-ms")
        #expect(ConfigProperty.byName["max.in.flight.requests.per.connection"]?.environmentVariable == "SLUICE_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION")
    }

    @Test("routes match glob patterns in order, else the default topic")
    func routes() throws {
        let rule = RouteRule(pattern: "user.*", topic: "u")
        #expect(rule.matches("user.created"))
        #expect(!rule.matches("users.created"))
        #expect(RouteRule(pattern: "*.failed", topic: "f").matches("payment.failed"))
        #expect(RouteRule(pattern: "a*b*c", topic: "x").matches("aXbYc"))
        #expect(!RouteRule(pattern: "a*b*c", topic: "x").matches("aXbY"))
    }
}
