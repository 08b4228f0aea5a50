import Hummingbird
import NIOCore

/// The request context of the API: Hummingbird's basic one plus the client's address, which the log lines of
/// operator actions (offset resets, subscription rewinds) name.
struct AgentRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    /// The connection's peer; read when a handler asks, so requests that never do pay nothing for it.
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    var remoteAddress: SocketAddress? { channel.remoteAddress }

    /// `127.0.0.1:50412`, or "unknown" when the connection is gone.
    var clientAddress: String {
        guard let address = remoteAddress, let ip = address.ipAddress else { return "unknown" }
        return address.port.map { "\(ip):\($0)" } ?? ip
    }
}
