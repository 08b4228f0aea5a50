import Foundation
import SluiceServer
import SluiceBroker
import SluiceTelemetry
import SluiceDelivery
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
        for served in HTTPPath.all {
            #expect(text.contains("\n  \(served):"), "\(served) is not documented in openapi.yaml")
        }
    }
}

@Suite("README contracts")
struct ReadmeContractTests {
    @Test("the README documents every setting, metric family, log field and HTTP path by its exact name")
    func namesAreDocumented() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        for property in ConfigProperty.all {
            #expect(readme.contains("`\(property.flag)`") && readme.contains("`\(property.name)`") && readme.contains("`\(property.environmentVariable)`"),
                    "setting \(property.name) is missing from the README")
        }
        let families = MetricName.all
        for family in families {
            #expect(readme.contains("`\(family.name)`"), "metric \(family.name) is missing from the README")
            for label in family.labels { #expect(readme.contains("`\(label)`"), "label \(label) of \(family.name) is missing") }
        }
        for gauge in Broker.numericGauges { #expect(readme.contains("`\(gauge.metric)`"), "metric \(gauge.metric) is missing") }
        for field in LogField.all {
            #expect(readme.contains("`\(field)`"), "log field \(field) is missing from the README")
        }
        for header in DeadLetterHeader.all + DeliveryHeader.all {
            #expect(readme.contains("`\(header)`"), "header \(header) is missing from the README")
        }
        for path in HTTPPath.all {
            #expect(readme.contains(path), "HTTP path \(path) is missing from the README")
        }
    }
}
