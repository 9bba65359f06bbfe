"""Secret names, redaction and credential-free URLs."""

from pytest_benchflow.redaction import is_secret_name, public_url, redact


def test_secret_words_any_case() -> None:
    assert all(is_secret_name(n) for n in ("OPENAI_API_KEY", "hf_token", "ClientSecret", "DB_PASSWORD"))
    assert not is_secret_name("NUM_SHOTS")
    assert is_secret_name("ENDPOINT", declared=["ENDPOINT"])


def test_redact_replaces_every_occurrence_longest_first() -> None:
    assert redact("a sk-123456 b sk-123456789", ["sk-123456", "sk-123456789"]) == "a *** b ***"


def test_public_url_drops_credentials_and_query() -> None:
    assert public_url("https://user:pw@host:8443/v1?token=abc") == "https://host:8443/v1"
    # A socket path has no host: it stays as given (Docker engine URLs are shown this way).
    assert public_url("unix:///var/run/docker.sock") == "unix:///var/run/docker.sock"
    assert public_url("ssh://me:pw@builder:22") == "ssh://builder:22"


def test_redact_hides_url_credentials() -> None:
    assert redact("--agent-url=https://bob:s3cret@host/v1 ok", []) == "--agent-url=https://***@host/v1 ok"
