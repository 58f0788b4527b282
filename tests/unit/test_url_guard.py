"""The image-URL guard as the input path calls it."""

from __future__ import annotations

import pytest


def test_url_guard_refuses_private_addresses():
    from serve_app.core.errors import ForbiddenURLError
    from serve_app.core.netguard import resolve as check_url_allowed

    for url in ("http://127.0.0.1/x.png", "http://10.1.2.3/x.png", "http://169.254.169.254/",
                "http://[::1]/x.png", "http://192.168.0.1/", "file:///etc/passwd"):
        with pytest.raises(ForbiddenURLError):
            check_url_allowed(url, param="image", allow_private=False)
    check_url_allowed("http://127.0.0.1/x.png", param="image", allow_private=True)
