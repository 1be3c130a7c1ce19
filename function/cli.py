"""The command line: `python -m function serve | ocr | invoke | event`.

`ocr` runs the engine in this process (no server); `invoke` and `event` talk to a running function.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

ROOT = Path(__file__).resolve().parent.parent
POLL_SEC = 0.5  # how often `invoke --async` asks for its job's status
DESCRIPTION = """\
OCR documents: run the function, OCR files locally, or call a deployed function.

examples:
  python -m function serve --port 8080
  python -m function ocr scan.png report.pdf -o out/ --visualize
  python -m function invoke http://localhost:8080 scan.png
  python -m function invoke http://localhost:8080 long.pdf --async
  python -m function event http://localhost:8080 --bucket inbox --key scans/a.png
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name if Path(sys.argv[0]).name == "ocr-function" else "python -m function",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _serve_parser(commands)
    _ocr_parser(commands)
    _invoke_parser(commands)
    _event_parser(commands)
    return parser


def _serve_parser(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="run the function (as `make run` does), draining requests on SIGTERM",
        description="Run the function under gunicorn, as functions-framework does (WORKERS, THREADS, "
        "PORT from the environment), with SIGTERM waiting up to OCR_DRAIN_SEC for requests in flight "
        "(default: OCR_DEADLINE_SEC + 30) instead of functions-framework's fixed 30 seconds.",
    )
    port = os.environ.get("PORT") or "8080"  # a string default goes through `type` when `serve` runs
    p.add_argument("--port", type=int, default=port, help="port to listen on (default: PORT or 8080)")
    host = os.environ.get("HOST") or "0.0.0.0"
    p.add_argument("--host", default=host, help="address to bind (default: HOST or 0.0.0.0)")
    p.add_argument("--engine", help="OCR engine (sets OCR_ENGINE): rapidocr, tesseract, paddleocr-vl")
    p.set_defaults(run=serve)


def _ocr_parser(commands: Any) -> None:
    p = commands.add_parser(
        "ocr",
        help="OCR files in this process, no server",
        description="OCR files in this process and write <stem>.md and <stem>.json for each. "
        "Settings come from the environment (OCR_ENGINE, OCR_MAX_PAGES, OCR_PDF_DPI, ...).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PDF or image files")
    p.add_argument("-o", "--output", metavar="DIR", default=".", help="output folder (default: .)")
    p.add_argument("--engine", help="OCR engine (default: OCR_ENGINE or rapidocr)")
    p.add_argument("--pages", help="pages to read, 1-based, e.g. '1-3,7' (default: all)")
    p.add_argument("--lang", help="language hint, e.g. 'en' or 'rus+eng' (engines that take one)")
    p.add_argument("--visualize", action="store_true", help="also write <stem>.page-<n>.png layout pictures")
    p.set_defaults(run=ocr)


def _invoke_parser(commands: Any) -> None:
    p = commands.add_parser("invoke", help="send files to a running function, print the result URLs")
    p.add_argument("url", metavar="URL", help="the function's base URL, e.g. http://localhost:8080")
    p.add_argument("files", nargs="+", metavar="FILE", help="PDF or image files")
    p.add_argument("--return-content", action="store_true", help="also print the recognised Markdown")
    p.add_argument("--pages", help="pages to read, 1-based, e.g. '1-3,7'")
    p.add_argument("--lang", help="language hint, e.g. 'en'")
    p.add_argument("--visualize", action="store_true", help="also produce layout pictures (URLs printed)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait per file (default: 300)")
    p.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="send each file as a job (Prefer: respond-async) and show its pages done until it completes; "
        "for long PDFs",
    )
    p.set_defaults(run=invoke)


def _event_parser(commands: Any) -> None:
    p = commands.add_parser(
        "event",
        help="send an S3-style storage CloudEvent, print the reply",
        description="Send the CloudEvent an S3-compatible store (AWS, Ceph, MinIO via Knative) sends when "
        "an object is created; the function reads the object from its own store's credentials.",
    )
    p.add_argument("url", metavar="URL", help="the function's base URL")
    p.add_argument("--bucket", required=True, help="bucket of the object")
    p.add_argument("--key", required=True, help="object key, unencoded")
    p.add_argument(
        "--type", default="com.amazonaws.ObjectCreated:Put", help="event type (default: %(default)s)"
    )
    p.add_argument("--structured", action="store_true", help="structured mode (default: binary mode)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait (default: 300)")
    p.set_defaults(run=event)


