"""Why Kafka refused a client, from what librdkafka reported (its error callback and log
lines, as seen on the real secure stack: test_secure_stack.py)."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaError

from stream.connect.refusals import Refusals, explain
from stream.settings import Settings

BASE = Settings(bootstrap_servers="127.0.0.1:9194", redis_url="redis://127.0.0.1:6379/0")
# The lines librdkafka 2.12 logged against a listener with ssl.client.auth=required.
NO_CERT = ("ssl://127.0.0.1:9194/bootstrap: Receive failed: error:0A00045C:SSL routines::"
           "tlsv13 alert certificate required: SSL alert number 116 (after 4ms in state "
           "APIVERSION_QUERY)")
FOREIGN = ("No matching issuer found in server trusted certificate authorities, not sending "
           "any client certificates")


def _seen(*lines: str) -> Refusals:
    refusals = Refusals()
    for line in lines:
        refusals.log(40, "%s", line)
    return refusals


def test_a_listener_requiring_a_certificate_names_the_settings_to_set() -> None:
    why = _seen(NO_CERT).explain(BASE.model_copy(update={"security_protocol": "SSL"}))
    assert why is not None
    assert "requires a client certificate" in why
    assert "--ssl-certificate-location" in why


def test_a_certificate_from_another_ca_is_named_as_refused() -> None:
    settings = BASE.model_copy(update={"security_protocol": "SSL",
                                       "ssl_certificate_location": Path("/x/mine.crt")})
    why = _seen(FOREIGN, NO_CERT).explain(settings)
    assert why is not None
    assert "refused the client certificate /x/mine.crt" in why
    assert "CA" in why


def test_a_wrong_password_is_still_named_first() -> None:
    err = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid")
    settings = BASE.model_copy(update={"security_protocol": "SASL_SSL",
                                       "sasl_username": "worker", "sasl_password": "x"})
    why = explain(settings, [err], [NO_CERT])
    assert why is not None
    assert "refused the credentials of user 'worker'" in why


def test_unrelated_log_lines_explain_nothing() -> None:
    assert _seen("Connect to ipv4#127.0.0.1:9194 failed: Connection refused").explain(BASE) is None
