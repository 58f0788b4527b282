"""API keys."""

from __future__ import annotations

import pytest

from serve_app.api.auth import ApiKeys, parse_api_keys
from serve_app.core.errors import AuthenticationError, InvalidRequestError


def test_api_keys(tmp_path):
    assert parse_api_keys("k1=a, k2=b") == {"k1": "a", "k2": "b"}
    with pytest.raises(InvalidRequestError):
        parse_api_keys("k1")
    keys = ApiKeys.from_env(tmp_path, environ={"TESSERA_API_KEYS": "k1=a"})
    assert keys.tenant_for({"authorization": "Bearer k1"}) == "a"
    assert keys.tenant_for({"api-key": "k1"}) == "a"
    with pytest.raises(AuthenticationError):
        keys.tenant_for({"authorization": "Bearer k2"})
    dev = ApiKeys.from_env(tmp_path, environ={})
    key = (tmp_path / "dev_api_key").read_text().strip()
    assert dev.tenant_for({"api_key": key}) == "dev"
    assert ApiKeys.from_env(tmp_path, environ={}).tenant_for({"api_key": key}) == "dev"


def test_the_schemes_hosted_clients_send():
    keys = ApiKeys({"k1": "a"})
    for header in ("Bearer k1", "Token k1", "Key k1", "bearer  k1 "):  # Replicate's, fal's
        assert keys.tenant_for({"authorization": header}) == "a"
    for header in ("Basic k1", "k1", "Bearer", "Key k2"):
        with pytest.raises(AuthenticationError):
            keys.tenant_for({"authorization": header})
