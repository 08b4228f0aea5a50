import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// One of the agent's HTTP listeners: a Hummingbird router behind Hummingbird's HTTP/1 server, run as a service
/// of the agent's own group.
///
/// It answers a request as Hummingbird's `Application.run()` does (the router's response, `Date` and `Server`
/// headers, 500 for an error the router did not turn into a response), without what `run()` costs each start:
/// a service group of its own, whose unnamed services ServiceLifecycle names by printing them by reflection, and a
/// `Date` header made with Foundation's `Calendar`, whose first use reads ICU's time-zone tables (~1.5 ms and
/// ~0.5 MiB of resident data). Nor does it make a logger per request for Hummingbird's request ids: Sluice's own
/// lines carry correlation ids.
struct HTTPListener<Responder: HTTPResponder>: Service
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    let responder: Responder
    let server: HTTPServerBuilder
    let configuration: ServerConfiguration
    let logger: Logger
    let onServerRunning: @Sendable (any Channel) async -> Void

    func run() async throws {
        let responder = responder, logger = logger, serverName = configuration.serverName
        let service = try server.buildServer(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                             logger: logger) { request, writer, channel in
            let context = Responder.Context(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                throw error  // the connection answers 400 and closes
            } catch {
                logger.debug("unrecognised error", metadata: ["error.type": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = HTTPDate.now
            if let serverName { response.headers[.server] = serverName }
            do {
                try await writer.write(response: response.head, body: response.body)
            } catch is HTTPParserError {
                // The next request on the connection did not parse while this response was written: close the
                // connection without a second (400) response.
                throw ResponseInterrupted()
            }
        } onServerRunning: { await onServerRunning($0) }
        try await service.run()
    }

    struct ResponseInterrupted: Error {}
}

/// The `Date` response header (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), formatted with libc's
/// `gmtime_r` at most once per second.
enum HTTPDate {
    private static let cache = Mutex<(second: time_t, text: String)>((-1, ""))

    static var now: String {
        let second = time(nil)
        return cache.withLock { cache in
            if cache.second != second { cache = (second, format(second)) }
            return cache.text
        }
    }

    static func format(_ second: time_t) -> String {
        var seconds = second
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
