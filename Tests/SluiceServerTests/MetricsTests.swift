import Foundation
import SluiceServer
import SluiceTelemetry
import Testing

@Suite("Metrics", .serialized)
struct MetricsTests {
    static func which(_ tool: String) -> String? {
        ["/usr/bin/\(tool)", "/usr/local/bin/\(tool)", "/bin/\(tool)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test("/metrics is Prometheus text 0.0.4 with the contract's families, and promtool finds no problem")
    func exposition() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startAgent(dir, ["--linger-ms", "0", "--num-partitions", "2", "--lag-interval-ms", "100"])
            defer { Task { await agent.stop() } }
            let member = try await GroupClient(base: agent.base).join("lint", client: "l", topics: ["orders"])["member_id"] as! String
            for i in 0..<5 {
                _ = try await http("POST", agent.base + "/v1/topics/orders/events", headers: structured, body: json(cloudEvent("m\(i)", key: "k\(i)")))
            }
            _ = try await http("POST", agent.base + "/v1/topics/orders/events", headers: structured, body: json(cloudEvent("m0", key: "k0")))
            _ = try await GroupClient(base: agent.base).poll("lint", member)
            _ = try await GroupClient(base: agent.base).poll("lint", member)  // auto-commits the first poll
            try await Task.sleep(for: .milliseconds(300))
            let r = try await http("GET", "http://\(agent.metricsAddress)/metrics")
            #expect(r.status == 200)
            #expect(r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            let text = r.text
            for family in [MetricName.eventsPublished, MetricName.publishDuration, MetricName.producerBatchBytes, MetricName.producerBatchRecords,
                           MetricName.producerCompressionRatio, MetricName.producerBufferBytes, MetricName.producerBufferFull,
                           MetricName.producerConfigInfo, MetricName.consumerConfigInfo, MetricName.partitionLogEndOffset,
                           MetricName.partitionLogStartOffset, MetricName.partitionSizeBytes, MetricName.partitionLastAppend, MetricName.topicPartitions,
                           MetricName.processResidentMemory, MetricName.processCPUSeconds, MetricName.processOpenFDs, MetricName.processStartTime,
                           MetricName.groupLag, MetricName.groupLagSeconds, MetricName.groupExpiredRecords, MetricName.groupCommittedOffset,
                           MetricName.groupCommitAge, MetricName.groupLagSum, MetricName.groupLagSecondsMax, MetricName.groupMembers,
                           MetricName.groupState, MetricName.groupStatus, MetricName.groupSeriesOmitted, MetricName.lagEvaluationDuration,
                           MetricName.topicPartitionsRecommended, MetricName.topicProduceRate, MetricName.idempotenceWindowEvents,
                           MetricName.idempotenceEvictions, MetricName.idempotenceWindowCovered] {
                #expect(text.contains("# TYPE \(family.name) "), "\(family.name) missing")
            }
            #expect(text.contains(#"sluice_events_published_total{topic="orders",event_type="order.created",status="written"} 5"#))
            #expect(text.contains(#"sluice_events_published_total{topic="orders",event_type="order.created",status="duplicate"} 1"#))
            #expect(text.contains(#"sluice_producer_config_info{acks="all",compression_type="gzip",enable_idempotence="true"} 1"#))
            #expect(text.contains("sluice_producer_linger_seconds 0.0"))
            // Five events remembered for deduplication (the re-send adds none), none forgotten early, the whole window.
            #expect(text.contains("sluice_producer_idempotence_window_events 5\n"))
            #expect(text.contains("sluice_producer_idempotence_evictions_total 0\n"))
            #expect(text.contains("sluice_producer_idempotence_window_covered_seconds 300"))
            #expect(text.contains(#"sluice_topic_partitions{topic="orders"} 2"#))
            let ends = text.split(separator: "\n").filter { $0.hasPrefix("sluice_partition_log_end_offset{topic=\"orders\"") }
            #expect(ends.compactMap { Double($0.split(separator: " ").last!) }.reduce(0, +) == 5)

            let promtool = try #require(Self.which("promtool"), "promtool is installed by ./scripts/test (Debian package prometheus)")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: promtool)
            process.arguments = ["check", "metrics"]
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = output
            try process.run()
            input.fileHandleForWriting.write(r.body)
            try input.fileHandleForWriting.close()
            let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            // One finding is by design: the contract name sluice_consumer_group_lag_sum (as in the issue and kafka
            // exporters) ends in _sum, which promtool reserves for histograms and summaries.
            let findings = report.split(separator: "\n").filter { !$0.hasPrefix("\(MetricName.groupLagSum.name) ") }
            #expect(findings.isEmpty, "promtool check metrics: \(report)")
            #expect(sample(text, MetricName.groupCommittedOffset.name, ["group": "lint", "topic": "orders", "partition": "0"]) != nil)
            await agent.stop()
        }
    }

    @Test("a real Prometheus scrapes the agent and PromQL returns the number of events published")
    func prometheusScrape() async throws {
        try await withTemporaryDirectory { dir in
            let prometheus = try #require(Self.which("prometheus"), "prometheus is installed by ./scripts/test (Debian package prometheus)")
            let agent = try await startAgent(dir, ["--linger-ms", "0"])
            defer { Task { await agent.stop() } }
            var published = 0
            for round in 0..<4 {
                let events = (0..<(round + 3)).map { cloudEvent("p\(round)-\($0)", type: round % 2 == 0 ? "order.created" : "order.paid") }
                let r = try await http("POST", agent.base + "/v1/topics/shop/events", headers: batch, body: json(events))
                #expect(r.status == 200)
                published += events.count
            }
            let port = freePort()
            try """
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: sluice
                    static_configs:
                      - targets: ["\(agent.metricsAddress)"]
                """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
            let server = Process()
            server.executableURL = URL(fileURLWithPath: prometheus)
            server.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/tsdb", "--web.listen-address=127.0.0.1:\(port)"]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: {
                _ = FileManager.default.createFile(atPath: dir + "/prometheus.log", contents: nil)
                return dir + "/prometheus.log"
            }()))
            try server.run()
            defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }

            let query = "sum(sluice_events_published_total{status=\"written\"})"
            let url = "http://127.0.0.1:\(port)/api/v1/query?query=" + query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            var value: Double?
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let r = try? await http("GET", url), r.status == 200,
                   let result = (r.json["data"] as? [String: Any])?["result"] as? [[String: Any]],
                   let sample = result.first?["value"] as? [Any], let text = sample.last as? String {
                    value = Double(text)
                    if value == Double(published) { break }
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(value == Double(published), "PromQL \(query) returned \(value.map { "\($0)" } ?? "nothing"); prometheus log: \((try? String(contentsOfFile: dir + "/prometheus.log", encoding: .utf8))?.suffix(800) ?? "")")
            // The per-type split is there too.
            let byType = "http://127.0.0.1:\(port)/api/v1/query?query=" + "sum by (event_type) (sluice_events_published_total)".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let r = try await http("GET", byType)
            let types = ((r.json["data"] as? [String: Any])?["result"] as? [[String: Any]])?.compactMap { ($0["metric"] as? [String: String])?["event_type"] }
            #expect(Set(types ?? []) == ["order.created", "order.paid"])
            server.terminate()
            server.waitUntilExit()
            await agent.stop()
        }
    }
}