# --- serve -------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """functions-framework's app (`--source handler.py --target handle`) under functions-framework's
    own gunicorn application, plus a graceful timeout from the settings and a draining worker."""
    os.environ.setdefault("WORKERS", "1")
    if args.engine:
        os.environ["OCR_ENGINE"] = args.engine
    os.chdir(ROOT)  # handler.py imports `function` from the repository root
    from function.config import load_settings
    from function.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from function.lifecycle import serving_threads

    os.environ["THREADS"] = str(serving_threads(settings, os.environ.get("THREADS")))
    gunicorn_app(args.host, args.port, settings).run()
    return 0


def gunicorn_app(host: str, port: int, settings: Any) -> Any:
    """The gunicorn application `serve` runs (built, not started)."""
    from functions_framework import create_app
    from functions_framework._http.gunicorn import GunicornApplication

    from function.lifecycle import gunicorn_options

    app = create_app("handle", str(ROOT / "handler.py"), "http")
    return GunicornApplication(app, host, port, False, **gunicorn_options(settings))


# --- ocr ---------------------------------------------------------------------------------------------


def ocr(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from function.config import load_settings
    from function.engines import create_engine
    from function.errors import ConfigError, OCRError
    from function.options import Options

    try:
        settings = load_settings()
        if args.engine:
            settings = replace(settings, engine=args.engine)
        options = Options.parse({"pages": args.pages, "lang": args.lang, "visualize": args.visualize})
        engine = create_engine(settings.engine, settings)
        engine.load()
    except (ConfigError, OCRError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in tqdm(args.files, desc="files", unit="file", file=sys.stderr, position=0):
        try:
            _ocr_file(Path(name), out, engine, settings, options)
        except (OSError, OCRError) as exc:
            failed += 1
            tqdm.write(f"{name}: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _ocr_file(path: Path, out: Path, engine: Any, settings: Any, options: Any) -> None:
    """The service's steps without a result store: the files land in `out` under the file's stem."""
    from tqdm import tqdm

    from function.service import Timings, describe, open_pages, recognise
    from function.sources import Source

    source = Source(path.read_bytes(), path.name, "cli")
    pages = open_pages(source.data, options, settings)
    info = describe(source, pages, engine, options)
    bar = tqdm(pages, total=len(pages.selected), desc=path.name, unit="page", file=sys.stderr, leave=False)
    done = recognise(engine, bar, options, info, Timings())
    stem = path.stem
    # Each document's crops in a folder of its own (`<stem>_imgs/`): two documents in one `out`
    # both have a `imgs/page1_image_5.jpg`, and the second would overwrite the first.
    moved = {rel: f"{stem}_{rel}" for rel in done.document.images}
    markdown = done.markdown
    for rel, new in moved.items():  # a link is `](path)`, or `](<path>)` where the path has spaces
        markdown = markdown.replace(f"]({rel})", f"](<{new}>)").replace(f"](<{rel}>)", f"](<{new}>)")
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    as_json = json.dumps(_relinked(done.as_json, moved), ensure_ascii=False, indent=2)
    (out / f"{stem}.json").write_text(as_json + "\n", encoding="utf-8")
    for rel, image in done.document.images.items():  # crops the Markdown links to, relative to it
        target = out / moved[rel]
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target)
    for n, png in done.layout.items():
        (out / f"{stem}.page-{n}.png").write_bytes(png)


def _relinked(as_json: dict[str, Any], moved: dict[str, str]) -> dict[str, Any]:
    """document.json with its blocks' image paths moved as `moved` says."""
    for page in as_json.get("pages", []):
        for block in page.get("blocks", []):
            if block.get("image") in moved:
                block["image"] = moved[block["image"]]
    return as_json


# --- invoke ------------------------------------------------------------------------------------------


class InvokeFailed(Exception):
    """A file `invoke` could not get a result for; the message says why."""


def invoke(args: argparse.Namespace) -> int:
    fields = {"return_content": str(args.return_content).lower(), "visualize": str(args.visualize).lower()}
    fields.update({k: v for k, v in (("pages", args.pages), ("lang", args.lang)) if v})
    failed = 0
    for name in args.files:
        try:
            body = _invoke_file(args, name, fields)
        except InvokeFailed as exc:
            failed += 1
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        _print_results(name, body)
    return 1 if failed else 0


