"""The legacy API that tests/browser/run.sh puts candor in front of: canned answers by path.

Listens on 127.0.0.1 on a free port and prints the port on its first line. Standard library
only. Every path under /users/ answers the "200 with an error body" that the rule
`user-not-found` turns into a 404, whatever the rest of the path is (the browser test sends a
path with markup in it).
"""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USER_NOT_FOUND = b'{"status":"error","code":1042,"message":"user not found"}'

ROUTES = {
    "/ok": (200, "application/json", b'{"status":"ok"}'),
    "/orders/1": (200, "application/json", b'{"id":1}'),
    "/profile": (404, "text/html", b"<html><h1>No such profile</h1></html>"),
}


class Legacy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path.startswith("/users/"):
            status, content_type, body = 200, "application/json", USER_NOT_FOUND
        else:
            status, content_type, body = ROUTES.get(
                path, (404, "text/plain", b"no such route")
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Legacy)
    print(server.server_address[1], flush=True)
    server.serve_forever()
