import Foundation
import Testing

/// Runs a command to completion (at most `timeout` seconds), returning its exit status and output.
func runTool(_ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String] = [:],
             timeout: Double = 120) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("tool-\(UUID().uuidString)").path
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out) }
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = process.standardOutput
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return (process.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
}

/// The dashboard's panel queries and the alert rules' expressions.
struct DashboardFiles {
    var dashboard: [String: Any]
    var panels: [[String: Any]]
    var expressions: [(panel: String, expr: String)]
    var alerts: [(name: String, expr: String)]

    init() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/dashboards/sluice.json"))
        dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        panels = dashboard["panels"] as? [[String: Any]] ?? []
        expressions = panels.flatMap { panel in
            (panel["targets"] as? [[String: Any]] ?? []).compactMap { target in
                (target["expr"] as? String).map { (panel["title"] as? String ?? "?", $0) }
            }
        }
        // The rules file is simple YAML: read each alert's name and expression line.
        let rules = try String(contentsOfFile: packageRoot + "/dashboards/alerts.yml", encoding: .utf8)
        var alerts: [(String, String)] = []
        var name: String?
        for line in rules.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            if line.hasPrefix("- alert: ") { name = String(line.dropFirst("- alert: ".count)) }
            if line.hasPrefix("expr: "), let current = name { alerts.append((current, String(line.dropFirst("expr: ".count)))); name = nil }
        }
        self.alerts = alerts
    }

    /// The expression as Grafana would send it with every variable on "All".
    static func resolved(_ expr: String) -> String {
        var text = expr.replacingOccurrences(of: "$__rate_interval", with: "1m")
        for variable in ["job", "topic", "group", "subscription", "saga_type"] { text = text.replacingOccurrences(of: "\"$\(variable)\"", with: "\".*\"") }
        return text
    }
}

