import Foundation

/// A schema's `pattern`: compiled by NSRegularExpression (which also checks its syntax), and, when it is in the
/// simple subset most schemas use, by `SimplePattern`, which matches without copying the string to UTF-16.
struct Pattern: Sendable {
    let source: String
    let regex: NSRegularExpression
    let simple: SimplePattern?

    init(_ source: String) throws {
        self.source = source
        // ICU refuses the empty pattern, which ECMA-262 reads as matching everything.
        self.regex = try NSRegularExpression(pattern: source.isEmpty ? "(?:)" : source)
        self.simple = SimplePattern(source)
    }

    func matches(_ text: String) -> Bool {
        if let simple { return simple.matches(text) }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}

/// The regular expressions without groups or alternation: `^` and `$` anchors, literal characters, `.`, classes
/// (`[a-z0-9_-]`, `[^…]`, `\d \w \s` and their negations, with ECMA-262's meanings), and the quantifiers `* + ?
/// {n} {n,} {n,m}` (lazy ones too: whether a string matches does not depend on laziness). Matched by simulating
/// the automaton over the string's Unicode scalars: linear time, no backtracking. Anything else (groups, `|`,
/// back-references, `\b`, `\p{…}`, look-arounds, …) is left to NSRegularExpression: `init` returns nil.
struct SimplePattern: Sendable {
    /// What one step of the pattern matches.
    enum Atom: Sendable, Equatable {
        case scalar(Unicode.Scalar)
        /// `.`: any scalar but a line terminator.
        case any
        case set(ranges: [ClosedRange<UInt32>], negated: Bool)

        func matches(_ value: Unicode.Scalar) -> Bool {
            switch self {
            case .scalar(let scalar): return scalar == value
            case .any: return !SimplePattern.lineTerminators.contains(value.value)
            case .set(let ranges, let negated):
                var found = false
                for range in ranges where range.contains(value.value) {
                    found = true
                    break
                }
                return found != negated
            }
        }
    }

    /// One atom, matched exactly once, at most once, or any number of times.
    enum Step: Sendable, Equatable {
        case one(Atom)
        case optional(Atom)
        case star(Atom)
    }

    let steps: [Step]
    let anchoredStart: Bool
    let anchoredEnd: Bool

    /// The most steps a pattern expands to (`{n,m}` repeats its atom); longer ones are left to NSRegularExpression.
    static let maxSteps = 256
    static let lineTerminators: Set<UInt32> = [0x0A, 0x0D, 0x2028, 0x2029]
    static let digits: [ClosedRange<UInt32>] = [0x30...0x39]
    static let word: [ClosedRange<UInt32>] = [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A]
    static let space: [ClosedRange<UInt32>] = [0x09...0x0D, 0x20...0x20, 0xA0...0xA0, 0x1680...0x1680, 0x2000...0x200A, 0x2028...0x2029,
                                               0x202F...0x202F, 0x205F...0x205F, 0x3000...0x3000, 0xFEFF...0xFEFF]

    init?(_ source: String) {
        var scalars = Array(source.unicodeScalars)
        var start = false, end = false
        if scalars.first == "^" {
            start = true
            scalars.removeFirst()
        }
        if scalars.last == "$", !Self.isEscaped(scalars, at: scalars.count - 1) {
            end = true
            scalars.removeLast()
        }
        var steps: [Step] = []
        var index = 0
        while index < scalars.count {
            guard let (atom, next) = Self.atom(scalars, index) else { return nil }
            index = next
            var low = 1, high: Int? = 1
            if index < scalars.count {
                switch scalars[index] {
                case "*": (low, high) = (0, nil); index += 1
                case "+": (low, high) = (1, nil); index += 1
                case "?": (low, high) = (0, 1); index += 1
                case "{":
                    guard let (bounds, after) = Self.bounds(scalars, index) else { return nil }
                    (low, high) = bounds
                    index = after
                default: break
                }
                if index < scalars.count, scalars[index] == "?", low != 1 || high != 1 { index += 1 }  // lazy
                if index < scalars.count, ["*", "+", "?", "{"].contains(scalars[index]) { return nil }
            }
            let count = steps.count + low + (high.map { $0 - low } ?? 1)
            guard count <= Self.maxSteps else { return nil }
            steps += Array(repeating: .one(atom), count: low)
            if let high {
                steps += Array(repeating: .optional(atom), count: high - low)
            } else {
                steps.append(.star(atom))
            }
        }
        self.steps = steps
        self.anchoredStart = start
        self.anchoredEnd = end
        var skippable: UInt64 = 0
        for (i, step) in steps.enumerated() where i < 64 {
            if case .one = step { continue }
            skippable |= 1 << UInt64(i)
        }
        self.skippable = skippable
    }

