"""The dashboard's files (/ui/, embedded in the binary) and its history view (/v1/cluster/history): gzip when
accepted, ETag revalidation (304), a strict Content-Security-Policy, redirects to /ui/, the page open to
anyone but its data as guarded as the other views."""

import gzip
import json
import re
import time

import pytest

from conftest import READ_TOKEN, chat_body, http_request, post_json, wait_for

ADMIN = "ui-admin-token"
KEY = "sk-ui-tenant-key"


def get(port, path, **headers):
    return http_request(port, "GET", path, headers=headers)


@pytest.mark.timeout(60)
def test_assets_gzip_etag_csp_and_redirects(procs):
    ag = procs.agent([procs.engine()])
    plain = get(ag.port, "/ui/")
    assert plain.status == 200, plain
    assert plain.headers["content-type"].startswith("text/html")
    assert "content-encoding" not in plain.headers
    assert b'<script type="module" src="app.js">' in plain.body
    csp = plain.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert plain.headers["x-content-type-options"] == "nosniff"
    etag = plain.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{20}"', etag), etag

    # gzip when the client accepts it: the same bytes, fewer of them; not when it refuses it (q=0).
    gz = get(ag.port, "/ui/", **{"Accept-Encoding": "br, gzip;q=0.8"})
    assert gz.headers.get("content-encoding") == "gzip" and gz.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(gz.body) == plain.body and len(gz.body) < len(plain.body)
    assert gz.headers["etag"] == etag
    assert "content-encoding" not in get(ag.port, "/ui/", **{"Accept-Encoding": "gzip;q=0"}).headers

    # Revalidation: 304 without a body for the current ETag (also in a list, or weak), 200 for another.
    for inm in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        r = get(ag.port, "/ui/", **{"If-None-Match": inm})
        assert r.status == 304 and r.body == b"" and r.headers["etag"] == etag, (inm, r)
    assert get(ag.port, "/ui/", **{"If-None-Match": '"0000"'}).status == 200

    # Every module the page loads is there, with a JavaScript type; uPlot is embedded, not fetched.
    for name in ("app.js", "api.js", "dom.js", "mesh.js", "charts.js", "vendor/uPlot.esm.js"):
        r = get(ag.port, "/ui/" + name)
        assert r.status == 200 and r.headers["content-type"].startswith("text/javascript"), (name, r)
        assert b"http://" not in r.body.replace(b"http://www.w3.org/2000/svg", b"") or name.startswith("vendor")
    assert get(ag.port, "/ui/vendor/uPlot.min.css").headers["content-type"].startswith("text/css")
    assert get(ag.port, "/ui/nothing.js").status == 404
    assert get(ag.port, "/ui/../README.md").status == 404
    head = http_request(ag.port, "HEAD", "/ui/app.js")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0

    for path in ("/", "/ui", "/dashboard"):
        r = get(ag.port, path)
        assert r.status == 302 and r.headers["location"] == "/ui/", (path, r)
    # The page is read-only: no method but GET/HEAD.
    assert http_request(ag.port, "POST", "/ui/", body=b"").status == 405


@pytest.mark.timeout(60)
def test_first_load_is_small(procs):
    """Everything the page loads at first (gzip-encoded) stays under 300 KB."""
    ag = procs.agent([procs.engine()])
    total = 0
    for name in ("", "app.css", "vendor/uPlot.min.css", "app.js", "api.js", "dom.js", "mesh.js", "charts.js",
                 "vendor/uPlot.esm.js"):
        r = get(ag.port, "/ui/" + name, **{"Accept-Encoding": "gzip"})
        assert r.status == 200, (name, r)
        total += len(r.body) + 300  # and its response head, roughly
    assert total < 300 * 1024, total


@pytest.mark.timeout(60)
def test_history_counts_traffic_per_second(procs):
    e = procs.engine()
    ag = procs.agent([e])
    for i in range(5):
        assert post_json(ag.port, "/v1/chat/completions", chat_body(f"hello {i}")).status == 200

    def sampled():
        h = get(ag.port, "/v1/cluster/history").json()
        return sum(v or 0 for v in h["node"]["reqs_s"]) >= 5 and h

    h = wait_for(sampled, timeout=5, what="five requests in the history")
    assert h["interval_s"] == 1 and abs(h["end_ms"] / 1000 - time.time()) < 5
    (t,) = h["targets"]
    assert t["name"] == f"127.0.0.1:{e.port}" and t["n"] == h["node"]["n"] > 0
    assert t["healthy"][-1] == 1 and sum(v or 0 for v in t["routed_s"]) == 5
    assert any(v is not None for v in h["node"]["ttft_p50"])
    # ?since: only newer samples.
    later = get(ag.port, f"/v1/cluster/history?since={h['end_ms']}").json()
    assert later["node"]["n"] == (later["end_ms"] - h["end_ms"]) // 1000
    assert get(ag.port, "/v1/cluster/history?since=abc").status == 400


@pytest.mark.timeout(60)
def test_page_is_open_but_its_data_needs_a_token(procs):
    ag = procs.agent([procs.engine()], "--tenant", f"name=team,key={KEY}", "--admin-token", ADMIN)
    # The page itself needs nothing (it asks for a token); its data does, like every view.
    assert get(ag.port, "/ui/").status == 200
    assert get(ag.port, "/ui/app.js").status == 200
    assert get(ag.port, "/v1/cluster/history").status == 401
    assert get(ag.port, "/v1/cluster/history", Authorization=f"Bearer {KEY}").status == 403
    assert get(ag.port, "/v1/cluster/history", Authorization="Bearer wrong").status == 401
    for tok in (READ_TOKEN, ADMIN):
        r = get(ag.port, "/v1/cluster/history", Authorization=f"Bearer {tok}")
        assert r.status == 200 and "node" in r.json(), r
    assert http_request(ag.port, "POST", "/v1/cluster/history", body=b"",
                        headers={"Authorization": f"Bearer {ADMIN}"}).status == 405
