import Dispatch
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SluiceBroker
import SluiceTelemetry

/// Per request: derive the correlation id (X-Correlation-ID, else the traceparent's trace id, else a new
/// one), put it in the task-local context for every log line, check the bearer token, turn every error into a
/// problem body, count the request and write one access-log line.
struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let metrics: SluiceMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let trace = request.headers[HTTPField.Name.traceparent].flatMap(Correlation.parseTraceparent)
        let header = request.headers[HTTPField.Name.correlationId].flatMap { $0.isEmpty ? nil : $0 }
        let headerTooLong = (header?.utf8.count ?? 0) > Correlation.maxIdLength
        let correlationId = (headerTooLong ? nil : header) ?? trace?.traceId ?? Correlation.newId()
        let correlation = CorrelationContext(correlationId: correlationId, traceId: trace?.traceId, spanId: trace?.spanId)

        let response = await Correlation.with(correlation) { () async -> Response in
            do {
                if let token, !isOpen(request.uri.path), !authorized(request, token: token) {
                    throw BrokerError(.unauthorized, "this API needs Authorization: Bearer <token> (the agent runs with api.token)")
                }
                if headerTooLong {
                    throw BrokerError.badRequest("X-Correlation-ID is \(header?.utf8.count ?? 0) bytes; at most \(Correlation.maxIdLength) are accepted", attribute: "X-Correlation-ID")
                }
                var response = try await next(request, context)
                if response.headers[HTTPField.Name.correlationId] == nil {
                    response.headers[HTTPField.Name.correlationId] = correlationId
                }
                return response
            } catch var error as BrokerError {
                if error.status >= 500 {
                    // The log line keeps the whole message; the answer does not show the server's file paths.
                    logger.error("request failed", metadata: ["error": .string(error.message)])
                    error.message = Self.withoutPaths(error.message) + " (the agent log has the details; correlation id \(correlationId))"
                }
                return Problem(error, correlationId: correlationId).response()
            } catch let error as HTTPError {
                let detail = error.status == .notFound
                    ? "no route for \(request.method) \(request.uri.path); see the README or openapi.yaml for the API"
                    : (error.body ?? error.status.reasonPhrase)
                return Problem(status: Int(error.status.code), kind: error.status == .notFound ? "not_found" : "http_error",
                               detail: detail, correlationId: correlationId).response()
            } catch is NIOTooManyBytesError {
                return Problem(status: 413, kind: "payload_too_large", detail: "the request body is larger than max.request.size",
                               correlationId: correlationId).response()
            } catch {
                logger.error("request failed", metadata: ["error": .string("\(error)")])
                return Problem(status: 500, kind: "internal", detail: "internal error; the agent log has the details (correlation id \(correlationId))",
                               correlationId: correlationId).response()
            }
        }
        let route = context.endpointPath ?? "unmatched"
        metrics.httpRequest(route: route, method: request.method.rawValue, status: Int(response.status.code))
        let micros = (DispatchTime.now().uptimeNanoseconds - started) / 1000
        Correlation.$current.withValue(correlation) {
            logger.info("request handled", metadata: [
                "http.request.method": .string(request.method.rawValue), "url.path": .string(request.uri.path),
                "http.route": .string(route), "http.response.status_code": .stringConvertible(Int(response.status.code)),
                "event.duration": .stringConvertible(micros * 1000),
            ])
        }
        return response
    }

    /// `message` with every absolute path cut to its last component.
    static func withoutPaths(_ message: String) -> String {
        message.split(separator: " ", omittingEmptySubsequences: false).map { word -> Substring in
            guard word.hasPrefix("/"), word.dropFirst().contains("/") else { return word }
            let trailing = word.reversed().prefix(while: { ":;,)".contains($0) })
            let path = word.dropLast(trailing.count)
            return "…/" + (path.split(separator: "/").last ?? "") + String(trailing.reversed())
        }.joined(separator: " ")
    }

    /// Health, readiness and the console's static page (it holds no data: what it shows, it reads from the API
    /// with the token the user gives it).
    private func isOpen(_ path: String) -> Bool {
        path == HTTPPath.health || path == HTTPPath.ready || path == HTTPPath.console
    }

    private func authorized(_ request: Request, token: String) -> Bool {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        let presented = Array(header.dropFirst(7).utf8)
        let expected = Array(token.utf8)
        // Constant-time comparison, so the token cannot be guessed byte by byte from timings.
        var difference = UInt8(presented.count == expected.count ? 0 : 1)
        for index in 0..<max(presented.count, expected.count) {
            let a = index < presented.count ? presented[index] : 0
            let b = index < expected.count ? expected[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }
}
