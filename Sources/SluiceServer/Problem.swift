import Foundation
import HTTPTypes
import Hummingbird
import SluiceBroker

/// An RFC 9457 problem body.
struct Problem {
    var status: Int
    var kind: String
    var detail: String
    var attribute: String?
    var correlationId: String?
    var retryAfter: Int?
    var schemaViolations: [EventSchemaViolation] = []

    init(_ error: BrokerError, correlationId: String?) {
        status = error.status
        kind = error.kind.rawValue
        detail = error.message
        attribute = error.attribute
        self.correlationId = correlationId
        retryAfter = error.retryAfter
        schemaViolations = error.schemaViolations
    }

    init(status: Int, kind: String, detail: String, correlationId: String?) {
        self.status = status
        self.kind = kind
        self.detail = detail
        self.correlationId = correlationId
    }

    var title: String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        default: status >= 500 ? "Internal Server Error" : "Error"
        }
    }

    func response() -> Response {
        var body: [String: Any] = [
            "type": "urn:sluice:problem:\(kind)", "title": title, "status": status, "detail": detail,
        ]
        if let attribute { body["attribute"] = attribute }
        if let correlationId { body["correlation_id"] = correlationId }
        if !schemaViolations.isEmpty {
            body["errors"] = schemaViolations.map { violation -> [String: Any] in
                ["index": violation.index, "id": violation.eventId, "type": violation.type, "version": violation.version ?? NSNull(),
                 "pointer": violation.instancePath, "keyword": violation.keyword, "schema_path": violation.schemaPath, "message": violation.message]
            }
        }
        var headers: HTTPFields = [.contentType: MediaTypes.problem]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if let correlationId { headers[HTTPField.Name.correlationId] = correlationId }
        if status == 401 { headers[.wwwAuthenticate] = "Bearer realm=\"sluice\"" }
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jsonBytes(body))))
    }
}

func jsonBytes(_ object: Any) -> [UInt8] {
    Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8))
}

func jsonResponse(_ object: Any, status: HTTPResponse.Status = .ok, correlationId: String? = nil) -> Response {
    var headers: HTTPFields = [.contentType: MediaTypes.json]
    if let correlationId { headers[HTTPField.Name.correlationId] = correlationId }
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jsonBytes(object))))
}

/// A response whose body is already-encoded JSON.
func rawJSONResponse(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, correlationId: String? = nil) -> Response {
    var headers: HTTPFields = [.contentType: MediaTypes.json]
    if let correlationId { headers[HTTPField.Name.correlationId] = correlationId }
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}
