"""``console``: the web console, in the foreground (``up`` runs it as a daemon)."""

from __future__ import annotations

import click

from swarmlog.cli.app import CliContext, pass_ctx, run
from swarmlog.cli.options import listen_options
from swarmlog.errors import ConfigError

__all__ = ["console"]


@click.command()
@listen_options(8470, "the console acts as the operator", ", or any free one when it is taken")
@click.option(
    "--url",
    "print_url",
    is_flag=True,
    help="Print the running console's login link (it carries the token) and exit.",
)
@pass_ctx
def console(ctx: CliContext, host: str, port: int | None, print_url: bool) -> None:
    """Serve the web console: workflows, live plan graphs, task histories, agents (kill,
    revive), the escalation desk, budgets and the audit status."""
    from swarmlog.agents.host.lifecycle import stop_on_signals
    from swarmlog.console.server import login_url, serve

    settings = ctx.settings
    settings.require_data_dir()
    if print_url:
        link = login_url(settings)
        if link is None:
            raise ConfigError("no console runs for this data dir: start one with `swarmlog up`")
        click.echo(link)
        return

    async def go() -> None:
        await serve(
            settings,
            host=host,
            port=port,
            stop=stop_on_signals(),
        )

    run(go())
