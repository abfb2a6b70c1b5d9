"""moto's AWS-protocol server with its request handling serialised.

moto is not safe under concurrent requests: two threads can both pass a conditional check
before either writes. A global lock around each request (including reading its response)
makes every request atomic, as DynamoDB's are, so concurrency tests prove something.

The server exits when its standard input closes, so it never outlives the process that
started it (a test binary, or leadflow-local).
"""

import argparse
import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class Serialised:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()


def exit_when_parent_goes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args()
    if args.watch_stdin:
        threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
