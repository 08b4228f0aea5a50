/// Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`, so a key lands on
/// the partition Java and librdkafka (`murmur2_random`) clients would pick.
public enum Partitioner {
    /// Kafka's 32-bit murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils.murmur2`.
    public static func murmur2(_ data: [UInt8]) -> Int32 {
        data.withUnsafeBufferPointer { murmur2($0) }
    }

    static func murmur2(_ data: UnsafeBufferPointer<UInt8>) -> Int32 {
        let m: UInt32 = 0x5BD1_E995
        let r: UInt32 = 24
        let length = data.count
        var h: UInt32 = 0x9747_B28C ^ UInt32(truncatingIfNeeded: length)
        let blocks = length / 4
        for i in 0..<blocks {
            let i4 = i * 4
            var k = UInt32(data[i4]) | UInt32(data[i4 + 1]) << 8 | UInt32(data[i4 + 2]) << 16 | UInt32(data[i4 + 3]) << 24
            k &*= m
            k ^= k >> r
            k &*= m
            h &*= m
            h ^= k
        }
        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 1:
            h ^= UInt32(data[tail])
            h &*= m
        default:
            break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition for `key` among `partitions`.
    public static func partition(forKey key: [UInt8], partitions: Int) -> Int32 {
        Int32((Int(murmur2(key)) & 0x7FFF_FFFF) % partitions)
    }

    /// The partition for the UTF-8 bytes of `key` among `partitions`.
    public static func partition(forKey key: String, partitions: Int) -> Int32 {
        let hash = key.utf8.withContiguousStorageIfAvailable { murmur2($0) } ?? murmur2(Array(key.utf8))
        return Int32((Int(hash) & 0x7FFF_FFFF) % partitions)
    }
}
