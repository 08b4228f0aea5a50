import SluiceBroker
import SluiceDelivery
import SluiceKafka
import SluiceSaga
import SluiceTrace
import Synchronization

/// The broker once the log is recovered. The listeners start before recovery so that `/healthz` answers while
/// a large log is still being checked; until then API calls get 503 and `/readyz` says `starting`.
final class BrokerHolder: Sendable {
    private let state = Mutex<(broker: Broker, groups: GroupCoordinator, delivery: DeliveryService, sagas: SagaEngine, traces: TraceIndex?,
                               flows: FlowMap?)?>(nil)

    var broker: Broker? { state.withLock { $0?.broker } }
    var kafkaBackend: KafkaListener.Backend? { state.withLock { $0.map { KafkaListener.Backend(broker: $0.broker, groups: $0.groups) } } }
    var sagasLoaded: Bool { state.withLock { $0?.sagas }?.isLoaded ?? false }

    func set(_ broker: Broker, groups: GroupCoordinator, delivery: DeliveryService, sagas: SagaEngine, traces: TraceIndex?, flows: FlowMap?) {
        state.withLock { $0 = (broker, groups, delivery, sagas, traces, flows) }
    }

    /// Who produces to which topic, when the trace reader runs (`trace.enabled`).
    var flows: FlowMap? { state.withLock { $0?.flows } }

    /// The trace index, or a 503 like ``require()``, or a 404 when `trace.enabled` is false.
    func requireTraces() throws(BrokerError) -> TraceIndex {
        guard let held = state.withLock({ $0 }) else {
            throw BrokerError(.unavailable, "the agent is still recovering its log; retry shortly (GET /readyz says when it is ready)", retryAfter: 1)
        }
        guard let traces = held.traces else {
            throw BrokerError(.notFound, "the trace index is off (trace.enabled=false); start the agent with --trace-enabled true to keep traces")
        }
        return traces
    }

    /// The saga engine, or a 503 like ``require()``.
    func requireSagas() throws(BrokerError) -> SagaEngine {
        guard let sagas = state.withLock({ $0?.sagas }) else {
            throw BrokerError(.unavailable, "the agent is still recovering its log; retry shortly (GET /readyz says when it is ready)", retryAfter: 1)
        }
        return sagas
    }

    /// Push delivery, or a 503 like ``require()``.
    func requireDelivery() throws(BrokerError) -> DeliveryService {
        guard let delivery = state.withLock({ $0?.delivery }) else {
            throw BrokerError(.unavailable, "the agent is still recovering its log; retry shortly (GET /readyz says when it is ready)", retryAfter: 1)
        }
        return delivery
    }

    /// The consumer groups, or a 503 like ``require()``.
    func requireGroups() throws(BrokerError) -> GroupCoordinator {
        guard let groups = state.withLock({ $0?.groups }) else {
            throw BrokerError(.unavailable, "the agent is still recovering its log; retry shortly (GET /readyz says when it is ready)", retryAfter: 1)
        }
        return groups
    }

    /// The broker, or a 503 telling the caller to retry shortly.
    func require() throws(BrokerError) -> Broker {
        guard let broker else {
            throw BrokerError(.unavailable, "the agent is still recovering its log; retry shortly (GET /readyz says when it is ready)", retryAfter: 1)
        }
        return broker
    }
}
