"""The ``fusionrec`` command as an operator runs it: what it prints must not leak secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
REDACTED = "<redacted>"  # the marker operators see in place of a secret (fusionrec.config.REDACTED)


def fusionrec(*args: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONREC_")}
    done = subprocess.run(
        [sys.executable, "-m", "stream.cli", *args], env={**clean, **env}, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_config_does_not_print_the_sasl_password_from_the_environment() -> None:
    out = fusionrec("config", env={"FUSIONREC_KAFKA_SASL_PASSWORD": "s3cr3t", "FUSIONREC_KAFKA_SASL_USERNAME": "svc"})
    assert "s3cr3t" not in out
    kafka = json.loads(out)["kafka"]
    assert kafka["sasl_password"] == REDACTED and kafka["sasl_username"] == "svc"


def test_config_does_not_print_the_sasl_password_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fusionrec.toml"
    path.write_text('[kafka]\nsasl_password = "s3cr3t-from-file"\nsecurity_protocol = "SASL_SSL"\n')
    out = fusionrec("--config", str(path), "-v", "config", env={})
    assert "s3cr3t" not in out and REDACTED in out
