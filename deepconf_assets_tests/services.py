"""Real Dagster services for end-to-end tests: `dagster dev` (webserver + daemon) on 127.0.0.1 with a
temporary DAGSTER_HOME and storage root, a GraphQL client, and headless Chromium through Debian's
chromedriver."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Screenshots and service logs are kept here for a person to look at after the run.
ARTIFACTS = Path(os.environ.get("DEEPCONF_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_environment(tmp: Path, model_dirs: dict[str, Path], instance_yaml: str, **extra: str) -> dict:
    """A fresh storage root (built-in models linked in, so nothing is rebuilt) and DAGSTER_HOME."""
    storage, home = tmp / "storage", tmp / "home"
    (storage / "models").mkdir(parents=True)
    for key, folder in model_dirs.items():
        (storage / "models" / key).symlink_to(folder)
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml)
    return dict(os.environ, DEEPCONF_STORAGE_DIR=str(storage), DAGSTER_HOME=str(home), HF_HUB_OFFLINE="1", **extra)


class DagsterDev:
    """`dagster dev` on a free port (host: None = Dagster's default), stopped with its whole process group."""

    def __init__(self, env: dict, log_name: str, host: str | None = "127.0.0.1"):
        self.env, self.port, self.host = env, free_port(), host
        self.url = f"http://127.0.0.1:{self.port}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{log_name}.log"

    def __enter__(self) -> "DagsterDev":
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(self.port),
             *(["-h", self.host] if self.host else [])],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.graphql("{ version }").get("version"):
                    return self
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev did not answer on {self.url}: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)  # a graceful stop; nothing of it is tested, so do not wait longer
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntop(socket.AF_INET if len(address) == 8 else socket.AF_INET6,
                                           bytes.fromhex(address)[::-1] if len(address) == 8 else
                                           b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))))
    return found


def wait_for(condition, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium driven by Debian's chromedriver (installed by .ci/run), at 1,920 x 1,080."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian packages chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1920,1080"):
        options.add_argument(flag)
    profile = ARTIFACTS / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
