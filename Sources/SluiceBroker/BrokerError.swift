/// A broker error with the HTTP status it maps to and a message that says what to fix.
public struct BrokerError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        case badRequest = "bad_request"
        case unauthorized
        case notFound = "not_found"
        case conflict
        case payloadTooLarge = "payload_too_large"
        case unsupportedMediaType = "unsupported_media_type"
        case tooManyRequests = "too_many_requests"
        case requestTimeout = "request_timeout"
        case unavailable
        case insufficientStorage = "insufficient_storage"
        /// Not available on this log backend (yet): the message says what to use instead.
        case notImplemented = "not_implemented"
        case `internal`
    }

    public var kind: Kind
    public var message: String
    /// The CloudEvents attribute or request field at fault, for 400s.
    public var attribute: String?
    /// Seconds after which a retry may succeed, for 429 and 503.
    public var retryAfter: Int?
    /// Every event of a refused publish that failed its schema (the problem body's `errors`).
    public var schemaViolations: [EventSchemaViolation] = []

    public init(_ kind: Kind, _ message: String, attribute: String? = nil, retryAfter: Int? = nil) {
        self.kind = kind
        self.message = message
        self.attribute = attribute
        self.retryAfter = retryAfter
    }

    public static func badRequest(_ message: String, attribute: String?) -> BrokerError {
        BrokerError(.badRequest, message, attribute: attribute)
    }

    public var status: Int {
        switch kind {
        case .badRequest: 400
        case .unauthorized: 401
        case .notFound: 404
        case .conflict: 409
        case .payloadTooLarge: 413
        case .unsupportedMediaType: 415
        case .tooManyRequests: 429
        case .requestTimeout: 408
        case .unavailable: 503
        case .insufficientStorage: 507
        case .notImplemented: 501
        case .internal: 500
        }
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

import SluiceLog

extension BrokerError {
    /// Maps a storage error to what the caller did wrong (or did not).
    public init(_ error: any Error) {
        if let error = error as? BrokerError {
            self = error
            return
        }
        guard let error = error as? LogError else {
            self.init(.internal, "\(error)")
            return
        }
        switch error.code {
        case .invalidName, .invalidConfig, .invalidBatch: self.init(.badRequest, error.message)
        case .unknownTopic, .unknownPartition: self.init(.notFound, error.message)
        case .topicExists: self.init(.conflict, error.message)
        case .batchTooLarge: self.init(.payloadTooLarge, error.message)
        case .offsetOutOfRange: self.init(.notFound, error.message)
        case .closed: self.init(.unavailable, "the agent is shutting down; retry against the restarted agent", retryAfter: 1)
        case .tooManyFiles: self.init(.insufficientStorage, error.message)
        case .io where error.isNoSpace:
            self.init(.insufficientStorage, "the data directory's file system is full (\(error.message)); nothing of this request was kept: free space and retry", retryAfter: 5)
        case .corruptBatch, .io: self.init(.internal, error.message)
        }
    }
}
