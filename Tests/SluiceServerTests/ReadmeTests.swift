import Foundation
import Testing

/// The README's first two commands, as a new user runs them on a fresh clone.
@Suite("README commands", .serialized)
struct ReadmeTests {
    /// The two commands of the README's first code block, without their comments.
    static func firstCommands() throws -> [String] {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        let block = try #require(readme.components(separatedBy: "```sh\n").dropFirst().first?.components(separatedBy: "```").first)
        return block.split(separator: "\n").map { line in
            String(line.split(separator: "#", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces)
        }
    }

    @Test("the second command is what .ci/run runs")
    func testCommandIsCI() throws {
        let commands = try Self.firstCommands()
        #expect(commands.count == 2)
        let ci = try String(contentsOfFile: packageRoot + "/.ci/run", encoding: .utf8)
        #expect(ci.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "exec " + commands[1] }, "\(ci)")
    }

    @Test("the first command builds and runs the agent until /readyz answers, and the first session works as written")
    func runCommandWorks() async throws {
        let commands = try Self.firstCommands()
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        try await withTemporaryDirectory { dir in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            // As written, plus ephemeral loopback ports and a data directory of the test's own (the last flag wins).
            process.arguments = ["-c", "exec \(commands[0]) --api-address 127.0.0.1:0 --metrics-address 127.0.0.1:0 --data-dir \(dir)/data"]
            process.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
            let logPath = dir + "/serve.log"
            FileManager.default.createFile(atPath: logPath, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            var api: String?
            // The first run builds the release binary: allow for it.
            let deadline = Date().addingTimeInterval(1200)
            while Date() < deadline, api == nil, process.isRunning {
                try await Task.sleep(for: .milliseconds(200))
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                if let line = text.split(separator: "\n").first, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let address = object["api.address"] as? String, (try? await http("GET", "http://\(address)/readyz"))?.status == 200 {
                    api = address
                }
            }
            let base = "http://\(try #require(api, "the README's first command did not bring the agent up"))"

            // The first session: the same event, the answer the README shows, and its read path.
            let event = try #require(readme.components(separatedBy: "-d '").dropFirst().first?.components(separatedBy: "'").first)
            let published = try await http("POST", base + "/v1/topics/orders/events",
                                           headers: ["Content-Type": "application/cloudevents+json", "X-Correlation-ID": "checkout-17"], body: Data(event.utf8))
            let shown = try #require(readme.components(separatedBy: "# {\"acks\"").dropFirst().first?.components(separatedBy: "\n").first)
            let expected = try JSONSerialization.jsonObject(with: Data(("{\"acks\"" + shown).utf8)) as? NSDictionary
            #expect(try JSONSerialization.jsonObject(with: published.body) as? NSDictionary == expected, "\(published.text)")
            let readPath = try #require(readme.components(separatedBy: "curl -s 'localhost:7470").dropFirst().first?.components(separatedBy: "'").first)
            let read = try await http("GET", base + readPath)
            #expect(read.status == 200 && read.text.contains("\"o-1\""), "\(readPath): \(read.text)")

            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
        }
    }
}
