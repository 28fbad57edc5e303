"""``cluster config``: configuration files for an N-node NATS JetStream cluster."""

from __future__ import annotations

from pathlib import Path

import click

from swarmlog.cli.app import CliContext, emit_json, pass_ctx
from swarmlog.cli.options import json_option
from swarmlog.control.cluster import cluster_nodes
from swarmlog.errors import ConfigError

__all__ = ["cluster"]


@click.group()
def cluster() -> None:
    """Run the log on a NATS JetStream cluster."""


@cluster.command("config")
@click.option("--nodes", "-n", default=3, show_default=True, type=int)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="All nodes on one host.")
@click.option("--hosts", help="Comma-separated, one host per node (each keeps the same ports).")
@click.option("--client-port", default=4222, show_default=True, type=click.IntRange(1, 65535))
@click.option("--cluster-port", default=6222, show_default=True, type=click.IntRange(1, 65535))
@click.option("--store", default="./jetstream", show_default=True, help="Root of the stores.")
@json_option
@pass_ctx
def cluster_config(
    ctx: CliContext,
    nodes: int,
    out: Path,
    host: str,
    hosts: str | None,
    client_port: int,
    cluster_port: int,
    store: str,
    as_json: bool,
) -> None:
    """Write one nats-server configuration per node into OUT; start each with
    `nats-server -c OUT/<node>.conf`, then `swarmlog up --replicas 3 --nats-url <a node>`."""
    try:
        made = cluster_nodes(
            nodes,
            host=host,
            client_port=client_port,
            cluster_port=cluster_port,
            store_root=store,
            hosts=hosts.split(",") if hosts else None,
        )
    except ValueError as exc:
        raise ConfigError(f"cluster config: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    for node in made:
        (out / f"{node.name}.conf").write_text(node.config)
    urls = ",".join(n.client_url for n in made)
    if as_json:
        emit_json({"nodes": [{"name": n.name, "url": n.client_url} for n in made], "urls": urls})
        return
    for node in made:
        ctx.say(f"{out / (node.name + '.conf')}  ({node.client_url})")
    # A client connected to one node learns the others from it and fails over to them.
    ctx.say(f"then: swarmlog up --detach --replicas 3 --nats-url {made[0].client_url}")
