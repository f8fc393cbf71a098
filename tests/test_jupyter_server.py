"""JupyterLab's server on loopback lists the book's notebooks and executes one through its REST
and websocket API, with the project's kernel, then stops."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import nbformat
import pytest

from spinelib.core.config import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


async def _execute(ws_url: str, sources: list[str], timeout: float = 600) -> list[dict]:
    """Run each source on the kernel; return the error messages (empty when all cells ran)."""
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(ws_url)
    session = uuid.uuid4().hex
    errors = []
    for src in sources:
        msg_id = uuid.uuid4().hex
        await conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": src, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        deadline = time.monotonic() + timeout
        while True:
            raw = await asyncio.wait_for(conn.read_message(), timeout=max(1.0, deadline - time.monotonic()))
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                errors.append(msg["content"])
            if msg["channel"] == "shell" and msg["msg_type"] == "execute_reply":
                break
        if errors:
            break
    conn.close()
    return errors


@pytest.mark.slow
def test_jupyter_server_lists_and_executes_a_notebook(tiny_synthetic, tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO_ROOT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("jupyter server did not start within 60 s")
        listing = _get(f"{base}/api/contents/notebooks?token={token}")
        names = {item["name"] for item in listing["content"]}
        expected = {p.name for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
        assert expected and expected <= names
        specs = _get(f"{base}/api/kernelspecs?token={token}")
        assert "python3" in specs["kernelspecs"]

        kernel = _get(f"{base}/api/kernels?token={token}", "POST", {"name": "python3"})
        nb = nbformat.read(REPO_ROOT / "notebooks" / "01_data_analysis.ipynb", as_version=4)
        sources = [f"import os; os.chdir({str(REPO_ROOT / 'notebooks')!r})"]
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            sources.append(cell.source)
            if "parameters" in cell.metadata.get("tags", []):
                sources.append(f"profile = 'tiny'; synthetic_dir = {str(tiny_synthetic)!r}; "
                               f"output_dir = {str(tmp_path)!r}")
        ws = f"ws://127.0.0.1:{port}/api/kernels/{kernel['id']}/channels?token={token}"
        errors = asyncio.run(_execute(ws, sources))
        assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
        assert (tmp_path / "01_mask_coverage.csv").exists()
        _get(f"{base}/api/kernels/{kernel['id']}?token={token}", "DELETE")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
