"""How the example services get their listening socket, shared by participant.py and consumers.py.

Started by hand, a service binds --port. Started by examples/run.py, it is handed a socket that run.py bound
already (--fd): run.py picks every port before anything starts, so no other program (Sluice's own listeners on
port 0, for one) can take a service's port between the pick and the bind.
"""
import socket
from http.server import ThreadingHTTPServer


def add_arguments(parser):
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT")
    where.add_argument("--fd", type=int, help="listen on this inherited, already bound socket")


def server(args, handler):
    """A ThreadingHTTPServer on --port, or on the socket --fd (bound by the parent, not yet listening)."""
    if args.fd is None:
        return ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    http.socket.close()
    http.socket = socket.socket(fileno=args.fd)
    http.server_address = http.socket.getsockname()[:2]
    http.server_activate()
    return http
