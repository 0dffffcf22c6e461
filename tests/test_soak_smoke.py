"""A few seconds of the soak (`make soak` runs a minute): the runner works end to end."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT


def test_a_short_soak_passes(servers):
    env = {**os.environ, "DATABASE_URL": servers.postgres_url, "REDIS_URL": servers.redis_url}
    result = subprocess.run([sys.executable, "-m", "soak", "--seconds", "4", "--clients", "2"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "soak: 5xx: 0, unanswered: 0" in result.stdout
    assert "POST /api/event              201" in result.stdout
