"""Field-level encryption of sensitive request features (AES-GCM, rotating keys).

The producer client moves the features a model's ``features.json`` names as sensitive
out of the request's clear ``features`` map into the ``sealed`` field, encrypted with the
key ring's primary key; only the worker, holding the key ring, opens them, and only in
memory. Everything that copies request bytes (the requests topic, MirrorMaker, dead
letters, backups) holds ciphertext. See docs/security.md, "Field-level encryption".
"""

from processors.sealing.envelope import (
    KEY_ID_HEADER,
    SealedFieldsError,
    open_sealed,
    seal_features,
)
from processors.sealing.keyring import FileKeySource, Keyring, KeyringError, KeySource

__all__ = ["KEY_ID_HEADER", "FileKeySource", "KeySource", "Keyring", "KeyringError",
           "SealedFieldsError", "open_sealed", "seal_features"]
