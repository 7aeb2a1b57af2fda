"""Synthetic card-transaction features for the reference fraud model and the demo.

The same generator trains the reference model and feeds ``streaminfer produce
--synthetic``, so demo traffic looks like what the model was trained on.
"""

from __future__ import annotations

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "amount", "amount_log", "amount_zscore", "merchant_risk", "merchant_category",
    "hour_of_day", "day_of_week", "is_weekend", "is_night", "card_present",
    "online", "foreign", "distance_km", "distance_log", "account_age_days",
    "card_age_days", "tx_count_5m", "tx_count_1h", "tx_count_24h", "tx_sum_5m",
    "tx_sum_1h", "tx_sum_24h", "avg_amount_30d", "std_amount_30d", "declines_24h",
    "chargebacks_90d", "device_new", "ip_risk", "email_age_days", "velocity_ratio",
)
N_FEATURES = len(FEATURE_NAMES)


def sample_features(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rows of plausible transaction features, float32, columns in FEATURE_NAMES order."""
    amount = rng.lognormal(3.5, 1.1, n)
    avg30 = rng.lognormal(3.5, 0.6, n)
    std30 = avg30 * rng.uniform(0.2, 1.0, n)
    hour = rng.integers(0, 24, n).astype(float)
    dow = rng.integers(0, 7, n).astype(float)
    distance = rng.exponential(20.0, n)
    c5 = rng.poisson(0.3, n).astype(float)
    c1h = c5 + rng.poisson(1.0, n)
    c24 = c1h + rng.poisson(4.0, n)
    cols = [
        amount,
        np.log1p(amount),
        (amount - avg30) / np.maximum(std30, 1e-3),
        rng.beta(1.5, 8.0, n),
        rng.integers(0, 20, n).astype(float),
        hour,
        dow,
        (dow >= 5).astype(float),
        ((hour < 6) | (hour >= 23)).astype(float),
        rng.binomial(1, 0.6, n).astype(float),
        rng.binomial(1, 0.35, n).astype(float),
        rng.binomial(1, 0.05, n).astype(float),
        distance,
        np.log1p(distance),
        rng.exponential(900.0, n),
        rng.exponential(500.0, n),
        c5,
        c1h,
        c24,
        c5 * amount * rng.uniform(0.5, 1.5, n),
        c1h * avg30,
        c24 * avg30,
        avg30,
        std30,
        rng.poisson(0.1, n).astype(float),
        rng.poisson(0.02, n).astype(float),
        rng.binomial(1, 0.08, n).astype(float),
        rng.beta(1.2, 10.0, n),
        rng.exponential(1500.0, n),
        (c1h + 1.0) / (c24 / 24.0 + 1.0),
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def fraud_logit(x: np.ndarray) -> np.ndarray:
    """The hidden rule the labels come from (the model has to learn it)."""
    col = {name: x[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    return (
        -4.0
        + 0.9 * np.clip(col["amount_zscore"], -3, 6)
        + 6.0 * col["merchant_risk"]
        + 1.2 * col["is_night"] * col["online"]
        + 1.5 * col["foreign"]
        + 0.8 * col["tx_count_5m"]
        + 1.0 * col["device_new"]
        + 8.0 * col["ip_risk"]
        + 0.9 * col["declines_24h"]
        - 0.001 * col["account_age_days"]
        + 0.3 * np.log1p(col["velocity_ratio"])
    )


def drifted_logit(x: np.ndarray) -> np.ndarray:
    """A later fraud pattern (for drift demos and tests): card-not-present spending far
    from home on new cards, online and abroad, while IP and merchant risk stop mattering."""
    col = {name: x[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    return (
        -4.5
        + 3.0 * col["online"] * col["foreign"]
        + 1.6 * np.log1p(col["distance_km"]) * (1.0 - col["card_present"])
        + 2.0 * (col["card_age_days"] < 60)
        + 0.6 * col["tx_count_5m"]
        - 0.002 * col["email_age_days"]
        + 1.0 * col["is_weekend"]
    )


def fraud_probability(x: np.ndarray, drift: float = 0.0) -> np.ndarray:
    """P(fraud) of each row: the original rule, moved ``drift`` (0..1) toward the later one."""
    logit = (1.0 - drift) * fraud_logit(x) + drift * drifted_logit(x)
    return 1.0 / (1.0 + np.exp(-logit))


def sample_labelled(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 fraud labels drawn from the hidden rule."""
    x = sample_features(rng, n)
    p = 1.0 / (1.0 + np.exp(-fraud_logit(x)))
    y = (rng.uniform(size=n) < p).astype(np.float32)
    return x, y
