"""The fragile legacy app of benches/fragile/run.sh as gunicorn runs it: 4 sync workers, 20 ms of
work per request, so about 200 requests a second; the rest wait in the accept backlog.

    gunicorn --workers 4 --bind 127.0.0.1:PORT --chdir benches/fragile app:app
"""
import time


def app(environ, start_response):
    time.sleep(0.02)
    body = b'{"ok":true}'
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