@Suite("Dashboards and alerts", .serialized)
struct DashboardTests {
    @Test("the dashboard JSON is what its generator writes, with unique panel ids, a datasource variable and a row per area")
    func dashboardShape() async throws {
        let check = try await runTool("/usr/bin/env", ["python3", packageRoot + "/dashboards/generate.py", "--check"])
        #expect(check.status == 0, "\(check.output)")
        let files = try DashboardFiles()
        let ids = files.panels.compactMap { $0["id"] as? Int }
        #expect(ids.count == files.panels.count && Set(ids).count == ids.count, "panel ids are unique")
        let variables = ((files.dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(variables == ["datasource", "job", "topic", "group", "subscription", "saga_type"])
        let rows = files.panels.filter { $0["type"] as? String == "row" }.compactMap { $0["title"] as? String }
        #expect(rows == ["Publishing", "Schemas and versions", "Partitions", "Consumer lag", "Dead letters", "Push delivery", "Sagas", "Traces", "Agent"])
        for panel in files.panels where panel["type"] as? String != "row" {
            #expect((panel["datasource"] as? [String: Any])?["uid"] as? String == "${datasource}", "\(panel["title"] ?? "")")
        }
        #expect(files.expressions.count > 40)
        // Every rule has a promtool unit test and a line in the README's alert table.
        let ruleTests = try String(contentsOfFile: packageRoot + "/dashboards/alerts.test.yml", encoding: .utf8)
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        #expect(files.alerts.count == 13)
        for (name, _) in files.alerts {
            #expect(ruleTests.contains("alertname: \(name)\n"), "alert \(name) has no unit test in alerts.test.yml")
            #expect(readme.contains("| `\(name)` |"), "alert \(name) is missing from the README's alert table")
        }
    }

    @Test("promtool checks the alert rules and their unit tests pass")
    func alertRules() async throws {
        let promtool = try #require(MetricsTests.which("promtool"), "promtool is installed by ./scripts/test (Debian package prometheus)")
        let check = try await runTool(promtool, ["check", "rules", "alerts.yml"], in: packageRoot + "/dashboards")
        #expect(check.status == 0 && check.output.contains("SUCCESS: 13 rules found"), "\(check.output)")
        let tests = try await runTool(promtool, ["test", "rules", "alerts.test.yml"], in: packageRoot + "/dashboards")
        #expect(tests.status == 0 && tests.output.contains("SUCCESS"), "\(tests.output)")
        let config = try await runTool(promtool, ["check", "config", "prometheus.yml"], in: packageRoot + "/examples")
        #expect(config.status == 0, "\(config.output)")
    }

    @Test("with the example workload running, a real Prometheus returns data for every panel and evaluates every alert rule")
    func panelsReturnData() async throws {
        try await withTemporaryDirectory { dir in
            let prometheus = try #require(MetricsTests.which("prometheus"), "prometheus is installed by ./scripts/test (Debian package prometheus)")
            let files = try DashboardFiles()
            let metricsPort = freePort(), prometheusPort = freePort()
            // examples/prometheus.yml, pointed at this agent, scraping every second.
            var config = try String(contentsOfFile: packageRoot + "/examples/prometheus.yml", encoding: .utf8)
            config = config.replacingOccurrences(of: "scrape_interval: 15s", with: "scrape_interval: 1s")
                .replacingOccurrences(of: "evaluation_interval: 15s", with: "evaluation_interval: 1s")
                .replacingOccurrences(of: "127.0.0.1:9470", with: "127.0.0.1:\(metricsPort)")
                .replacingOccurrences(of: "../dashboards/alerts.yml", with: packageRoot + "/dashboards/alerts.yml")
            try config.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
            let server = Process()
            server.executableURL = URL(fileURLWithPath: prometheus)
            server.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/tsdb", "--web.listen-address=127.0.0.1:\(prometheusPort)"]
            _ = FileManager.default.createFile(atPath: dir + "/prometheus.log", contents: nil)
            server.standardOutput = FileHandle.nullDevice
            server.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/prometheus.log"))
            try server.run()
            defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
            // Prometheus scrapes the target (up == 0) before the agent starts, so counters are seen from 0 (as
            // increase() needs; its discovery takes a few seconds to hand over the target).
            let up = "http://127.0.0.1:\(prometheusPort)/api/v1/query?query=up"
            var scraping = false
            for _ in 0..<240 where !scraping {
                let r = try? await http("GET", up)
                scraping = !(((r?.json["data"] as? [String: Any])?["result"] as? [Any]) ?? []).isEmpty
                if !scraping { try await Task.sleep(for: .milliseconds(250)) }
            }
            #expect(scraping, "prometheus did not start scraping")

            // The example workload, held up afterwards so that Prometheus keeps scraping.
            let workload = Process()
            workload.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            workload.arguments = ["python3", packageRoot + "/examples/run.py", "all", "--metrics-port", "\(metricsPort)", "--hold", "60"]
            workload.environment = ProcessInfo.processInfo.environment.merging(["SLUICE": sluiceBinary]) { $1 }
            _ = FileManager.default.createFile(atPath: dir + "/workload.log", contents: nil)
            workload.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/workload.log"))
            workload.standardError = workload.standardOutput
            try workload.run()
            defer { if workload.isRunning { workload.interrupt(); workload.waitUntilExit() } }
            func workloadLog() -> String { (try? String(contentsOfFile: dir + "/workload.log", encoding: .utf8)) ?? "" }
            let deadline = Date().addingTimeInterval(180)
            while !workloadLog().contains("workload done") && workload.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(200)) }
            #expect(workloadLog().contains("workload done: OK"), "\(workloadLog())")

            let api = "http://127.0.0.1:\(prometheusPort)/api/v1"
            func query(_ expr: String) async throws -> (status: String, results: Int, error: String) {
                let r = try await http("GET", api + "/query?query=" + expr.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
                let results = ((r.json["data"] as? [String: Any])?["result"] as? [Any])?.count ?? 0
                return (r.json["status"] as? String ?? "", results, r.json["error"] as? String ?? "")
            }
            // A few scrapes after the workload, so that rates have two samples of every series.
            var waited = 0
            while try await query("count(sluice_saga_completions_total) > 0").results == 0 && waited < 60 {
                try await Task.sleep(for: .seconds(1))
                waited += 1
            }
            try await Task.sleep(for: .seconds(4))

            var empty: [String] = []
            for (panel, expr) in files.expressions {
                let answer = try await query(DashboardFiles.resolved(expr))
                #expect(answer.status == "success", "panel \(panel): \(expr) does not parse: \(answer.error)")
                if answer.results == 0 { empty.append("\(panel): \(expr)") }
            }
            #expect(empty.isEmpty, "panels without data:\n\(empty.joined(separator: "\n"))")
            for (name, expr) in files.alerts {
                let answer = try await query(expr)
                #expect(answer.status == "success", "alert \(name): \(expr) does not parse: \(answer.error)")
            }
            // Prometheus loaded the rules file and evaluates every rule without error.
            let rules = try await http("GET", api + "/rules").json
            let loaded = ((rules["data"] as? [String: Any])?["groups"] as? [[String: Any]] ?? []).flatMap { $0["rules"] as? [[String: Any]] ?? [] }
            #expect(loaded.count == files.alerts.count)
            #expect(loaded.allSatisfy { $0["health"] as? String == "ok" }, "\(loaded.map { ($0["name"] ?? "", $0["health"] ?? "", $0["lastError"] ?? "") })")
            // The workload made a saga need intervention: that alert fires.
            var firing: Set<String> = []
            for _ in 0..<20 {
                let alerts = try await http("GET", api + "/alerts").json
                firing = Set(((alerts["data"] as? [String: Any])?["alerts"] as? [[String: Any]] ?? []).compactMap { ($0["labels"] as? [String: String])?["alertname"] })
                if firing.contains("SluiceSagaNeedsIntervention") && firing.contains("SluicePoisonEvents") { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(firing.isSuperset(of: ["SluiceSagaNeedsIntervention", "SluicePoisonEvents"]), "firing: \(firing)")
            workload.interrupt()
            workload.waitUntilExit()
            server.terminate()
            server.waitUntilExit()
        }
    }

    @Test("the Kubernetes example: its embedded config is valid, probes use /healthz and /readyz, Prometheus annotations name the metrics port")
    func kubernetesExample() async throws {
        try await withTemporaryDirectory { dir in
            let text = try String(contentsOfFile: packageRoot + "/examples/kubernetes/sluice-sidecar.yaml", encoding: .utf8)
            #expect(text.contains("path: /readyz") && text.contains("path: /healthz"))
            #expect(text.contains("prometheus.io/scrape: \"true\"") && text.contains("prometheus.io/port: \"9470\""))
            // The config map's sluice.yaml, as sluice sees it.
            guard let start = text.range(of: "  sluice.yaml: |\n"), let end = text.range(of: "\n---", range: start.upperBound..<text.endIndex) else {
                Issue.record("no sluice.yaml in the config map")
                return
            }
            let config = text[start.upperBound..<end.lowerBound].split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : String($0) }.joined(separator: "\n")
            try config.write(toFile: dir + "/sluice.yaml", atomically: true, encoding: .utf8)
            let shown = try await runSluice(["config", "show", "--config", dir + "/sluice.yaml"], in: dir)
            #expect(shown.status == 0 && shown.stdout.contains("linger.ms"), "\(shown.stderr)")
            let example = try await runSluice(["config", "show", "--config", packageRoot + "/examples/sluice.yaml"], in: dir)
            #expect(example.status == 0, "\(example.stderr)")
            let sagas = try await runSluice(["sagas", "check", packageRoot + "/examples/sluice.yaml"], in: dir)
            #expect(sagas.status == 0 && sagas.stdout.contains("saga order: 4 steps") && sagas.stdout.contains("saga payment: 5 steps"), "\(sagas.stdout)\(sagas.stderr)")
        }
    }
}
