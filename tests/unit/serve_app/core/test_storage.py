"""The local store's signed links under hostile input."""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize("key, signature", [
    ("ûdI", "ûdI"), ("a/b.png", "\x02.\x91ÒÜóF\U000ec915Ëb\U0002c667é"), ("a/b.png", "\udcff"),
    ("a/\udcff.png", "00"), ("a/b.png", "")])
def test_signed_links_refuse_any_signature_without_crashing(tmp_path, key, signature):
    from serve_app.core.errors import InvalidSignatureError
    from serve_app.core.storage import LocalDiskStore

    store = LocalDiskStore(tmp_path / "files", tmp_path / "secret", None)
    with pytest.raises(InvalidSignatureError):
        store.verify("GET", key, 2**40, signature)
