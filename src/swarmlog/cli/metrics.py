"""``metrics serve``: the Prometheus metrics on a port of their own (the console serves them at
``/metrics`` too)."""

from __future__ import annotations

import click

from swarmlog.cli.app import CliContext, pass_ctx, run
from swarmlog.cli.options import listen_options

__all__ = ["metrics"]


@click.group()
def metrics() -> None:
    """Prometheus metrics of the running system: queues, tasks, retries, escalations, circuits,
    budgets, quarantine, projector lag (counts only, never payloads or keys)."""


@metrics.command("serve")
@listen_options(9464, "0.0.0.0 in a pod, for the scraper")
@pass_ctx
def serve(ctx: CliContext, host: str, port: int | None) -> None:
    """Serve the metrics at http://HOST:PORT/metrics until stopped (SIGTERM, Ctrl-C); prints
    the URL once it listens. Computed at each scrape from the projections and the stream's
    consumers, as the operator of the data dir."""
    from swarmlog.agents.host.lifecycle import stop_on_signals
    from swarmlog.observability.metrics import DEFAULT_PORT
    from swarmlog.observability.metrics import serve as serve_metrics

    ctx.settings.require_data_dir()

    async def go() -> None:
        await serve_metrics(
            ctx.settings,
            host=host,
            port=DEFAULT_PORT if port is None else port,
            stop=stop_on_signals(),
            ready=lambda url: click.echo(f"metrics at {url}"),
        )

    run(go())