def _invoke_file(args: argparse.Namespace, name: str, fields: dict[str, str]) -> dict[str, Any]:
    """The synchronous answer for one file; with --async, the completed job's result."""
    import requests

    base = args.url.rstrip("/")
    deadline = time.monotonic() + args.timeout
    headers = {"Prefer": "respond-async"} if args.use_async else {}
    try:
        with open(name, "rb") as f:
            resp = requests.post(
                base + "/ocr", files={"file": (Path(name).name, f)}, data=fields, headers=headers,
                timeout=args.timeout,
            )  # fmt: skip
        body = _answer(resp, 202 if args.use_async else 200)
        if not args.use_async:
            return body
        location = base + resp.headers["Location"] + ("?return_content=true" if args.return_content else "")
        result = _wait_for_job(location, Path(name).name, body, deadline)
        # A job's result is read back from the store, so it always says `cached`; it was cached for
        # this caller only if the job was complete when sent.
        result["cached"] = body["state"] == "completed"
        return result
    except (OSError, ValueError, KeyError, requests.RequestException) as exc:
        raise InvokeFailed(str(exc)) from exc


def _answer(resp: Any, expected: int) -> dict[str, Any]:
    """The response's JSON body when its status is `expected`; otherwise the error it gave."""
    body: dict[str, Any] = resp.json()
    if resp.status_code != expected:
        raise InvokeFailed(f"HTTP {resp.status_code}: {body.get('error', {}).get('message', resp.text)}")
    return body


def _wait_for_job(location: str, name: str, accepted: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Poll the job at `location` until it completes (its result) or fails, with a bar of its pages
    done on stderr; give up at `deadline` (the job goes on: its status stays at `location`)."""
    import requests
    from tqdm import tqdm

    pages = accepted["pages"]
    # miniters/mininterval: every poll's count is shown (the polls are already POLL_SEC apart).
    bar = tqdm(total=pages["total"], initial=pages["done"], desc=name, unit="page", file=sys.stderr,
               miniters=1, mininterval=0)  # fmt: skip
    with bar:
        while True:
            status = _answer(requests.get(location, timeout=max(deadline - time.monotonic(), 1)), 200)
            bar.update(status["pages"]["done"] - bar.n)
            if status["state"] == "completed":
                return dict(status["result"])
            if status["state"] == "failed":
                reason = (status.get("error") or {}).get("message", "no reason given")
                raise InvokeFailed(f"job {status['job_id']} failed: {reason}")
            if time.monotonic() + POLL_SEC > deadline:
                raise InvokeFailed(f"job {status['job_id']} not done in time; its status: {location}")
            time.sleep(POLL_SEC)


def _print_results(name: str, body: dict[str, Any]) -> None:
    results = body["results"]
    print(f"{name}:{' (cached)' if body.get('cached') else ''}")
    for part in ("markdown", "json", "manifest"):
        print(f"  {part}: {results[part]['url']}")
    for item in results.get("layout", []):
        print(f"  layout page {item['page']}: {item['url']}")
    if "content" in body:
        print(body["content"]["markdown"])


# --- event -------------------------------------------------------------------------------------------


def event(args: argparse.Namespace) -> int:
    import requests
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent, from_http

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": args.type.rsplit(".", 1)[-1],  # com.amazonaws.ObjectCreated:Put -> ObjectCreated:Put
        "s3": {"bucket": {"name": args.bucket}, "object": {"key": quote_plus(args.key, safe="/")}},
    }
    attributes = {"type": args.type, "source": f"aws:s3.{args.bucket}", "subject": args.key}
    headers, body = (to_structured if args.structured else to_binary)(
        CloudEvent(attributes, {"Records": [record]})
    )
    try:
        resp = requests.post(args.url.rstrip("/") + "/", headers=headers, data=body, timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if "ce-type" not in {k.lower() for k in resp.headers}:
        print(f"HTTP {resp.status_code}: {resp.text}")
        return 1
    # ce-* values are percent-encoded on the wire (CloudEvents HTTP binding).
    reply_headers = {k: unquote(v) if k.lower().startswith("ce-") else v for k, v in resp.headers.items()}
    reply = from_http(reply_headers, resp.content)
    print(reply["type"])
    print(json.dumps(reply.data, ensure_ascii=False, indent=2))
    return 0 if resp.ok and reply["type"].endswith(".completed") else 1
