import Foundation
@testable import SluiceSchema
import Testing

/// The simple-pattern matcher against NSRegularExpression (the oracle) on the same strings.
@Suite("Simple patterns")
struct SimplePatternTests {
    static let simple = [
        "^ord-[0-9]{9}$", "^cust-[0-9]+$", "^[A-Z]{3}$", "^[a-z]{2}-[0-9]+$", "^[0-9a-f]{24}$", "^[A-Z]{2}$", "a+b", "^a*$", "ab?c", "x{2,4}",
        "^[^0-9]*$", "\\d\\d-\\w+", "^\\S+\\s\\S+$", "^.{3,5}$", "^[a-c-]+$", "^[\\d.]+$", "[-a]", "\\.json$", "^$", "", "^a{0,}b{1,}$",
        "^a+?b*?$", "^[\\-x]$", "c.t", "^https?://[a-z.]+/[a-z0-9/_-]*$", "^[a-z]{0,3}z?$",
    ]
    static let complex = ["^(a|b)$", "a|b", "(ab)+", "\\bword", "\\p{L}+", "(?=a)a", "\\1", "[[:alpha:]]", "a{2}{3}", "\\u0041", "[]a]"]

    @Test("the subset is recognised; groups, alternation and other escapes are left to NSRegularExpression")
    func subset() {
        for source in Self.simple { #expect(SimplePattern(source) != nil, "\(source)") }
        for source in Self.complex { #expect(SimplePattern(source) == nil, "\(source)") }
    }

    @Test("every simple pattern matches exactly the strings NSRegularExpression matches (random strings from a pointed alphabet)")
    func oracle() throws {
        let alphabet = Array("ab0123456789xyzABCZ-._/: cdeforstj?{}".unicodeScalars) + ["é", "日"]
        var generator = SystemRandomNumberGenerator()
        for source in Self.simple {
            let simple = try #require(SimplePattern(source))
            let regex = try NSRegularExpression(pattern: source.isEmpty ? "(?:)" : source)
            var samples = ["", "ord-123456789", "cust-1", "EUR", "ab-12", "0123456789abcdef01234567", "https://a.b/x_1", "a b", "1.2.3", "x.json", "aab", "cat"]
            for _ in 0..<400 {
                let length = Int.random(in: 0...14, using: &generator)
                samples.append(String(String.UnicodeScalarView((0..<length).map { _ in alphabet.randomElement(using: &generator)! })))
            }
            // ICU's \d \w \s take in non-ASCII digits, letters and spaces, ECMA-262's (the schema's) do not: there
            // the oracle is not one, so those patterns are compared on ASCII text.
            let shorthand = source.contains("\\")
            for text in samples where !shorthand || text.unicodeScalars.allSatisfy(\.isASCII) {
                let expected = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                #expect(simple.matches(text) == expected, "\(source) on '\(text)': NSRegularExpression says \(expected)")
            }
        }
    }

    @Test("matching is linear: a pattern that makes backtracking engines explode answers at once")
    func noBacktracking() throws {
        let simple = try #require(SimplePattern("^a*a*a*a*a*a*a*a*a*a*b$"))
        #expect(!simple.matches(String(repeating: "a", count: 5_000)))
        #expect(simple.matches(String(repeating: "a", count: 5_000) + "b"))
    }
}

extension SimplePatternTests {
    @Test("an empty pattern is a valid one that matches everything (ICU alone would refuse it)")
    func emptyPattern() throws {
        let schema = try JSONSchema(JSONValue.parse(Array(#"{"pattern": ""}"#.utf8))!)
        #expect(schema.isValid(.string("anything")) && schema.isValid(.string("")))
    }
}

extension SimplePatternTests {
    @Test("\\d, \\w and \\s have ECMA-262's meanings: ASCII digits and word characters")
    func ecmaClasses() throws {
        #expect(try #require(SimplePattern("^\\w+$")).matches("abc_09") && !(try #require(SimplePattern("^\\w+$")).matches("日本")))
        #expect(!(try #require(SimplePattern("^\\d$")).matches("٣")))  // an Arabic-Indic digit
        #expect(try #require(SimplePattern("^a\\sb$")).matches("a\u{00A0}b"))
    }
}
