"""``/docs``: Swagger UI served from the ``swagger-ui-bundle`` package, never a CDN, so it
renders offline; checked in a real headless Chromium that cannot reach any other host."""

from __future__ import annotations

import base64
import re
from urllib.parse import urlsplit

import httpx

from lmtwin.service import Settings
from tests.service.support import Chromium, client, live_server, wait_for

ADMIN = "docs-admin-key-0123456789abcdef"
# every host but the local server resolves to nothing, and anything that still tries the
# network goes to a proxy that refuses (port 9, discard); loopback bypasses the proxy
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--proxy-server=http://127.0.0.1:9"]


def asset_urls(html: str) -> list[str]:
    return re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)


def test_docs_page_uses_only_local_assets(tmp_path):
    with client(Settings(store=str(tmp_path / "d.db"), admin_key=ADMIN)) as c:
        page = c.get("/docs")  # no key: public, as FastAPI's default /docs was
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = asset_urls(page.text)
        assert len(urls) == 3  # the stylesheet, the favicon, the script
        assert "cdn" not in page.text.lower()
        for url in urls:
            assert not urlsplit(url).scheme and not urlsplit(url).netloc, url
            assert url.startswith("/docs-assets/"), url
        # swagger-ui-bundle's Swagger UI 4 reads the description labelled 3.0.3; the
        # API's own /openapi.json stays as FastAPI writes it (3.1)
        assert "url: '/docs/openapi.json'" in page.text
        spec, shown = c.get("/openapi.json").json(), c.get("/docs/openapi.json").json()
        assert spec["openapi"].startswith("3.1") and shown["openapi"] == "3.0.3"
        assert {**shown, "openapi": spec["openapi"]} == spec
        sizes = {}
        for url in urls:
            asset = c.get(url)  # no key either
            assert asset.status_code == 200, url
            sizes[url.rsplit("/", 1)[1]] = len(asset.content)
        assert sizes["swagger-ui-bundle.js"] > 500_000
        assert sizes["swagger-ui.css"] > 50_000
        assert c.get("/docs-assets/swagger-ui-bundle.js").headers["content-type"].startswith(
            "text/javascript")
        assert c.get("/docs-assets/missing.js").status_code == 404
        # the docs routes stay out of the API description; the API itself still needs a key
        assert not [p for p in spec["paths"] if p.startswith("/docs")]
        assert c.get("/twins/plant").status_code == 401


def test_docs_render_offline_in_chromium(tmp_path):
    browser = Chromium(tmp_path / "profile", OFFLINE)
    try:
        with live_server(Settings(store=str(tmp_path / "d.db"), admin_key=ADMIN)) as url:
            browser.page("Page.navigate", url=f"{url}/docs")
            wait_for(lambda: browser.eval(
                "document.querySelectorAll('.opblock').length > 5"), timeout=30)
            paths = browser.eval("[...document.querySelectorAll('.opblock')]"
                                 ".map(b => b.querySelector('.opblock-summary-path')"
                                 "?.textContent.replace(/\\u200b/g, ''))")
            assert "/twins" in paths and "/twins/{name}/predict" in paths
            assert browser.eval("document.querySelector('.info .title').textContent"
                                ).startswith("lmtwin")
            assert "Unable to render" not in browser.eval("document.body.innerText")
            # everything the page fetched came from the local server
            fetched = browser.eval("[...performance.getEntriesByType('resource')]"
                                   ".map(e => e.name)")
            assert fetched and all(f.startswith(url + "/") for f in fetched), fetched
            assert {urlsplit(f).path for f in fetched} >= {
                "/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css",
                "/docs/openapi.json"}
            # the isolation is real: another host cannot be reached from this browser
            probe = browser.page(
                "Runtime.evaluate", awaitPromise=True, returnByValue=True,
                expression="fetch('https://cdn.jsdelivr.net/', {mode: 'no-cors'})"
                           ".then(() => 'reached', () => 'refused')")
            assert probe["result"]["value"] == "refused"
            shot = browser.page("Page.captureScreenshot", format="png")
            png = base64.b64decode(shot["data"])
            (tmp_path / "docs.png").write_bytes(png)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            assert httpx.get(f"{url}/docs").status_code == 200
            browser.page("Page.navigate", url="about:blank")
    finally:
        browser.close()
