import Foundation
@testable import SluiceBroker
import Testing

/// The publish path's JSON scanner accepts exactly the JSON texts Foundation's parser accepts, but for the two
/// places where Foundation is more lenient than RFC 8259; on generated documents and on the same documents with a
/// byte changed, cut short or with a byte inserted.
@Suite("JSON scanner")
struct JSONScannerTests {
    /// A deterministic generator (SplitMix64), so a failure names a seed that reproduces it.
    struct Generator {
        var state: UInt64

        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

        mutating func string() -> String {
            let pieces = ["a", "Z", "0", " ", "é", "日本", "😀", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u00e9", "\\ud83d\\ude00", "\\u0000", "order.created", "-"]
            return "\"" + (0..<below(6)).map { _ in pieces[below(pieces.count)] }.joined() + "\""
        }

        mutating func value(depth: Int = 0) -> String {
            switch below(depth > 3 ? 5 : 7) {
            case 0: return string()
            case 1: return ["0", "-1", "3.25", "1e10", "-0.5E-3", "123456789012345678901234567890"][below(6)]
            case 2: return ["true", "false", "null"][below(3)]
            case 3, 4: return string()
            case 5: return "[" + (0..<below(4)).map { _ in value(depth: depth + 1) }.joined(separator: ", ") + "]"
            default:
                return "{" + (0..<below(5)).map { _ in string() + ":" + value(depth: depth + 1) }.joined(separator: ",") + "}"
            }
        }
    }

    /// Whether the scanner takes `bytes` as one JSON value with nothing but whitespace after it.
    static func scannerAccepts(_ bytes: [UInt8]) -> Bool {
        JSONScanner.isJSONValue(bytes)
    }

    static func foundationAccepts(_ bytes: [UInt8]) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil
    }

    /// A trailing comma before `]` or `}`, or a NUL byte: texts Foundation accepts and RFC 8259 does not.
    static func foundationLeniency(_ bytes: [UInt8]) -> Bool {
        if bytes.contains(0) { return true }
        let significant = bytes.filter { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }
        return zip(significant, significant.dropFirst()).contains { $0 == 0x2C && ($1 == 0x5D || $1 == 0x7D) }
    }

    @Test("agrees with Foundation's parser on 20,000 generated documents and their mutations")
    func agreesWithFoundation() {
        var random = Generator(state: 20261206)
        var disagreements: [String] = []
        for _ in 0..<5_000 {
            let document = Array(random.value().utf8)
            var cases = [document]
            // A byte changed, the text cut short, a byte inserted.
            var changed = document
            changed[random.below(changed.count)] = [0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x00, 0x1F, 0x80, 0xC3, 0xFF, 0x30, 0x2D][random.below(15)]
            cases.append(changed)
            cases.append(Array(document.prefix(random.below(document.count))))
            var inserted = document
            inserted.insert([0x20, 0x22, 0x5C, 0x2C, 0x0A][random.below(5)], at: random.below(document.count + 1))
            cases.append(inserted)
            for bytes in cases {
                let scanner = Self.scannerAccepts(bytes), foundation = Self.foundationAccepts(bytes)
                // Foundation is lenient where RFC 8259 is not: it takes a trailing comma and a NUL byte.
                if scanner != foundation && !(foundation && Self.foundationLeniency(bytes)) {
                    disagreements.append("\(scanner ? "scanner accepts" : "scanner refuses"): \(String(decoding: bytes, as: UTF8.self).debugDescription)")
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, e.g. \(disagreements.prefix(5))")
    }

    @Test("long strings, scanned sixteen bytes at a time: an escape, control character, non-ASCII or invalid byte at every position of the first blocks is found as Foundation finds it")
    func longStrings() {
        // Each insert as it appears in the JSON text; the decoded text Foundation gives is the oracle.
        let inserts: [[UInt8]] = [Array(#"\""#.utf8), Array(#"\\"#.utf8), Array(#"\u00e9"#.utf8), Array("é".utf8), [0x01], [0x1F], [0xFF], [0x22]]
        var disagreements: [String] = []
        for length in [0, 1, 15, 16, 17, 31, 32, 33, 47, 48] {
            for position in 0...length {
                for insert in inserts {
                    let content = Array(repeating: UInt8(ascii: "a"), count: position) + insert + Array(repeating: UInt8(ascii: "b"), count: length - position)
                    let text = [0x22] + content + [0x22]
                    let expected = (try? JSONSerialization.jsonObject(with: Data(text), options: [.fragmentsAllowed])) as? String
                    // A bare quote ends the string early: the text is then not one string, for either.
                    let decoded = JSONScanner.withScanner(over: text) { scanner in (try? scanner.string()).flatMap { scanner.atEnd ? $0 : nil } }
                    let skipped = JSONScanner.withScanner(over: text) { scanner in (try? scanner.skipString()) != nil && scanner.atEnd }
                    if decoded != expected || skipped != (expected != nil) {
                        disagreements.append("\(String(decoding: text, as: UTF8.self).debugDescription): scanner \(decoded.debugDescription), Foundation \(expected.debugDescription)")
                    }
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, e.g. \(disagreements.prefix(3))")
        // Plain text of every length up to three blocks, and the end of the text inside a block.
        for length in 0...48 {
            let content = String((0..<length).map { Character(Unicode.Scalar(UInt8(0x41 + $0 % 26))) })
            #expect(JSONScanner.withScanner(over: Array("\"\(content)\"".utf8)) { try? $0.string() } == content)
            #expect(JSONScanner.withScanner(over: Array("\"\(content)".utf8)) { try? $0.string() } == nil, "unterminated, \(length) bytes")
        }
    }

    @Test("known values: escapes, surrogates, control characters, invalid UTF-8, literals, numbers, depth")
    func knownValues() {
        for accepted in [#""plain""#, #""\u00e9\n\"""#, #""\ud83d\ude00""#, "\"é😀\"", "true", "null", "-0.5e+3", #"{"a":[1,{"b":null}]}"#, " [ ] ", "{}"] {
            #expect(Self.scannerAccepts(Array(accepted.utf8)), "\(accepted)")
        }
        for refused in [#""\ud83d""#, #""\ude00""#, "\"a\u{01}b\"", #""\x""#, "tru", "nul", "01", "1.", "-", "[1,]", #"{"a"}"#, #"{"a":1,}"#, "\"open", ""] {
            #expect(!Self.scannerAccepts(Array(refused.utf8)), "\(refused)")
        }
        #expect(!Self.scannerAccepts([0x22, 0xC3, 0x28, 0x22]))  // invalid UTF-8 inside a string
        #expect(!Self.scannerAccepts([0x22, 0xFF, 0x22]))
        #expect(Self.scannerAccepts(Array((String(repeating: "[", count: 128) + String(repeating: "]", count: 128)).utf8)))
        #expect(!Self.scannerAccepts(Array((String(repeating: "[", count: 129) + String(repeating: "]", count: 129)).utf8)))
    }
}
