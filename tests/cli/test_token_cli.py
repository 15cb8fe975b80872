"""`caxton token create` issues tokens the API accepts."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from caxton.cli import cli
from caxton.security import TokenIssuer


def _config(tmp_path: Path, secret_line: str) -> Path:
    path = tmp_path / "caxton.toml"
    path.write_text(f'[security]\nauth_enabled = true\n{secret_line}\njwt_expiry = "2h"\n')
    return path


def test_token_create_signs_with_the_configured_secret(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 'jwt_secret = "${JWT_SECRET}"')
    result = CliRunner().invoke(
        cli,
        ["token", "create", "-c", str(cfg), "--subject", "deployer"],
        env={"JWT_SECRET": "secret-for-token-tests"},
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    claims = TokenIssuer("secret-for-token-tests", default_expiry=1).verify(token)
    assert claims.subject == "deployer"
    assert claims.expires_at - claims.issued_at == 7200


def test_token_create_with_custom_expiry(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 'jwt_secret = "another-long-secret"')
    result = CliRunner().invoke(cli, ["token", "create", "-c", str(cfg), "--expiry", "30d"])
    assert result.exit_code == 0, result.output
    claims = TokenIssuer("another-long-secret", default_expiry=1).verify(result.output.strip())
    assert claims.expires_at - claims.issued_at == 30 * 86400


def test_token_create_without_a_secret_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "caxton.toml"
    path.write_text("[security]\nauth_enabled = false\n")
    result = CliRunner().invoke(cli, ["token", "create", "-c", str(path)])
    assert result.exit_code == 2
    assert "jwt_secret" in result.output
