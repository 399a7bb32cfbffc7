#!/usr/bin/env python3
"""The Python prototype's client, as its users ran it against its server, for
tests/tests/compat_prototype.rs.

It speaks the prototype's protocol the way its client and its users' scripts did, with
`requests`: multipart uploads in the field `file` with `Authorization: Bearer <key>`, streams
read with `iter_lines(decode_unicode=True)` (so decoded with the charset the response declares,
ISO-8859-1 for text/* without one), only `data: ` lines taken, each as JSON, each log `data`
printed as is (`end=""`), and `GET /jobs/{id}` polled until the job's status is one of its final
words.

    client.py SERVER KEY submit DIR          # the streaming submit; exit 0 if the tests passed
    client.py SERVER KEY submit-async DIR    # prints "Job submitted: <id>"
    client.py SERVER KEY poll ID SECONDS     # polls GET /jobs/{id}; prints the final job JSON
    client.py SERVER KEY wait ID [--all]     # GET /jobs/{id}/stream[?from_beginning=true]
    client.py SERVER KEY list                # GET /jobs as JSON
    client.py SERVER KEY events ID           # /api/v1/jobs/{id}/events, a line per log event

Logs go to stdout; the job id and the outcome to stderr.
"""

import io
import json
import sys
import time
import zipfile
from pathlib import Path

import requests

FINAL = ("completed", "failed", "cancelled")


def project_zip(folder: Path) -> bytes:
    """Every file of the folder but hidden ones and caches, as the prototype's client sent it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            hidden = any(p.startswith(".") or p == "__pycache__" for p in relative.parts)
            if path.is_file() and not hidden:
                archive.write(path, relative)
    return buffer.getvalue()


def upload(server: str, key: str, path: str, folder: str, **kwargs) -> requests.Response:
    files = {"file": ("project.zip", project_zip(Path(folder)), "application/zip")}
    response = requests.post(
        f"{server}{path}",
        files=files,
        headers={"Authorization": f"Bearer {key}"},
        timeout=300,
        **kwargs,
    )
    response.raise_for_status()
    return response


def messages(response: requests.Response):
    """The JSON of each `data: ` line of an SSE response, decoded as `requests` decodes it."""
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            yield json.loads(line[6:])


def show(events) -> int:
    """Prints what the prototype's `ci submit test` and `ci wait` printed; the exit code."""
    success = False
    for event in events:
        if event["type"] == "job_id":
            print(f"Job ID: {event['job_id']}", file=sys.stderr)
        elif event["type"] == "log":
            print(event["data"], end="", flush=True)
        elif event["type"] == "complete":
            success = event["success"]
    print(f"success: {success}", file=sys.stderr)
    return 0 if success else 1


def main(argv: list[str]) -> int:
    server, key, command, *args = argv
    auth = {"Authorization": f"Bearer {key}"}
    if command == "submit":
        response = upload(server, key, "/submit-stream", args[0], stream=True)
        print(f"content-type: {response.headers.get('content-type')}", file=sys.stderr)
        return show(messages(response))
    if command == "submit-async":
        job_id = upload(server, key, "/submit-async", args[0]).json()["job_id"]
        print(f"Job submitted: {job_id}")
        return 0
    if command == "poll":
        job_id, seconds = args[0], float(args[1])
        deadline = time.monotonic() + seconds
        while True:
            response = requests.get(f"{server}/jobs/{job_id}", headers=auth, timeout=10)
            response.raise_for_status()
            job = response.json()
            if job["status"] in FINAL:
                print(json.dumps(job))
                return 0
            if time.monotonic() > deadline:
                print(f"timed out; the job is still {job['status']!r}", file=sys.stderr)
                return 3
            time.sleep(0.2)
    if command == "wait":
        params = {"from_beginning": True} if "--all" in args else {}
        response = requests.get(
            f"{server}/jobs/{args[0]}/stream",
            params=params,
            headers=auth,
            stream=True,
            timeout=300,
        )
        response.raise_for_status()
        print(f"content-type: {response.headers.get('content-type')}", file=sys.stderr)
        return show(messages(response))
    if command == "list":
        response = requests.get(f"{server}/jobs", headers=auth, timeout=10)
        response.raise_for_status()
        print(json.dumps(response.json()))
        return 0
    if command == "events":
        response = requests.get(
            f"{server}/api/v1/jobs/{args[0]}/events",
            headers=auth,
            stream=True,
            timeout=300,
        )
        response.raise_for_status()
        print(f"content-type: {response.headers.get('content-type')}", file=sys.stderr)
        for event in messages(response):
            if event["type"] == "log":
                print(event["data"], flush=True)
            elif event["type"] == "complete":
                break
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
