"""Take the README's screenshot: `make screenshot` writes docs/dashboard.png (1280x800).

The demo data goes into a throwaway SQLite database, Django's development server runs it on a
free port, and headless Chromium logs in as the demo admin and photographs the dashboard.
Your own var/, DATABASE_URL and REDIS_URL are left alone.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
OUTPUT = BASE_DIR / "docs" / "dashboard.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the development server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def main() -> None:
    sys.path.insert(0, str(BASE_DIR))
    with tempfile.TemporaryDirectory(prefix="steward-screenshot-") as var_dir:
        for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"):
            os.environ.pop(name, None)
        os.environ.update(DJANGO_SETTINGS_MODULE="portal.settings", DJANGO_DEBUG="1",
                          STEWARD_VAR_DIR=var_dir)
        take_screenshot()
    print(f"Wrote {OUTPUT.relative_to(BASE_DIR)}")


def take_screenshot() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    from portal.management.commands import seed_demo
    from tests.e2e.chromium import chromium_page

    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    admin = next(person for person in seed_demo.CAST if person.superuser)

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=BASE_DIR, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"{base_url}/healthz", server)
        with chromium_page(width=1280, height=800) as page:
            page.goto(f"{base_url}/accounts/login/")
            page.get_by_label("Username").fill(admin.username)
            page.get_by_label("Password").fill(seed_demo.DEMO_PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(f"{base_url}/")
            page.wait_for_load_state("networkidle")
            OUTPUT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(OUTPUT))
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
