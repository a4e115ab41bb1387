"""What row-level security costs a GET list: median latency with and without it.

Two taskvault servers on the same PostgreSQL database (the one `make bench`
seeds, `taskvault_bench`): one connects as the ordinary role
`taskvault_bench_app`, which the RLS policy binds; the other as the superuser
`postgres`, which RLS does not bind. Both send the same statements (the
set_config included), so the difference is the policy's own cost. Requests
are sequential (one connection) and interleaved between the two servers in
rounds, so machine noise hits both alike.

    .venv/bin/python bench/rls_cost.py [--requests 300] [--rounds 5]

Run `make bench` once first (it creates and seeds the database and the role).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from jose import jwt

ROOT = Path(__file__).resolve().parent.parent
TASKVAULT = str(Path(sys.executable).with_name("taskvault"))
SECRET = "rls-cost-benchmark-secret-0123456789abcdef"  # noqa: S105 (a throwaway bench key)
DATABASE = "taskvault_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(role: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKVAULT_")}
    env.update(
        TASKVAULT_DATABASE_URL=f"postgresql+asyncpg://{role}@127.0.0.1:5432/{DATABASE}",
        TASKVAULT_JWT_SECRET=SECRET,
        TASKVAULT_RATE_LIMIT="off",
        TASKVAULT_LOG_LEVEL="WARNING",
    )
    cmd = [TASKVAULT, "serve", "--no-migrate", "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603 (our own entry point)
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"taskvault as {role} did not become ready")


def timings(client: httpx.Client, base: str, users: list[str], count: int) -> list[float]:
    out = []
    for i in range(count):
        user = users[i % len(users)]
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, "HS256")
        started = time.perf_counter()
        response = client.get(
            f"{base}/api/{user}/tasks?limit=20", headers={"Authorization": f"Bearer {token}"}
        )
        out.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or len(response.json()) != 20:
            raise SystemExit(f"unexpected answer {response.status_code} from {base}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="per server per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    users = [f"user{i:04d}" for i in range(0, 1000, 7)]
    servers = {
        "with RLS (ordinary role)": start("taskvault_bench_app"),
        "without RLS (superuser)": start("postgres"),
    }
    results: dict[str, list[float]] = {name: [] for name in servers}
    try:
        with httpx.Client(timeout=10) as client:
            for _, base in servers.values():
                timings(client, base, users, 50)  # warm-up
            for _ in range(args.rounds):
                for name, (_, base) in servers.items():
                    results[name] += timings(client, base, users, args.requests)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=15)
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        count = len(results[name])
        print(f"GET list (limit=20), {name:26s}: median {value:.3f} ms over {count} requests")
    with_rls, without = medians["with RLS (ordinary role)"], medians["without RLS (superuser)"]
    change = (with_rls / without - 1) * 100
    print(f"RLS cost: {with_rls - without:+.3f} ms per request ({change:+.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
