import Foundation
import SluiceTelemetry
import Testing

@Suite("traceparent")
struct TraceparentTests {
    /// The same rule as the pattern in openapi.yaml, as an independent oracle.
    static let oracle = try! NSRegularExpression(pattern: "^[0-9a-fA-F]{2}-(?!0{32}-)[0-9a-fA-F]{32}-(?!0{16}-)[0-9a-fA-F]{16}-[0-9a-fA-F]{2}$")

    static func oracleAccepts(_ value: String) -> Bool {
        oracle.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil
    }

    @Test("known values: ids in lower case; all-zero ids, wrong lengths, separators and non-ASCII digits refused")
    func known() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(Correlation.parseTraceparent(valid)! == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        #expect(Correlation.parseTraceparent(valid.uppercased())! == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        for bad in ["", "nope", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                    "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0１",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01"] {
            #expect(Correlation.parseTraceparent(bad) == nil, "\(bad)")
            #expect(!Correlation.isTraceparent(bad), "\(bad)")
        }
    }

    @Test("agrees with the regular expression on 20,000 mutations of valid values")
    func agreesWithOracle() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("0123456789abcdefABCDEF-x0 ")
        for _ in 0..<20_000 {
            var characters = Array("00-\(String((0..<32).map { _ in alphabet[Int.random(in: 0..<16, using: &generator)] }))-\(String((0..<16).map { _ in alphabet[Int.random(in: 0..<16, using: &generator)] }))-01")
            if Bool.random(using: &generator) { for i in 3..<35 { characters[i] = "0" } }
            for _ in 0..<Int.random(in: 0...2, using: &generator) {
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: characters[Int.random(in: 0..<characters.count, using: &generator)] = alphabet.randomElement(using: &generator)!
                case 1: characters.remove(at: Int.random(in: 0..<characters.count, using: &generator))
                default: characters.insert(alphabet.randomElement(using: &generator)!, at: Int.random(in: 0...characters.count, using: &generator))
                }
            }
            let value = String(characters)
            let parsed = Correlation.parseTraceparent(value)
            #expect((parsed != nil) == Self.oracleAccepts(value), "\(value)")
            #expect(Correlation.isTraceparent(value) == (parsed != nil))
            if let parsed {
                #expect(parsed.traceId == String(value.dropFirst(3).prefix(32)).lowercased() && parsed.spanId == String(value.dropFirst(36).prefix(16)).lowercased())
            }
        }
    }
}
