/// FNV-1a over bytes: a hash that is the same in every process and on every machine (Swift's `Hasher` is seeded
/// per process), for names derived from content — a saga's id from its trigger, a transactional id from a path.
public enum StableHash {
    public static let fnvOffsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325

    public static func fnv1a(_ text: String, seed: UInt64 = fnvOffsetBasis) -> UInt64 {
        text.utf8.reduce(seed) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}