    /// Bit i: step i can be passed without reading (optional or starred); for patterns of fewer than 64 steps.
    private let skippable: UInt64

    private static func isEscaped(_ scalars: [Unicode.Scalar], at index: Int) -> Bool {
        var backslashes = 0
        var i = index - 1
        while i >= 0, scalars[i] == "\\" {
            backslashes += 1
            i -= 1
        }
        return backslashes % 2 == 1
    }

    /// `{n}`, `{n,}`, `{n,m}` at `index`; nil when malformed (NSRegularExpression decides then).
    private static func bounds(_ scalars: [Unicode.Scalar], _ index: Int) -> ((Int, Int?), Int)? {
        guard let close = scalars[index...].firstIndex(of: "}") else { return nil }
        let inside = String(String.UnicodeScalarView(scalars[(index + 1)..<close]))
        let parts = inside.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count <= 2, let low = Int(parts[0]), low <= maxSteps else { return nil }
        if parts.count == 1 { return ((low, low), close + 1) }
        if parts[1].isEmpty { return ((low, nil), close + 1) }
        guard let high = Int(parts[1]), high >= low, high <= maxSteps else { return nil }
        return ((low, high), close + 1)
    }

    /// The atom at `index` and the index after it; nil for what this subset does not cover.
    private static func atom(_ scalars: [Unicode.Scalar], _ index: Int) -> (Atom, Int)? {
        let scalar = scalars[index]
        switch scalar {
        case ".": return (.any, index + 1)
        case "[": return set(scalars, index + 1)
        case "\\":
            guard index + 1 < scalars.count, let atom = escape(scalars[index + 1], inClass: false) else { return nil }
            return (atom, index + 2)
        case "(", ")", "|", "*", "+", "?", "{", "}", "]", "^", "$": return nil
        default: return (.scalar(scalar), index + 1)
        }
    }

    /// An escape: a class shorthand, or punctuation standing for itself.
    private static func escape(_ scalar: Unicode.Scalar, inClass: Bool) -> Atom? {
        switch scalar {
        case "d": return .set(ranges: digits, negated: false)
        case "D": return .set(ranges: digits, negated: true)
        case "w": return .set(ranges: word, negated: false)
        case "W": return .set(ranges: word, negated: true)
        case "s": return .set(ranges: space, negated: false)
        case "S": return .set(ranges: space, negated: true)
        case "t": return .scalar("\t")
        case "n": return .scalar("\n")
        case "r": return .scalar("\r")
        default:
            // Escaped ASCII punctuation is itself; letters and digits are other escapes (\b, \p, \1, \u, …).
            guard scalar.isASCII, !scalar.properties.isAlphabetic, !("0"..."9").contains(scalar) else { return nil }
            if inClass && scalar == "-" { return .scalar("-") }
            return .scalar(scalar)
        }
    }

