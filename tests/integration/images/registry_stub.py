#!/usr/bin/python3
"""A registry stub for corral's image tests: serves an OCI image layout over the distribution API, on
127.0.0.1 only, and misbehaves on request (a corrupt or truncated blob, a stalled blob, a bearer-token
challenge, blobs redirected to another path), which a real registry cannot be made to do.

usage: registry_stub.py LAYOUT [--bearer] [--redirect] [--corrupt DIGEST] [--truncate DIGEST] [--stall DIGEST]
Prints "listening PORT" once bound."""
import argparse
import http.server
import json
import os
import sys
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("layout")
parser.add_argument("--bearer", action="store_true")
parser.add_argument("--redirect", action="store_true")
parser.add_argument("--corrupt", default="")
parser.add_argument("--truncate", default="")
parser.add_argument("--stall", default="")
args = parser.parse_args()
TOKEN = "stub-token-0123"


def blob_path(digest):
    algorithm, _, hexdigits = digest.partition(":")
    if not hexdigits or "/" in hexdigits or ".." in hexdigits:
        return None
    path = os.path.join(args.layout, "blobs", algorithm, hexdigits)
    return path if os.path.isfile(path) else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *unused):
        pass

    def send(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self, repository):
        if not args.bearer or self.headers.get("Authorization") == "Bearer " + TOKEN:
            return True
        port = self.server.server_address[1]
        challenge = 'Bearer realm="http://127.0.0.1:%d/token",service="stub",scope="repository:%s:pull"' % (
            port, repository)
        self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}',
                  {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
        return False

    def do_GET(self):
        path = self.path
        if path.startswith("/token"):
            if "scope=repository%3A" not in path or "service=stub" not in path:
                return self.send(400, b'{"errors":[{"code":"DENIED","message":"bad token request"}]}')
            return self.send(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
        if path.startswith("/storage/"):
            return self.serve_blob(path[len("/storage/"):])
        if not path.startswith("/v2/"):
            return self.send(404)
        rest = path[len("/v2/"):]
        for kind in ("/manifests/", "/blobs/"):
            if kind in rest:
                repository, _, reference = rest.partition(kind)
                if not self.authorized(repository):
                    return
                if kind == "/blobs/":
                    if args.redirect:
                        return self.send(307, b"", {"Location": "/storage/" + reference})
                    return self.serve_blob(reference)
                return self.serve_manifest(reference)
        return self.send(404)

    def serve_manifest(self, reference):
        with open(os.path.join(args.layout, "index.json")) as f:
            index = json.load(f)
        for entry in index["manifests"]:
            name = entry.get("annotations", {}).get("org.opencontainers.image.ref.name")
            if reference in (name, entry["digest"]):
                with open(blob_path(entry["digest"]), "rb") as f:
                    body = f.read()
                return self.send(200, body, {"Content-Type": entry["mediaType"], "Docker-Content-Digest": entry["digest"]})
        path = blob_path(reference) if reference.startswith("sha256:") else None
        if path:
            with open(path, "rb") as f:
                body = f.read()
            media = json.loads(body).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
            return self.send(200, body, {"Content-Type": media})
        self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}',
                  {"Content-Type": "application/json"})

    def serve_blob(self, digest):
        path = blob_path(digest)
        if not path:
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        with open(path, "rb") as f:
            body = bytearray(f.read())
        if digest == args.corrupt:
            body[len(body) // 2] ^= 0x5A
        if digest in (args.truncate, args.stall):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(bytes(body[: len(body) // 2]))
            self.wfile.flush()
            if digest == args.stall:
                print("stalled " + digest, flush=True)
                time.sleep(3600)
            self.close_connection = True
            return
        self.send(200, bytes(body), {"Content-Type": "application/octet-stream"})


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print("listening %d" % server.server_address[1], flush=True)
server.serve_forever()
