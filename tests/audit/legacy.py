#!/usr/bin/env python3
"""A legacy API written for the audit tests: every lie audit detects on some routes, honest
answers on others. Standard library only. Prints its port on the first line of stdout.

Ids at or above 1000 are the ones that do not exist, so other ids (unseen by a test) give
other bodies of the same shape.
"""
import itertools
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NEXT_ID = itertools.count(77)

INDEX = b"""<!doctype html><html><head><title>Legacy API</title></head>
<body><h1>Legacy API</h1></body></html>"""

TRACEBACK = """Traceback (most recent call last):
  File "/srv/legacy/app/reports.py", line 42, in render
    row = rows[report_id]
KeyError: %s
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "legacy/1.0"

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", content_type=None, headers=()):
        if isinstance(body, (dict, list)) or body is None:
            body = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def route(self):
        path = self.path.split("?", 1)[0]
        method = self.command
        body = self.read_body() if method in ("POST", "PUT", "PATCH") else {}
        m = re.fullmatch(r"/users/(\d+)", path)
        if m and method == "GET":
            uid = int(m.group(1))
            if uid >= 1000:
                return self.send(200, {"status": "error", "message": f"user {uid} not found"})
            return self.send(200, {"status": "ok", "data": {"id": uid, "name": f"user {uid}"}})
        m = re.fullmatch(r"/orders/(\d+)", path)
        if m and method == "GET":
            oid = int(m.group(1))
            if oid >= 1000:
                return self.send(200, {"code": 404, "message": f"order {oid} is missing"})
            return self.send(200, {"id": oid, "total": oid * 3})
        m = re.fullmatch(r"/profiles/(\d+)", path)
        if m and method == "GET":
            pid = int(m.group(1))
            if pid >= 1000:
                return self.send(200, {"data": None})
            return self.send(200, {"data": {"id": pid, "bio": "hello"}})
        if path == "/accounts" and method == "POST":
            return self.send(200, {"id": next(NEXT_ID), "name": body.get("name", "anon")})
        if re.fullmatch(r"/sessions/\d+", path) and method == "DELETE":
            return self.send(200, b"")
        if path == "/settings" and method == "PUT":
            return self.send(200, b"")
        m = re.fullmatch(r"/legacy/pages/(\d+)", path)
        if m and method == "GET":
            page = f"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>{m.group(1)}</p></body></html>"
            return self.send(404, page, "text/html; charset=utf-8")
        m = re.fullmatch(r"/promo/(\d+)", path)
        if m and method == "GET":
            if int(m.group(1)) < 1000:
                return self.send(200, "<html><head><title>Spring sale</title></head><body><h1>Spring sale</h1></body></html>", "text/html; charset=utf-8")
            return self.send(200, "<html><head><title>Page Not Found</title></head><body><h1>Sorry</h1></body></html>", "text/html; charset=utf-8")
        m = re.fullmatch(r"/reports/(\d+)", path)
        if m and method == "GET":
            return self.send(500, TRACEBACK % m.group(1), "text/plain; charset=utf-8")
        if path == "/signup" and method == "POST":
            if not body.get("email"):
                return self.send(500, {"error": "email is required"})
            return self.send(500, {"error": "password must be at least 8 characters"})
        m = re.fullmatch(r"/inventory/(\d+)", path)
        if m and method == "GET":
            if int(m.group(1)) >= 1000:
                return self.send(500, {"error": "warehouse upstream timed out"})
            return self.send(500, {"error": "database connection refused"})
        if path == "/busy" and method == "GET":
            return self.send(503, "try again later", "text/plain")
        if path == "/admin/stats" and method == "GET":
            return self.send(403, {"error": "forbidden"})
        m = re.fullmatch(r"/items/(\d+)", path)
        if m and method == "GET":
            return self.send(200, {"id": int(m.group(1)), "name": "pen"})
        if m and method == "DELETE":
            return self.send(405, b"")
        # Honest routes.
        if path == "/" and method == "GET":
            return self.send(200, INDEX, "text/html; charset=utf-8")
        if path == "/favicon.ico":
            return self.send(204)
        if path == "/healthz" and method == "GET":
            return self.send(200, "ok", "text/plain")
        if path == "/catalog" and method == "GET":
            return self.send(200, {"items": [{"id": 1}, {"id": 2}], "errors": [], "success": True})
        m = re.fullmatch(r"/carts/(\d+)/items", path)
        if m and method == "POST":
            item = next(NEXT_ID)
            return self.send(201, {"id": item}, headers=[("Location", f"{path}/{item}")])
        m = re.fullmatch(r"/carts/(\d+)", path)
        if m and method == "DELETE":
            return self.send(204)
        if path.startswith("/missing/"):
            return self.send(404, {"type": "about:blank", "title": "Not Found", "status": 404}, "application/problem+json")
        return self.send(404, {"type": "about:blank", "title": "Not Found", "status": 404}, "application/problem+json")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = route


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
