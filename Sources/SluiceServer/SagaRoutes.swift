import Foundation
import SluiceSchema
import HTTPTypes
import Hummingbird
import SluiceBroker
import SluiceSaga
import SluiceTelemetry

/// Sagas in the v1 API: start one, list them, show one.
extension APIRoutes {
    /// The saga engine once it has read its states back (until then its answers would be incomplete: 503).
    var sagas: SagaEngine {
        get throws {
            let engine = try holder.requireSagas()
            guard engine.isLoaded else {
                throw BrokerError(.unavailable, "sagas are still being loaded from \(SagaEngine.stateTopic); retry shortly", retryAfter: 1)
            }
            return engine
        }
    }

    func registerSagas(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.sagas)) { request, _ in try listSagas(request) }
        router.get(RouterPath(HTTPPath.saga)) { _, context in
            let id = try context.parameters.require("name")
            guard let saga = try await self.sagas.find(id: id) else {
                throw BrokerError(.notFound, "no saga \(id) (finished sagas are kept for the latest \(SagaEngine.retainedFinished); GET \(HTTPPath.sagas) lists them)")
            }
            return jsonResponse(saga.detailObject)
        }
        router.post(RouterPath(HTTPPath.saga)) { request, context in try await startSaga(request, context) }
    }

    func listSagas(_ request: Request) throws -> Response {
        let engine = try sagas
        let query = request.uri.queryParameters
        var status: SagaStatus?
        if let text = query["status"].map(String.init) {
            guard let parsed = SagaStatus(rawValue: text) else {
                throw BrokerError.badRequest("status '\(text)' is not one of \(SagaStatus.allCases.map(\.rawValue).joined(separator: ", "))", attribute: "status")
            }
            status = parsed
        }
        let type = query["type"].map(String.init)
        if let type, !engine.catalog.typeNames.contains(type) {
            throw BrokerError.badRequest("saga type '\(type)' is not declared; declared: \(engine.catalog.typeNames.joined(separator: ", "))", attribute: "type")
        }
        let limit = try listLimit(query["limit"].map(String.init))
        let list = engine.list(type: type, status: status, limit: limit)
        return jsonResponse(["sagas": list.map(\.summaryObject), "types": engine.catalog.typeNames])
    }

    func startSaga(_ request: Request, _ context: AgentRequestContext) async throws -> Response {
        let type = try context.parameters.require("name")
        let engine = try sagas
        let body = try await request.body.collect(upTo: 1 << 20)
        var data = JSONValue.object([:])
        if body.readableBytes > 0 {
            guard let parsed = JSONValue.parse(Array(buffer: body)), parsed.objectValue != nil else {
                throw BrokerError.badRequest("the body must be the saga's data as a JSON object, e.g. {\"order_id\": \"o-1\", \"amount\": 42}", attribute: nil)
            }
            data = parsed
        }
        let id = request.uri.queryParameters["id"].map(String.init)
        let (saga, created) = try await engine.start(type: type, data: data, id: id, correlationId: Correlation.current?.correlationId,
                                                    traceparent: request.headers[HTTPField.Name.traceparent].flatMap { Correlation.isTraceparent($0) ? $0 : nil })
        var response = jsonResponse(saga.detailObject, status: created ? .created : .ok)
        response.headers[.location] = HTTPPath.sagas + "/" + saga.id
        return response
    }
}
