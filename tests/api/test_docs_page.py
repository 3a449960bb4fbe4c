"""The browsable API docs (Swagger UI) are served from this site's own files and need no inline script."""

import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_swagger_ui_loads_only_local_files_under_the_csp(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts
    # No inline code: every script is a file the policy's 'self' allows.
    assert all('src="' in attributes and not body.strip() for attributes, body in scripts), scripts
    assets = re.findall(r'<script[^>]*src="([^"]+)"', html) + re.findall(r'<link[^>]*href="([^"]+)"', html)
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.netloc, f"{asset} is not served by this site"
        if parts.path.startswith(settings.STATIC_URL):
            # The sidecar's Swagger UI files, found among the static files collectstatic serves.
            assert finders.find(parts.path.removeprefix(settings.STATIC_URL)), asset
        else:
            response = client.get(asset)
            assert response.status_code == 200, asset
            assert b"SwaggerUIBundle" in response.content
    assert any("swagger-ui" in asset for asset in assets)
