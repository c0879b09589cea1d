"""The core stays pure: no Flask, no marshmallow."""

import subprocess
import sys


def test_core_imports_neither_flask_nor_marshmallow():
    code = ("import sys, labinterp.core, labinterp.core.engine, labinterp.core.knowledge; "
            "bad = [m for m in ('flask', 'marshmallow', 'flask_smorest', 'werkzeug') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
