import Foundation
import SluiceServer
import Testing

@Suite("OpenAPI document")
struct OpenAPITests {
    @Test("openapi.yaml is a valid OpenAPI 3 document and documents every path the server serves")
    func valid() throws {
        let path = packageRoot + "/openapi.yaml"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import sys; from openapi_spec_validator import validate; from openapi_spec_validator.readers import read_from_filename; validate(read_from_filename(sys.argv[1])[0]); print('ok')", path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "openapi-spec-validator: \(report)")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for served in [HTTPPath.health, HTTPPath.ready, HTTPPath.metrics, HTTPPath.topics, HTTPPath.topic, HTTPPath.topicEvents,
                       HTTPPath.partitionEvents, HTTPPath.routedEvents] {
            #expect(text.contains("\n  \(served):"), "\(served) is not documented in openapi.yaml")
        }
    }
}
