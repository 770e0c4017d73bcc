"""Settings come from IMSIM_* environment variables, typed like the fields they set."""

from runtime.settings import Settings


def test_environment_values_are_typed():
    settings = Settings.from_env(
        {
            "IMSIM_MAX_BATCH": "8",
            "IMSIM_FETCH_TIMEOUT_S": "2.5",
            "IMSIM_SMOKE": "true",
            "IMSIM_FETCH_PORTS": "80, 8443",
            "IMSIM_S3_ALLOWED_BUCKETS": "a,b",
            "IMSIM_CORS_ORIGIN": "*",
        }
    )
    assert settings.max_batch == 8
    assert settings.fetch_timeout_s == 2.5
    assert settings.smoke is True
    assert settings.fetch_ports == (80, 8443)
    assert settings.s3_allowed_buckets == ("a", "b")
    assert settings.cors_origin == "*"
    assert "RANDOM-WEIGHTS" in settings.model_version


def test_flags_override_the_environment():
    settings = Settings.from_env({"IMSIM_MAX_BATCH": "8"}, max_batch=4, data_dir=None)
    assert settings.max_batch == 4
    assert settings.data_dir == "./data"  # None means "not given"
