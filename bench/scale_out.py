"""What a step past one process costs on this machine, measured with wrk.

    .venv/bin/python bench/scale_out.py nginx
        GET list: straight to one instance, through nginx to that one instance,
        and through nginx to three instances.
    .venv/bin/python bench/scale_out.py pgbouncer
        Every scenario of bench/run.py on one instance: connected to PostgreSQL
        directly, and through PgBouncer in transaction mode
        (TASKVAULT_DB_POOLER=transaction); with --unset, also through PgBouncer
        without that setting.

    .venv/bin/python bench/scale_out.py citus
        GET list and POST create on one instance: on PostgreSQL directly, and
        on the Citus cluster whose coordinator ``--citus`` names (a superuser,
        in a database with the citus extension and the workers added).

All prepare the database ``taskvault_bench`` as ``bench/run.py`` does (dropped,
recreated, 1,000 users x 50 tasks) and drive the targets with its wrk scripts,
``wrk -t2 -c32``, interleaved round by round. The instances are
``taskvault serve --workers 1`` with rate limits off, as in ``make bench``.

``nginx`` runs the site ``tests/support/nginx.py`` writes, which the nginx test
runs too (TLS, keep-alive, ``proxy_next_upstream``), with Debian's nginx; the
instances run as the ordinary role ``taskvault_bench_app`` and trust 127.0.0.1.
``pgbouncer`` needs PgBouncer in transaction mode at ``--pgbouncer`` (.ci/run
starts one on 127.0.0.1:6433, ``pool_size = 4``) whose auth file lists the role
``taskvault_pgbouncer_app``; both targets run as that role.
``citus`` makes ``taskvault_bench`` on every node the coordinator lists (as
the Citus test tier does, tests/support/citus.py), distributes it by
``taskvault migrate``, seeds it the same way, and runs both targets as the
ordinary role ``taskvault_bench_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import run
from run import BenchError, Harness, Server, log
from sqlalchemy.engine import make_url

sys.path.insert(0, str(run.ROOT))

from tests.support.citus import cluster_at, create_database, drop_database
from tests.support.databases import PGBOUNCER_APP_ROLE, asyncpg_url, create_role, grant_app_tables
from tests.support.nginx import Nginx, find_nginx

UNSET = "PgBouncer, no POOLER"
Target = tuple[str, ssl.SSLContext | None]
"""A base URL, and the context that trusts its certificate when it is https."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/scale_out.py",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("step", choices=("nginx", "pgbouncer", "citus"))
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (8)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (1)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds before round 1 (2)")
    parser.add_argument("--pgbouncer", default="127.0.0.1:6433", help="PgBouncer's host:port")
    parser.add_argument(
        "--citus",
        default="postgresql://postgres@127.0.0.1:9700/taskvault_citus",
        help="citus: a superuser on the coordinator, in a database with the workers added",
    )
    parser.add_argument(
        "--unset",
        action="store_true",
        help="pgbouncer: a third instance through PgBouncer without TASKVAULT_DB_POOLER, "
        "to see how its requests fail",
    )
    return parser.parse_args(argv)


