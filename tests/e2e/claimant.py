"""One claimant process for the claim race: connect as AGENT, say "ready", wait for a line on
stdin (the start gun), claim TASK, print the outcome as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from swarmlog.agents.claims import claim
from swarmlog.agents.publisher import Publisher
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log


async def main(agent_id: str, task_id: str) -> None:
    settings = Settings(data_dir=Path(os.environ["SWARMLOG_DATA"]))
    identity, _ = KeyStore(settings.keys_dir).agent(agent_id)
    async with open_log(settings) as log:
        publisher = Publisher(log, identity, settings.namespace)
        await publisher.recover()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        outcome = await claim(log, publisher, task_id)
        print(json.dumps({"agent": agent_id, "won": outcome.won, "reason": outcome.reason}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
