import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request body has not fully arrived `timeout` after its head, so that a body announced
/// but never sent cannot hold a connection (and a file descriptor) forever. Idle connections and slow heads are
/// closed by Hummingbird's idle timeout; this covers the time between a head and its end.
final class RequestBodyDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    private let logger: Logger
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            deadline?.cancel()
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            let logger = logger
            let path = head.path ?? ""
            let millis = timeout.nanoseconds / 1_000_000
            deadline = context.eventLoop.scheduleTask(in: timeout) {
                logger.warning("closing a connection whose request body did not arrive within http.body.timeout.ms",
                               metadata: ["url.path": .string(path), "http.body.timeout.ms": .stringConvertible(millis)])
                bound.value.close(promise: nil)
            }
        case .end:
            deadline?.cancel()
            deadline = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}
