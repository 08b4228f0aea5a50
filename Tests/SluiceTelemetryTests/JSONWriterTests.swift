import Foundation
import SluiceTelemetry
import Testing

@Suite("JSON writer")
struct JSONWriterTests {
    @Test("integers are written as Swift prints them, the ends of Int64 included")
    func integers() {
        var values: [Int64] = [0, 1, -1, 9, 10, -10, 99, 100, Int64.max, Int64.min, Int64.max - 1, Int64.min + 1]
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2000 { values.append(Int64.random(in: Int64.min...Int64.max, using: &random) >> Int64.random(in: 0...63, using: &random)) }
        for value in values {
            var writer = JSONWriter()
            writer.appendInteger(value)
            #expect(String(decoding: writer.bytes, as: UTF8.self) == String(value))
        }
    }

    @Test("strings come back from Foundation's parser as they went in: plain, escaped, control characters, non-ASCII, empty, long")
    func strings() throws {
        let pieces = ["a", "order.created", "\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1F}", "\u{7F}", "é", "日本", "😀", "/", " ", String(repeating: "x", count: 40)]
        var random = SystemRandomNumberGenerator()
        var cases = ["", "plain", String(repeating: "long plain text ", count: 20)] + pieces
        for _ in 0..<2000 { cases.append((0..<Int.random(in: 0...8, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()) }
        for text in cases {
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("s", string: text)
            writer.field("n", int: -42)
            writer.field("t", bool: true)
            writer.field("f", bool: false)
            writer.fieldNull("z")
            writer.endObject()
            let object = try #require(try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String: Any], "\(String(decoding: writer.bytes, as: UTF8.self))")
            #expect(object["s"] as? String == text)
            #expect(object["n"] as? Int == -42 && object["t"] as? Bool == true && object["f"] as? Bool == false && object["z"] is NSNull)
        }
    }
}
