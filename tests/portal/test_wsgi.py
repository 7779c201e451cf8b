"""What gunicorn loads: portal.wsgi."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wsgi_module_loads_the_urls_and_freezes_the_heap():
    """A worker's full garbage collections skip everything loaded with the app (they paused
    each worker for 30-40 ms under load: the gate's p99, tests/perf/gate.py)."""
    code = ("import gc, sys; import portal.wsgi; "
            "print(gc.get_freeze_count(), 'reviews.api' in sys.modules)")
    env = {**os.environ, "DJANGO_DEBUG": "1", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=60)
    frozen, api_loaded = done.stdout.split()
    assert api_loaded == "True"  # the URLconf, and the views and API it names, were loaded
    assert int(frozen) > 20_000
