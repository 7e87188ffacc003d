# The demo's web tier (scripts/demo): a Flask app that counts its visits in the redis tier, found at
# REDIS_HOST. It listens on port 5000 at once and reaches redis only per request, so it also runs (and
# `corral compare --image demo-web --ready-port 5000` measures it) where no redis is. Behind the demo's load
# balancer it answers POST too (the "attack" is a POST: its body is what the L7 firewall reads) and /health.
import os
import socket

import redis
from flask import Flask

app = Flask(__name__)
redis_host = os.environ.get("REDIS_HOST", "127.0.0.1")
store = redis.Redis(host=redis_host, port=6379, socket_connect_timeout=2, socket_timeout=2)


@app.route("/", methods=["GET", "POST"])
def visit():
    try:
        count = store.incr("visits")
    except redis.RedisError as error:
        return f"web tier {socket.gethostname()}: redis at {redis_host} did not answer: {error}\n", 503
    return f"hello from the web tier {socket.gethostname()}: visit number {count}, counted by redis at {redis_host}\n"


# The load balancer's health check: whether this member serves, not whether redis does (a check that
# followed redis would take every member out of the target group, and the group would replace them all,
# whenever redis is slow).
@app.route("/health")
def health():
    return "ok\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
