from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes import AppServer, app_server
from tests.server import ROOT, FunctionServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the real paddleocr/paddlex packages (the `paddle` fixture, directly or through
    another fixture) are marked `paddle`: `make test` runs them in .venv-paddle only (`-m paddle`)
    and leaves them out of the main venv's run (`-m "not paddle"`), where they could only skip."""
    for item in items:
        if "paddle" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.paddle)


@contextmanager
def local_server(tmp: Path, engine: str) -> Iterator[FunctionServer]:
    """One real function process with `engine` and a local store under `tmp`, ready."""
    env = {"OCR_ENGINE": engine, "OCR_STORE": f"file://{tmp}/output"}
    with FunctionServer(env, tmp / "server.log") as srv:
        yield srv


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    """One real function process with the rapidocr engine and a local store, ready."""
    with local_server(tmp_path_factory.mktemp("function"), "rapidocr") as srv:
        yield srv


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The function built by `create_app` in this process with a FAKE engine (tests/fakes.py) and
    a local store: for bad input, the contract and routing, where recognition is not under test."""
    with app_server({}, tmp_path_factory.mktemp("app") / "output") as srv:
        yield srv


# --- S3 (moto over real HTTP) and a function that stores its results there ----------------------------

BUCKET = "ocr-bucket"
RESULT_PREFIX = "results"
S3_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def s3(moto_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 client for the moto server, with the test bucket created."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", **S3_KEYS)
    client.create_bucket(Bucket=BUCKET)
    return client


def s3_env(endpoint: str, secret_file: Path) -> dict[str, str]:
    """The function's S3 settings; the secret key comes from a mounted-secret style file."""
    return {
        "OCR_ENGINE": "rapidocr",
        "OCR_STORE": f"s3://{BUCKET}/{RESULT_PREFIX}",
        "S3_ENDPOINT_URL": endpoint,
        "S3_FORCE_PATH_STYLE": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY_FILE": str(secret_file),
        "OCR_URL_EXPIRES_SEC": "600",
        "OCR_INPUT_BUCKETS": f"{BUCKET},inbox",  # where s3_uri and events may read documents
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3) -> Iterator[FunctionServer]:  # type: ignore[no-untyped-def]
    """One real function process storing results in the moto bucket, ready."""
    tmp = tmp_path_factory.mktemp("function-s3")
    secret = tmp / "aws-secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"] + "\n")
    with FunctionServer(s3_env(moto_endpoint, secret), tmp / "server.log") as srv:
        yield srv


@pytest.fixture(scope="session")
def s3_app(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, s3) -> Iterator[AppServer]:  # type: ignore[no-untyped-def]
    """The function built in process with a FAKE engine (tests/fakes.py), storing its results in the
    moto bucket: events and S3 routing, where recognition is not under test."""
    tmp = tmp_path_factory.mktemp("app-s3")
    secret = tmp / "aws-secret"
    secret.write_text(S3_KEYS["aws_secret_access_key"] + "\n")
    with app_server(s3_env(moto_endpoint, secret), tmp) as srv:
        yield srv


def engine_calls(server: FunctionServer | AppServer) -> float:
    """How many times the server's engine ran OCR (the `ocr_engine_calls_total` counter)."""
    return _counter(server, "ocr_engine_calls_total")


def pages_read(server: FunctionServer | AppServer) -> float:
    """How many pages the server's engine read (the `ocr_pages_total` counter)."""
    return _counter(server, "ocr_pages_total")


def _counter(server: FunctionServer | AppServer, name: str) -> float:
    import requests

    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


# --- the project installed as a user's venv has it (make: pip install -e .) -------------------------


@pytest.fixture(scope="session")
def installed_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with this project installed editable, as the Makefile installs
    it: its `ocr-function` command runs from any directory. The venv reads its dependencies from the
    test venv's site-packages (a .pth file) instead of downloading them again, and builds without
    isolation (setuptools and wheel from requirements-dev.txt)."""
    import fcntl
    import subprocess
    import sys
    import sysconfig

    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    dev_site = sysconfig.get_paths()["purelib"]
    (Path(site) / "dev-venv.pth").write_text(f"import site; site.addsitedir({dev_site!r})\n")
    # One install at a time: it writes ocr_function.egg-info into the checkout, and under pytest-xdist
    # (make test) another worker may be installing too. The lock file lies in the run's temporary
    # folder, which the workers share.
    with open(tmp_path_factory.getbasetemp().parent / "installed_bin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
            check=True, capture_output=True,
        )  # fmt: skip
    return venv / "bin"
