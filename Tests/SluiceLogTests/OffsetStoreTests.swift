import Foundation
@testable import SluiceLog
import Testing

@Suite("Offset store")
struct OffsetStoreTests {
    func key(_ group: String, _ partition: Int32) -> GroupPartition { GroupPartition(group: group, topic: "t", partition: partition) }

    @Test("commits, deletes and metadata read back after reopening")
    func reopen() async throws {
        try await withTemporaryDirectory { dir in
            let store = try OffsetStore.open(directory: dir)
            try await store.commit([key("a", 0): CommittedOffset(offset: 5, metadata: "m", commitTime: 100), key("a", 1): CommittedOffset(offset: 7, commitTime: 101)])
            try await store.commit([key("b", 0): CommittedOffset(offset: 9, commitTime: 102)])
            try await store.commit([key("a", 0): CommittedOffset(offset: 6, commitTime: 103)])
            try await store.deleteGroup("b")
            store.close()
            let again = try OffsetStore.open(directory: dir)
            #expect(again.all == [key("a", 0): CommittedOffset(offset: 6, commitTime: 103), key("a", 1): CommittedOffset(offset: 7, commitTime: 101)])
            #expect(again.truncatedBytes == 0)
            again.close()
        }
    }

    @Test("a torn or damaged tail is cut off; every whole entry before it is kept, and commits continue after it")
    func tornTail() async throws {
        try await withTemporaryDirectory { dir in
            let store = try OffsetStore.open(directory: dir)
            for n in 0..<10 { try await store.commit([key("g", Int32(n % 3)): CommittedOffset(offset: Int64(n), commitTime: Int64(n))]) }
            store.close()
            let path = dir + "/offsets.log"
            let whole = try Data(contentsOf: URL(fileURLWithPath: path))
            for cut in [1, 7, 20] {
                try whole.prefix(whole.count - cut).write(to: URL(fileURLWithPath: path))
                let reopened = try OffsetStore.open(directory: dir)
                #expect(reopened.truncatedBytes > 0)
                // Entry 9 (partition 0) is torn: partition 0 falls back to entry 6.
                #expect(reopened.offset(key("g", 0))?.offset == 6)
                #expect(reopened.offset(key("g", 2))?.offset == 8)
                try await reopened.commit([key("g", 0): CommittedOffset(offset: 42, commitTime: 1)])
                reopened.close()
                let last = try OffsetStore.open(directory: dir)
                #expect(last.offset(key("g", 0))?.offset == 42)
                #expect(last.truncatedBytes == 0)
                last.close()
                try whole.write(to: URL(fileURLWithPath: path))
            }
            // A flipped byte inside the last entry fails its CRC.
            var flipped = whole
            flipped[flipped.count - 3] ^= 0xFF
            try flipped.write(to: URL(fileURLWithPath: path))
            let damaged = try OffsetStore.open(directory: dir)
            #expect(damaged.offset(key("g", 0))?.offset == 6)
            damaged.close()
        }
    }

    @Test("the file is compacted to the live offsets once it holds far more entries, and concurrent commits all land")
    func compaction() async throws {
        try await withTemporaryDirectory { dir in
            let store = try OffsetStore.open(directory: dir)
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for n in 0..<1600 {
                            try? await store.commit([GroupPartition(group: "g\(worker)", topic: "t", partition: Int32(n % 4)): CommittedOffset(offset: Int64(n), commitTime: 0)])
                        }
                    }
                }
            }
            #expect(store.all.count == 32)
            let size = try FileManager.default.attributesOfItem(atPath: dir + "/offsets.log")[.size] as! Int
            #expect(size < 12_800 * 30, "compacted: \(size) bytes for 12,800 commits")
            store.close()
            let reopened = try OffsetStore.open(directory: dir)
            for worker in 0..<8 {
                for p in 0..<4 { #expect(reopened.offset(GroupPartition(group: "g\(worker)", topic: "t", partition: Int32(p)))?.offset == Int64(1596 + p)) }
            }
            reopened.close()
        }
    }
}
