"""Configuration files for an N-node NATS JetStream cluster (pure text generation).

Each node gets its own file: a unique ``server_name``, a client port, a cluster port, its own
JetStream store, and routes to every node. Streams created on a cluster should have 3 replicas
(``swarmlog up --replicas 3 --nats-url ...``) so that one node can die without losing anything
acknowledged. See ``docs/deploy.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClusterNode", "cluster_nodes"]


@dataclass(frozen=True)
class ClusterNode:
    name: str
    client_url: str
    config: str
    """The node's configuration file, for ``nats-server -c``."""


def cluster_nodes(
    n: int,
    *,
    host: str = "127.0.0.1",
    client_port: int = 4222,
    cluster_port: int = 6222,
    store_root: str = "./jetstream",
    cluster_name: str = "swarmlog",
    hosts: list[str] | None = None,
    ports: list[tuple[int, int]] | None = None,
) -> list[ClusterNode]:
    """``n`` nodes; on one host the ports count up from ``client_port`` and ``cluster_port``,
    with ``hosts`` (one per node) each node keeps the same ports on its own host; ``ports``
    gives each node's (client, cluster) ports explicitly."""
    if not 3 <= n <= 9 or n % 2 == 0:
        raise ValueError("a JetStream cluster has an odd number of nodes, 3 to 9")
    if hosts is not None and len(hosts) != n:
        raise ValueError(f"{len(hosts)} hosts for {n} nodes")
    if ports is not None and len(ports) != n:
        raise ValueError(f"{len(ports)} port pairs for {n} nodes")
    where = hosts or [host] * n
    step = 0 if hosts else 1
    pairs = ports or [(client_port + i * step, cluster_port + i * step) for i in range(n)]
    nodes = [(f"n{i + 1}", where[i], *pairs[i]) for i in range(n)]
    routes = ", ".join(f"nats-route://{h}:{cp}" for _, h, _, cp in nodes)
    out = []
    for name, node_host, port, cport in nodes:
        config = (
            f"server_name: {name}\n"
            f"listen: {node_host}:{port}\n"
            f'jetstream {{ store_dir: "{store_root}/{name}" }}\n'
            "cluster {\n"
            f"  name: {cluster_name}\n"
            f"  listen: {node_host}:{cport}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )
        out.append(ClusterNode(name, f"nats://{node_host}:{port}", config))
    return out
