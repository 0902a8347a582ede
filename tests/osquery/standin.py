"""A stand-in for the osquery core, as far as an extension can tell.

It serves the extension manager's Unix socket with the Thrift processor that
Facebook's `osquery` package generates from osquery.thrift (binary protocol,
buffered transport: what osqueryd itself speaks), records what extensions
register, and calls them back through the package's generated `Extension`
client on `<socket>.<uuid>`, as osqueryd does for every query.
"""

import json
import os
import socket
import threading

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport


class ManagerHandler(ExtensionManager.Iface):
    """The core's side of registerExtension, ping and friends."""

    def __init__(self, refuse=None):
        # refuse: (code, message) to answer every registration with.
        self.refuse = refuse
        self.lock = threading.Lock()
        self.registered = threading.Event()
        self.deregistered = threading.Event()
        self.registered_extensions = {}  # uuid -> (InternalExtensionInfo, registry)
        # (not `extensions`: that is the Thrift method below)
        self.deregistrations = []
        self.pings = 0
        self.next_uuid = 24517

    # Extension service (the core answers these too)
    def ping(self):
        with self.lock:
            self.pings += 1
        return ExtensionStatus(code=0, message="pong", uuid=0)

    def call(self, registry, item, request):
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="no core plugins here", uuid=0),
            response=[],
        )

    def shutdown(self):
        pass

    # ExtensionManager service
    def extensions(self):
        with self.lock:
            return {u: info for u, (info, _) in self.registered_extensions.items()}

    def options(self):
        return {}

    def registerExtension(self, info, registry):
        with self.lock:
            if self.refuse is not None:
                code, message = self.refuse
                self.registered.set()
                return ExtensionStatus(code=code, message=message, uuid=0)
            uuid = self.next_uuid
            self.next_uuid += 1
            self.registered_extensions[uuid] = (info, registry)
        self.registered.set()
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def deregisterExtension(self, uuid):
        with self.lock:
            self.deregistrations.append(uuid)
            known = self.registered_extensions.pop(uuid, None) is not None
        self.deregistered.set()
        if not known:
            return ExtensionStatus(code=1, message="No extension UUID registered", uuid=0)
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def query(self, sql):
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="no SQL in the stand-in", uuid=0),
            response=[],
        )

    def getQueryColumns(self, sql):
        return self.query(sql)


class StandIn:
    """Serves the manager socket on a background thread until stop()."""

    def __init__(self, path, refuse=None):
        self.path = path
        self.handler = ManagerHandler(refuse=refuse)
        self.processor = ExtensionManager.Processor(self.handler)
        self.listener = None
        self.stopping = threading.Event()
        self.conns = []
        self.thread = None

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        sock = TSocket.TSocket()
        sock.setHandle(conn)
        trans = TTransport.TBufferedTransport(sock)
        proto = TBinaryProtocol.TBinaryProtocol(trans)
        try:
            while not self.stopping.is_set():
                self.processor.process(proto, proto)
        except (TTransport.TTransportException, OSError, EOFError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        """The core goes away: the socket stops answering and disappears."""
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self.thread is not None:
            self.thread.join(timeout=5)

    # What osquery does with a registered extension
    def only_extension(self):
        with self.handler.lock:
            assert len(self.handler.registered_extensions) == 1, self.handler.registered_extensions
            uuid, (info, registry) = next(iter(self.handler.registered_extensions.items()))
        return uuid, info, registry


class ExtensionConnection:
    """osquery's client to an extension: one connection, as for one query."""

    def __init__(self, manager_path, uuid, timeout=10.0):
        self.path = "%s.%d" % (manager_path, uuid)
        sock = TSocket.TSocket(unix_socket=self.path)
        sock.setTimeout(int(timeout * 1000))
        self.transport = TTransport.TBufferedTransport(sock)
        self.client = Extension.Client(TBinaryProtocol.TBinaryProtocol(self.transport))
        self.transport.open()

    def close(self):
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def ping(self):
        return self.client.ping()

    def generate(self, table, context=None):
        """Like osquery's TablePlugin::generate call: context is the JSON
        string osquery builds from the query's constraints (or a dict)."""
        request = {"action": "generate"}
        if context is not None:
            request["context"] = context if isinstance(context, str) else json.dumps(context)
        return self.client.call("table", table, request)

    def columns(self, table):
        return self.client.call("table", table, {"action": "columns"})

    def shutdown(self):
        return self.client.shutdown()


def eq_context(column, value, affinity="TEXT", cols_used=None):
    """The context osqueryd 5 sends for `WHERE column = 'value'`."""
    ctx = {
        "constraints": [
            {"name": column, "list": [{"op": 2, "expr": str(value)}], "affinity": affinity}
        ]
    }
    if cols_used is not None:
        ctx["colsUsed"] = list(cols_used)
        ctx["colsUsedBitset"] = (1 << len(cols_used)) - 1
    return ctx
