"""A delivery killed midway: the digest it was handing over goes again as it was, and the
next one still comes."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

from newsletter.store.sqlite import open_store
from tests.helpers import NOW, child_env, command, wait_for
from tests.shop import SHOP_PROFILES, new_digest, send_now, smtp_config
from tests.smtp_server import ScriptedServer, Sink, SmtpServer


def test_a_killed_delivery_is_resent_and_the_next_digest_still_arrives(shop: Path) -> None:
    (shop / "subscribers.yaml").write_text(SHOP_PROFILES.split("  - email: grace")[0])
    with ScriptedServer(drip=1.0) as slow:
        smtp_config(shop, slow.port, timeout=30)
        process = subprocess.Popen(
            [*command(shop / "config.yaml"), "send", "--now"],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_for(lambda: slow.connections > 0)
        finally:
            process.kill()  # SIGKILL mid-delivery: nothing recorded after the pending copy
            process.wait()
    new_digest(shop)
    sink = Sink()
    with SmtpServer(sink) as server:
        smtp_config(shop, server.port)
        runs = [send_now(shop, "--json", now=NOW + timedelta(hours=h)) for h in (1, 2)]
    sent = [s for run in runs for s in json.loads(run.stdout)["sent"]]
    assert [s.get("resent", False) for s in sent] == [True, False]
    with open_store(shop / "state") as store:
        (new,) = [p.id for p in store.papers() if p.title.startswith("Pruning transformers, ag")]
    received = [p for s in sent for p in s["papers"]]
    assert received.count(new) == 1
    assert sink.recipients() == ["ada@example.org", "ada@example.org"]
