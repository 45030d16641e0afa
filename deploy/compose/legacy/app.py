"""A small legacy API with the habits candor exists to fix.

Every endpoint answers the way a lot of real APIs do: errors inside 200 responses, Flask's
default HTML error pages sent to JSON clients, a stack trace in a 500, a 429 without
Retry-After, a request that hangs. candor sits in front of it in deploy/compose/compose.yaml,
and deploy/prometheus/e2e.sh uses it as the upstream that Prometheus watches candor rewrite.

Run it alone with `gunicorn --bind 127.0.0.1:5000 app:app` (or `python app.py`).
"""

import time
import traceback

from flask import Flask, Response, abort, jsonify, request

app = Flask(__name__)

USERS = {42: {"id": 42, "name": "Ada"}}
ORDERS = {1: {"id": 1, "quantity": 3}}


@app.get("/users/<int:user_id>")
def get_user(user_id):
    user = USERS.get(user_id)
    if user is None:
        # The classic: an error, reported with 200 OK.
        return jsonify(status="error", code=1042, message=f"no user with id {user_id}")
    return jsonify(status="ok", data=user)


@app.delete("/users/<int:user_id>")
def delete_user(user_id):
    # "Deleted": 200 with an empty object instead of 204. (The demo keeps its data, so that
    # every request can be repeated.)
    return jsonify({})


@app.post("/orders")
def create_order():
    body = request.get_json(silent=True) or {}
    quantity = body.get("quantity")
    if not isinstance(quantity, int) or quantity < 1:
        # Validation failed, and the status says it worked.
        return jsonify(
            status="error",
            errors=[{"field": "quantity", "message": "must be a positive integer"}],
        )
    order = {"id": max(ORDERS) + 1, "quantity": quantity}
    ORDERS[order["id"]] = order
    return jsonify(status="ok", data=order)


@app.get("/orders/<int:order_id>")
def get_order(order_id):
    # A missing entity is a null, with 200.
    return jsonify(data=ORDERS.get(order_id))


@app.get("/reports/daily")
def daily_report():
    # Rate limited, said in the body of a 200.
    return jsonify(error="rate_limited", retry_in=30)


@app.get("/payments/<int:payment_id>")
def get_payment(payment_id):
    # The real status travels in the body.
    return jsonify(http_status=503, message="payment provider unavailable")


@app.get("/profile")
def profile():
    # Flask's default HTML 404 page, whatever the client asked for.
    abort(404)


@app.get("/export")
def export():
    try:
        raise RuntimeError("connection to 10.0.3.7:5432 refused")
    except RuntimeError:
        # A stack trace with file paths and a private address, sent to the client.
        return Response(traceback.format_exc(), status=500, mimetype="text/plain")


@app.get("/search")
def search():
    # Too many requests, but no word on when to come back.
    return jsonify(error="slow down"), 429


@app.get("/slow")
def slow():
    # Hangs far longer than candor's upstream.timeout.
    time.sleep(float(request.args.get("seconds", "60")))
    return jsonify(status="ok")


@app.get("/health")
def health():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
