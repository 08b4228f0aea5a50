import Hummingbird
import SluiceBroker
import SluiceTrace

/// Correlation traces in the v1 API: one trace, and the traces by status.
extension APIRoutes {
    func registerTraces(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.traces)) { request, _ in try listTraces(request) }
        router.get(RouterPath(HTTPPath.trace)) { _, context in
            let id = try context.parameters.require("correlationId")
            let traces = try holder.requireTraces()
            guard let trace = traces.trace(id) else {
                throw BrokerError(.notFound, "no trace \(id): nothing with this correlation id (or saga id) was seen within trace.retention.ms, or it was among the oldest dropped beyond trace.max.traces=\(traces.settings.maxTraces)")
            }
            return jsonResponse(trace.jsonObject)
        }
    }

    func listTraces(_ request: Request) throws -> Response {
        let traces = try holder.requireTraces()
        let query = request.uri.queryParameters
        var status: TraceStatus?
        if let text = query["status"].map(String.init) {
            guard let parsed = TraceStatus(rawValue: text) else {
                throw BrokerError.badRequest("status '\(text)' is not one of \(TraceStatus.allCases.map(\.rawValue).joined(separator: ", "))", attribute: "status")
            }
            status = parsed
        }
        let limit = try listLimit(query["limit"].map(String.init))
        let (list, counts) = traces.list(status: status, limit: limit)
        return jsonResponse([
            "traces": list.map(\.jsonObject),
            "counts": Dictionary(uniqueKeysWithValues: TraceStatus.allCases.map { ($0.rawValue, counts[$0] ?? 0) }),
        ])
    }
}
