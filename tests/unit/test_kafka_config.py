"""Every Kafka client gets the brokers and the security settings from one place."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.kafka import client_config
from shared.settings import CommonSettings


def test_plaintext_clients_get_the_brokers_and_keep_their_own_timeouts() -> None:
    settings = CommonSettings(kafka_bootstrap_servers="k1:9092, k2:9092")
    config = client_config(settings, request_timeout_ms=5_000, client_id="x")
    assert config["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert config["security_protocol"] == "PLAINTEXT"
    assert config["request_timeout_ms"] == 5_000 and config["client_id"] == "x"
    assert "sasl_mechanism" not in config and "ssl_cafile" not in config


def test_sasl_ssl_settings_reach_the_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = CommonSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="callboard",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=ca,
    )
    config = client_config(settings, bootstrap="b:9093")
    assert config["bootstrap_servers"] == ["b:9093"]
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "callboard"
    assert config["sasl_plain_password"] == "s3cret"
    assert config["ssl_cafile"] == str(ca)


def test_a_sasl_protocol_without_its_credentials_fails_at_start_naming_them() -> None:
    with pytest.raises(ValidationError) as caught:
        CommonSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN")
    message = str(caught.value)
    assert "CALLBOARD_KAFKA_SASL_USERNAME" in message
    assert "CALLBOARD_KAFKA_SASL_PASSWORD" in message
    assert "CALLBOARD_KAFKA_SASL_MECHANISM" not in message


def test_a_missing_ca_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CALLBOARD_KAFKA_SSL_CAFILE"):
        CommonSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "none.pem")
