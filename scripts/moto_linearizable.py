#!/usr/bin/env python3
"""moto's server with every request applied one at a time (linearizable).

Stock `moto_server` answers each request on its own thread, and moto's
DynamoDB model takes no lock: two concurrent conditional writes on one item
version can both pass their condition and both apply, which real DynamoDB
never allows (measured with plain boto3: 16 concurrent conditional UpdateItems
on one version had more than one winner in 3 of 40 rounds). lynk's tests check
exactly that contract, so they run moto through this launcher instead.

It serves the same WSGI application `moto_server` builds
(`DomainDispatcherApplication(create_backend_app)` with `MotoRequestHandler`,
threaded, HTTP/1.1 keep-alive), behind a middleware that holds one global lock
while moto handles a request and produces its whole response. The request body
is read in full *before* the lock is taken, and the response is written to the
socket *after* it is released, so a slow or stalled client connection never
blocks the others; only moto's own processing is serialized.

Usage (run with the venv's python from scripts/install-test-servers.sh):

    .tools/venv/bin/python scripts/moto_linearizable.py [-H 127.0.0.1] [-p PORT]

It binds to 127.0.0.1 by default (loopback only) and to a free port with
`-p 0`. Once listening it prints `moto_linearizable: Running on
http://HOST:PORT` on stderr. SIGTERM and SIGINT stop it.
"""

import argparse
import io
import os
import signal
import sys
import threading


class Linearizable:
    """WSGI middleware: one request at a time through `app`."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        # 1. Read the whole request body outside the lock.
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH") or ""
        if length.strip().isdigit():
            body = stream.read(int(length))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read()  # chunked: werkzeug ends the stream for us
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

        # 2. Let moto handle it and produce the complete response under the lock.
        captured = {}
        written = []

        def capture(status, headers, exc_info=None):
            captured["args"] = (status, headers, exc_info)
            return written.append

        with self.lock:
            result = self.app(environ, capture)
            try:
                chunks = [bytes(c) for c in result]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        # 3. Send it outside the lock.
        status, headers, exc_info = captured["args"]
        write = start_response(status, headers, exc_info)
        for chunk in written:
            write(chunk)
        return chunks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port (0: a free one)")
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    def stop(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto_server
    server = make_server(
        args.host,
        args.port,
        Linearizable(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    host, port = server.server_address[:2]
    # moto builds some URLs (e.g. S3 presigned) from MOTO_PORT, as moto_server sets it.
    os.environ.setdefault("MOTO_PORT", str(port))
    print(f"moto_linearizable: Running on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
