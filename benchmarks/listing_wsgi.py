"""WSGI entry point for the listing benchmark: the portal, plus one static file served by the same gunicorn.

`/bench-static/portal.css` returns static/css/portal.css read from disk on
every request, the cheapest response a Python WSGI server gives; every other
path goes to the portal.
"""

from pathlib import Path

from portal.wsgi import application as portal_application

STATIC_FILE = Path(__file__).resolve().parent.parent / "static" / "css" / "portal.css"


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/bench-static/portal.css":
        body = STATIC_FILE.read_bytes()
        start_response("200 OK", [("Content-Type", "text/css"), ("Content-Length", str(len(body)))])
        return [body]
    return portal_application(environ, start_response)