def start_instance(h: Harness, name: str, database_url: str, **env: str) -> Server:
    port = run.free_port()
    cmd = [str(run.BIN / "taskvault"), "serve", "--no-migrate", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1"]
    server = Server(name, cmd, {**h.tool_env(database_url), **env}, port, h.logs)
    return h.start(server, "/healthz", None)


def smoke(name: str, target: Target, user: str, token: str) -> None:
    """One GET list must answer a full page: a wrong setup must not pass as a result."""
    base, context = target
    verify: ssl.SSLContext | bool = context if context is not None else True
    with httpx.Client(verify=verify, timeout=10) as client:
        response = client.get(
            f"{base}/api/{user}/tasks",
            params={"limit": run.PAGE_LIMIT},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code != 200 or len(response.json()) != run.PAGE_LIMIT:
        raise BenchError(f"{name}: HTTP {response.status_code}: {response.text[:300]}")


def nginx_targets(h: Harness, database_url: str, proxies: list[Nginx]) -> dict[str, Target]:
    binary = find_nginx()
    if binary is None:
        raise BenchError("nginx is not installed (apt-get install nginx)")
    instances = [
        start_instance(h, f"instance-{n}", database_url, TASKVAULT_TRUSTED_PROXIES="127.0.0.1")
        for n in range(3)
    ]
    addresses = [f"127.0.0.1:{instance.port}" for instance in instances]
    for label, upstreams in (("nginx-1", addresses[:1]), ("nginx-3", addresses)):
        proxy = Nginx(binary, h.out / label, upstreams)
        proxies.append(proxy)
        proxy.start()
    return {
        "direct to 1 instance": (instances[0].url, None),
        "nginx to 1 instance": (proxies[0].public, proxies[0].tls()),
        "nginx to 3 instances": (proxies[1].public, proxies[1].tls()),
    }


def pgbouncer_targets(h: Harness, bouncer: str, unset: bool) -> dict[str, Target]:
    role = PGBOUNCER_APP_ROLE
    database = run.dsn(h.o.pg_url, database=run.MAIN_DB)
    asyncio.run(run._pg_admin(database, [create_role(role, if_missing=True)]))
    asyncio.run(run._pg_admin(database, [grant_app_tables(role)]))
    direct = make_url(run.sqlalchemy_url(run.dsn(h.o.pg_url, database=run.MAIN_DB, user=role)))
    host, _, port = bouncer.rpartition(":")
    through = direct.set(host=host, port=int(port)).render_as_string(hide_password=False)
    plain = start_instance(h, "direct", direct.render_as_string(hide_password=False))
    pooled = start_instance(h, "pgbouncer", through, TASKVAULT_DB_POOLER="transaction")
    targets = {"PostgreSQL directly": (plain.url, None), "through PgBouncer": (pooled.url, None)}
    if unset:
        careless = start_instance(h, "pgbouncer-unset", through)
        targets[UNSET] = (careless.url, None)
    return targets


def citus_target(h: Harness, coordinator: str) -> tuple[Target, Path]:
    """An instance on ``taskvault_bench`` made on every node of the cluster,
    distributed and seeded; and the task ids file of its seed."""
    cluster = asyncio.run(cluster_at(asyncpg_url(coordinator)))
    asyncio.run(drop_database(cluster, run.MAIN_DB))
    admin = asyncio.run(create_database(cluster, run.MAIN_DB))
    run.run([str(run.BIN / "taskvault"), "migrate"], env=h.tool_env(admin), cwd=h.out)
    admin_dsn = run.dsn(coordinator, database=run.MAIN_DB)
    run.pg_app_role(admin_dsn, h.role_password)
    run.pg_grant(admin_dsn)
    app = run.dsn(coordinator, database=run.MAIN_DB, user=run.APP_ROLE, password=h.role_password)
    db = run.Database("citus", admin, run.sqlalchemy_url(app), run.APP_ROLE)
    tasks_file = h.seed_main(db)
    instance = start_instance(h, "citus", db.app_url)
    return (instance.url, None), tasks_file


def measure(
    h: Harness,
    options: argparse.Namespace,
    targets: dict[str, Target],
    scenarios: Sequence[str],
    files: tuple[Path, Path],
) -> dict[str, dict[str, list[run.WrkResult]]]:
    results: dict[str, dict[str, list[run.WrkResult]]] = {
        s: {t: [] for t in targets} for s in scenarios
    }
    for number in range(1, options.rounds + 1):
        for scenario in scenarios:
            for name, (base, _) in targets.items():
                kwargs: dict[str, Any] = {
                    "threads": h.o.threads,
                    "connections": h.o.connections,
                    "script": run.WRK_SCRIPTS / f"{scenario}.lua",
                    "script_args": [str(files[0]), str(files[1])],
                }
                if number == 1 and options.warmup > 0:
                    run.wrk(base, duration=options.warmup, **kwargs)
                result = run.wrk(base, duration=options.duration, **kwargs)
                results[scenario][name].append(result)
                log(
                    f"round {number}/{options.rounds} {scenario:<8} {name:<22} "
                    f"{result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  non-2xx {result.non_2xx}  "
                    f"socket errors {result.errors}"
                )
    return results


def report(results: dict[str, dict[str, list[run.WrkResult]]]) -> str:
    lines = [f"{'scenario':<20} {'target':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  ratio"]
    for scenario, by_target in results.items():
        baseline = None
        for name, runs in by_target.items():
            rps = median(r.rps for r in runs)
            baseline = rps if baseline is None else baseline
            failed = sum(r.non_2xx + r.errors for r in runs)
            sent = sum(r.requests for r in runs)
            lines.append(
                f"{run.SCENARIO_LABELS[scenario]:<20} {name:<22} {rps:>9.1f} "
                f"{median(r.p50_ms for r in runs):>8.2f} {median(r.p99_ms for r in runs):>8.2f}"
                f"  {rps / baseline:.2f}"
                + (f"  FAILED: {failed} of {sent} requests" if failed else "")
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    defaults = run.parse_options([])
    h = Harness(dataclasses.replace(defaults, out=defaults.out / f"scale-out-{options.step}"))
    proxies: list[Nginx] = []
    try:
        h.out.mkdir(parents=True, exist_ok=True)
        log(f"{run.check_tools()}; load average {run.load_average()}")
        log(f"preparing {run.MAIN_DB}: {h.o.users} users x {h.o.tasks_per_user} tasks")
        db = h.prepare(run.MAIN_DB, "postgres")
        tasks_file = h.seed_main(db)
        users = list(h.ids["postgres"])
        tokens = h.mint_tokens(users)
        tokens_file = h.out / "tokens.lua"
        run.write_tokens(tokens_file, tokens)
        if options.step == "nginx":
            targets = nginx_targets(h, db.app_url, proxies)
            scenarios: Sequence[str] = ("list",)
        elif options.step == "citus":
            plain = start_instance(h, "postgres", db.app_url)
            citus, _ = citus_target(h, options.citus)
            targets = {"PostgreSQL": (plain.url, None), "Citus, 2 workers": citus}
            # Neither needs the task ids, which differ between the two seeds.
            scenarios = ("list", "create")
        else:
            targets = pgbouncer_targets(h, options.pgbouncer, options.unset)
            scenarios = run.SCENARIOS
        for name, target in targets.items():
            if name != UNSET:
                smoke(name, target, users[0], tokens[users[0]])
        results = measure(h, options, targets, scenarios, (tokens_file, tasks_file))
        print(report(results))
        log(f"load average at the end {run.load_average()}")
        return 0
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        for proxy in proxies:
            proxy.stop()
        h.stop_all()


if __name__ == "__main__":
    sys.exit(main())
