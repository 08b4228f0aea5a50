import Synchronization

/// Wakes readers waiting for new data in a partition (long polls). A generation counter makes sure a wake-up
/// between a reader's check and its wait is not lost.
final class AppendNotifier: Sendable {
    private let state = Mutex<(generation: UInt64, nextId: UInt64, waiters: [UInt64: CheckedContinuation<Void, Never>])>((0, 0, [:]))

    var generation: UInt64 { state.withLock { $0.generation } }

    func notify() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.generation &+= 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns after the generation moves past `seen`, or when the task is cancelled.
    func wait(after seen: UInt64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextId &+= 1
            return state.nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.generation != seen || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}

/// Bytes of events accepted but not yet written, bounded by `buffer.memory`.
final class ProducerBuffer: Sendable {
    let limit: Int
    private let used = Mutex<Int>(0)

    init(limit: Int) { self.limit = limit }

    var bytes: Int { used.withLock { $0 } }

    func reserve(_ bytes: Int) -> Bool {
        used.withLock { used in
            guard used + bytes <= limit else { return false }
            used += bytes
            return true
        }
    }

    /// Reserves even beyond the limit (for records that must not be refused).
    func forceReserve(_ bytes: Int) {
        used.withLock { $0 += bytes }
    }

    func release(_ bytes: Int) {
        used.withLock { $0 -= bytes }
    }
}
