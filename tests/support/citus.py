"""A Citus cluster for the tests: the one ``TEST_CITUS_URL`` names, or containers.

A database of the run's own is created on every node, since Citus 13 does
not propagate ``CREATE DATABASE``: on the coordinator and each worker, with
the citus extension, and the workers added to it on the coordinator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.databases import as_admin

HOW_TO_RUN_CITUS = (
    "Citus tests need TEST_CITUS_URL (e.g. "
    "postgresql+asyncpg://postgres@127.0.0.1:9700/taskvault_citus): a superuser on the "
    "coordinator of a Citus 13 cluster, in a database with the citus extension and the "
    "workers added (docs/operations.md, Citus), or a running Docker engine"
)

CITUS_IMAGE = "citusdata/citus:13.0.2"


@dataclass(frozen=True, slots=True)
class Node:
    """A node as the coordinator reaches it (``host``, ``port``) and as the tests
    do (``url``, a superuser's, on any database)."""

    host: str
    port: int
    url: str


@dataclass(frozen=True, slots=True)
class Cluster:
    coordinator: Node
    workers: tuple[Node, ...]

    def nodes(self) -> tuple[Node, ...]:
        return (self.coordinator, *self.workers)


_NODES = text(
    "SELECT nodename, nodeport, groupid = 0 AS is_coordinator FROM pg_dist_node "
    "WHERE noderole = 'primary' AND isactive ORDER BY groupid"
)


async def cluster_at(url: str) -> Cluster:
    """The cluster whose coordinator ``url`` is on, as its metadata lists it.

    The tests reach each worker where the coordinator does, so the workers'
    addresses must be the tests' too (loopback, as in docs/operations.md).
    """
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(_NODES)).all()
    finally:
        await engine.dispose()
    parsed = make_url(url)
    coordinator = Node(str(parsed.host), parsed.port or 5432, url)
    workers: list[Node] = []
    for host, port, is_coordinator in rows:
        node_url = parsed.set(host=host, port=port).render_as_string(hide_password=False)
        if is_coordinator:
            coordinator = Node(host, port, url)
        else:
            workers.append(Node(host, port, node_url))
    return Cluster(coordinator, tuple(workers))


@contextlib.contextmanager
def citus_containers(worker_count: int = 2) -> Iterator[Cluster]:
    """A coordinator and ``worker_count`` workers in containers on a network of their own."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.network import Network

    def node(network: Network, alias: str) -> PostgresContainer:
        container = PostgresContainer(CITUS_IMAGE, driver="asyncpg")
        # Trust between the nodes: the coordinator connects to the workers as
        # the tests' superuser, and they to it.
        container.with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
        return container.with_network(network).with_network_aliases(alias)

    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        names = ["citus-coordinator"] + [f"citus-worker-{n}" for n in range(1, worker_count + 1)]
        started = [stack.enter_context(node(network, name)) for name in names]
        coordinator, *workers = (
            Node(name, 5432, container.get_connection_url())
            for name, container in zip(names, started, strict=True)
        )
        yield Cluster(coordinator, tuple(workers))


def _on(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def create_database(cluster: Cluster, name: str) -> str:
    """A new database ``name`` on every node of ``cluster``, ready for distributed
    tables; its URL on the coordinator."""
    for node in cluster.nodes():
        await as_admin(node.url, f'CREATE DATABASE "{name}"')
        await as_admin(_on(node.url, name), "CREATE EXTENSION citus")
    coordinator = cluster.coordinator
    await as_admin(
        _on(coordinator.url, name),
        f"SELECT citus_set_coordinator_host('{coordinator.host}', {coordinator.port})",
        *(f"SELECT citus_add_node('{w.host}', {w.port})" for w in cluster.workers),
    )
    return _on(coordinator.url, name)


async def drop_database(cluster: Cluster, name: str) -> None:
    for node in cluster.nodes():
        await as_admin(node.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
