import Synchronization

/// The offsets of the records one publish hands one partition's producer, known once the last of them is
/// appended, or the failure that kept them out: one object and one wait per request and partition, not per event.
///
/// Slots are claimed while the request is being planned (``claimSlot()``), so that a later event of the same request
/// that repeats an earlier one can wait for it; ``expectClaimed()`` then fixes their number before the records
/// go to the producer, which resolves them in order as batches are appended.
final class PublishTicket: Sendable {
    private struct State {
        var claimed = 0
        var offsets: [Int64] = []
        var remaining = -1  // -1 until expectClaimed()
        var failure: BrokerError?
        var waiters: [CheckedContinuation<Result<[Int64], BrokerError>, Never>] = []

        var result: Result<[Int64], BrokerError>? {
            if let failure { return .failure(failure) }
            return remaining == 0 ? .success(offsets) : nil
        }
    }

    private let state = Mutex(State())

    init() {}

    /// The next slot of this ticket (0, 1, 2, …), for one record.
    func claimSlot() -> Int {
        state.withLock { state in
            defer { state.claimed += 1 }
            return state.claimed
        }
    }

    /// Claims `count` slots at once (one lock), as ``claimSlot()`` would one after another.
    func claimSlots(_ count: Int) {
        state.withLock { $0.claimed += count }
    }

    /// No more slots: the claimed ones are what the producer resolves.
    func expectClaimed() {
        state.withLock { state in
            state.offsets = Array(repeating: -1, count: state.claimed)
            state.remaining = state.claimed
        }
    }

    /// Slots `slots` were appended with consecutive offsets from `base`.
    func resolve(_ slots: Range<Int>, base: Int64) {
        let (waiters, result) = state.withLock { state -> ([CheckedContinuation<Result<[Int64], BrokerError>, Never>], Result<[Int64], BrokerError>?) in
            guard state.failure == nil, state.remaining > 0 else { return ([], nil) }
            for (index, slot) in slots.enumerated() { state.offsets[slot] = base + Int64(index) }
            state.remaining -= slots.count
            guard let result = state.result else { return ([], nil) }
            defer { state.waiters = [] }
            return (state.waiters, result)
        }
        if let result { for waiter in waiters { waiter.resume(returning: result) } }
    }

    /// The records (or some of them) were not appended: every waiter gets `error`.
    func fail(_ error: BrokerError) {
        let waiters = state.withLock { state -> [CheckedContinuation<Result<[Int64], BrokerError>, Never>] in
            guard state.failure == nil, state.remaining != 0 else { return [] }
            state.failure = error
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: .failure(error)) }
    }

    var failed: Bool { state.withLock { $0.failure != nil } }

    /// Every slot's offset, once all are appended; the failure as soon as there is one.
    func value() async -> Result<[Int64], BrokerError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<[Int64], BrokerError>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
