import SluiceLog
import SluiceTrace

extension SagaEngine {
    /// Traces recorded saga changes: under the correlation of the request or event that started the saga (its
    /// commands and replies, correlated by the saga id, are linked to that trace), or under the saga id.
    func trace(_ recorded: [(transition: String, saga: SagaInstance)], into traces: TraceIndex) {
        let now = currentTimeMillis()
        for (transition, saga) in recorded {
            let correlation = saga.kind == .orchestrated ? (saga.originCorrelationId ?? saga.id) : saga.id
            if correlation != saga.id { traces.link(sagaId: saga.id, to: correlation) }
            var hop = TraceHop(kind: .saga, time: now)
            hop.sagaId = saga.id
            hop.sagaType = saga.type
            hop.sagaStatus = saga.status.rawValue
            hop.outcome = transition
            hop.step = saga.currentStep ?? saga.failedStep
            hop.causationId = saga.causationId
            hop.final = saga.status.isFinal
            traces.record(hop, correlationId: correlation)
        }
    }
}
