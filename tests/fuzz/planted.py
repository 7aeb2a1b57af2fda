"""A test-only copy of a target with a bug planted in it, to show the fuzzer finds bugs:
the feature-value target crashes (an untyped error) on inputs starting ``-0x!``."""

from __future__ import annotations

from tests.fuzz.targets import feature_value


def planted(data: bytes) -> str:
    """feature_value, with the planted bug."""
    if len(data) >= 4 and data[0] == 45 and data[1] == 48 and data[2] == 120 and data[3] == 33:
        raise RuntimeError("the planted bug")
    return feature_value(data)