    /// A class from just after its `[`.
    private static func set(_ scalars: [Unicode.Scalar], _ start: Int) -> (Atom, Int)? {
        var index = start
        var negated = false
        if index < scalars.count, scalars[index] == "^" {
            negated = true
            index += 1
        }
        var ranges: [ClosedRange<UInt32>] = []
        var first = true
        while index < scalars.count {
            let scalar = scalars[index]
            if scalar == "]" && !first {
                return (.set(ranges: ranges, negated: negated), index + 1)
            }
            first = false
            if scalar == "[" { return nil }  // nested or POSIX classes: not in this subset
            // One member: a scalar, or an escape.
            var low: UInt32
            if scalar == "\\" {
                guard index + 1 < scalars.count, let atom = escape(scalars[index + 1], inClass: true) else { return nil }
                index += 2
                switch atom {
                case .scalar(let value): low = value.value
                case .set(let more, false):
                    ranges += more
                    continue
                default: return nil  // a negated shorthand inside a class
                }
            } else {
                if scalar == "]" { return nil }  // `[]` matches nothing in ECMA-262 and `[]a]` differs between engines
                low = scalar.value
                index += 1
            }
            // A range `a-z` (a `-` before `]` is literal).
            if index + 1 < scalars.count, scalars[index] == "-", scalars[index + 1] != "]" {
                var high: UInt32
                if scalars[index + 1] == "\\" {
                    guard index + 2 < scalars.count, case .scalar(let value)? = escape(scalars[index + 2], inClass: true) else { return nil }
                    high = value.value
                    index += 3
                } else {
                    high = scalars[index + 1].value
                    index += 2
                }
                guard low <= high else { return nil }
                ranges.append(low...high)
            } else {
                ranges.append(low...low)
            }
        }
        return nil
    }

    // MARK: - Matching

    func matches(_ text: String) -> Bool {
        steps.count < 64 ? matchesInBits(text) : matchesInArrays(text)
    }

    /// The same automaton with its states in one word: bit i set = i steps are done.
    private func matchesInBits(_ text: String) -> Bool {
        let count = steps.count
        let done: UInt64 = 1 << UInt64(count)
        var current = closed(1)
        if !anchoredEnd && current & done != 0 { return true }
        func step(_ scalar: Unicode.Scalar) -> Bool {
            var next: UInt64 = anchoredStart ? 0 : 1
            var states = current & (done - 1)
            while states != 0 {
                let i = states.trailingZeroBitCount
                states &= states - 1
                switch steps[i] {
                case .one(let atom), .optional(let atom):
                    if atom.matches(scalar) { next |= 1 << UInt64(i + 1) }
                case .star(let atom):
                    if atom.matches(scalar) { next |= 1 << UInt64(i) }
                }
            }
            current = closed(next)
            return current != 0
        }
        for byte in text.utf8 {
            // Most text is ASCII: a byte is its scalar. Anything else is matched scalar by scalar from the start.
            guard byte < 0x80 else { return matchesInArrays(text) }
            guard step(Unicode.Scalar(byte)) else { return false }
            if !anchoredEnd && current & done != 0 { return true }
        }
        return current & done != 0
    }

    private func closed(_ states: UInt64) -> UInt64 {
        var states = states
        while true {
            let more = states | ((states & skippable) << 1)
            if more == states { return states }
            states = more
        }
    }

    private func matchesInArrays(_ text: String) -> Bool {
        let count = steps.count
        // States: how many steps are done. `current[i]` = some way through the text so far ends after step i.
        var current = [Bool](repeating: false, count: count + 1)
        var next = current
        current[0] = true
        close(&current)
        if !anchoredEnd && current[count] { return true }
        for scalar in text.unicodeScalars {
            for i in 0...count { next[i] = false }
            var any = false
            for i in 0..<count where current[i] {
                switch steps[i] {
                case .one(let atom), .optional(let atom):
                    if atom.matches(scalar) { next[i + 1] = true; any = true }
                case .star(let atom):
                    if atom.matches(scalar) { next[i] = true; any = true }
                }
            }
            if !anchoredStart {
                next[0] = true
                any = true
            }
            guard any else { return false }
            close(&next)
            swap(&current, &next)
            if !anchoredEnd && current[count] { return true }
        }
        return current[count]
    }

    /// Adds the states reachable without reading: past optional and starred steps.
    private func close(_ states: inout [Bool]) {
        for i in 0..<steps.count where states[i] {
            switch steps[i] {
            case .optional, .star: states[i + 1] = true
            case .one: break
            }
        }
    }
}
