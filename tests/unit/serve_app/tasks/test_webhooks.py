"""Webhook signing secrets: one per tenant, stable, in the form Standard Webhooks reads."""

from __future__ import annotations

from serve_app.tasks.webhooks import tenant_secret


def test_tenant_secrets_are_per_tenant_and_stable():
    a = tenant_secret("key", "tenant-a")
    assert a.startswith("whsec_") and a == tenant_secret("key", "tenant-a")
    assert a != tenant_secret("key", "tenant-b") != tenant_secret("other", "tenant-a")
    from standardwebhooks.webhooks import Webhook

    Webhook(a)  # the library accepts it as a secret
