"""Webhooks: the tenant's signing secret, to verify deliveries with any Standard Webhooks
library."""

from fastapi import APIRouter, Depends

from serve_app.api.deps import authenticate, gateway
from serve_app.api.gateway import Gateway
from serve_app.wire.schema import WebhookSecret

router = APIRouter()


@router.get("/v1/webhooks/secret", response_model=WebhookSecret)
async def webhook_secret(tenant: str = Depends(authenticate), gw: Gateway = Depends(gateway)):
    return WebhookSecret(key=await gw.tasks.webhook_secret(tenant))
