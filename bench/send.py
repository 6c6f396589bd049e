"""Send benchmark: SMTP throughput side by side, with an aiosmtpd sink in its own process.

Run:  python bench/send.py [--subscribers 2000] [--messages 1000]

  (a) reused     pre-rendered messages over one reused SMTP connection (the physical limit)
  (b) per-msg    the same messages, one new SMTP connection per message
Measured over STARTTLS with a verified certificate (the default smtp.security, and what a real
submission server wants), and again in plain text for comparison.
  (c) pipeline   `newsletter send` for N subscribers in a fresh process: ingest, match,
                 render, deliver over smtp.connections, record each message in the ledger
Targets: (c) >= 70% of (a)'s messages/s; (a) >= 2x (b). Also prints (c)'s peak memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYWORDS = ["pruning", "distillation", "transformer", "zero-shot", "compress*", "diffusion"]


def sink(port_out: multiprocessing.Queue, stop: multiprocessing.Event, ca_file: str) -> None:
    """An aiosmtpd server that accepts and counts messages until told to stop; with
    ``ca_file`` it requires STARTTLS with a certificate from a throwaway CA written there."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller

    class Counter:
        accepted = 0

        async def handle_DATA(self, server, session, envelope):
            Counter.accepted += 1
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options: dict[str, object] = {}
    if ca_file:
        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        authority.cert_pem.write_to_path(ca_file)
        options = {"tls_context": context, "require_starttls": True}
    controller = Controller(Counter(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    port_out.put(port)
    stop.wait()
    controller.stop()


def project(folder: Path, port: int, subscribers: int, ca_file: str) -> Path:
    """A project: the shipped sample digests, N subscribers, SMTP to the sink."""
    shutil.copytree(ROOT / "digests", folder / "digests")
    entries = "".join(
        f"  - email: reader{i}@example.org\n"
        f"    keywords: [{', '.join(sorted({KEYWORDS[i % 6], KEYWORDS[(i // 6) % 6]}))}]\n"
        for i in range(subscribers)
    )
    (folder / "subscribers.yaml").write_text("subscribers:\n" + entries)
    security = f"starttls\n  ca_file: {ca_file}" if ca_file else "none"
    (folder / "config.yaml").write_text(
        "sender: Research digest <digest@example.org>\ndelivery: smtp\nsmtp:\n"
        f"  host: 127.0.0.1\n  port: {port}\n  security: {security}\n  connections: 2\n"
    )
    return folder / "config.yaml"


def prerendered(config: Path, count: int) -> list[bytes]:
    """Real digests, rendered once (as the pipeline would), for (a) and (b)."""
    from datetime import UTC, datetime

    from newsletter.config import load_config
    from newsletter.pipeline import ingest, select
    from newsletter.profiles import load_profiles
    from newsletter.render import Renderer
    from newsletter.store import open_store

    settings = load_config(config)
    profiles = load_profiles(settings)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as state, open_store(Path(state)) as store:
        ingest(store, sorted((config.parent / "digests").iterdir()), now=now)
        renderer = Renderer(settings, {})
        selections = select(store, profiles.subscribers[:count], settings, now=now)
        return [email.data for s in selections if (email := renderer.render(s, now))]


def connect(port: int, ca_file: str) -> smtplib.SMTP:
    """A reference client, with TCP_NODELAY as the transport uses (without it, Nagle's
    algorithm stalls each message over TLS for tens of milliseconds)."""
    client = smtplib.SMTP("127.0.0.1", port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ca_file:
        client.starttls(context=ssl.create_default_context(cafile=ca_file))
    return client


def reused(port: int, messages: list[bytes], ca_file: str) -> float:
    start = time.perf_counter()
    with connect(port, ca_file) as client:
        for data in messages:
            client.sendmail("digest@example.org", ["reader@example.org"], data)
    return len(messages) / (time.perf_counter() - start)


def per_message(port: int, messages: list[bytes], ca_file: str) -> float:
    start = time.perf_counter()
    for data in messages:
        with connect(port, ca_file) as client:
            client.sendmail("digest@example.org", ["reader@example.org"], data)
    return len(messages) / (time.perf_counter() - start)


def pipeline(config: Path) -> dict[str, float]:
    """`newsletter send` in a child process; its time, messages and peak memory."""
    child = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(child, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(config: Path) -> None:
    """Runs inside the child: the whole send, timed from the command's start."""
    from click.testing import CliRunner

    from newsletter.cli import World, cli

    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["--config", str(config), "send", "--json"], obj=World())
    seconds = time.perf_counter() - start
    report = json.loads(result.stdout)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "sent": len(report["sent"]), "peak_mb": peak_kb / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=1000, help="for (a) and (b)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as folder:
        tls = measure(Path(folder) / "tls", args, ca_file=str(Path(folder) / "ca.pem"))
        plain = measure(Path(folder) / "plain", args, ca_file="")
    print(f"messages of ~{tls['size']:,} bytes; sink: aiosmtpd in its own process")
    for name, run in (("STARTTLS, verified certificate", tls), ("plain text", plain)):
        print(f"{name}:")
        print(f"  (a) reused connection      {run['a']:8,.0f} msgs/s")
        print(f"  (b) connection per message {run['b']:8,.0f} msgs/s")
        print(
            f"  (c) newsletter send        {run['c']:8,.0f} msgs/s  ({run['sent']:,} subscribers"
            f" in {run['seconds']:.2f} s, peak memory {run['peak_mb']:.0f} MB)"
        )
        print(f"  (c) / (a)   {run['c'] / run['a']:6.2f}  (target >= 0.70)")
        print(f"  (a) / (b)   {run['a'] / run['b']:6.2f}  (target >= 2)")
    ok = tls["c"] >= 0.7 * tls["a"] and tls["a"] >= 2 * tls["b"] and tls["sent"] == args.subscribers
    print("targets (STARTTLS, the default security) met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


def measure(folder: Path, args: argparse.Namespace, ca_file: str) -> dict:
    """(a), (b) and (c) against one sink."""
    ports: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=sink, args=(ports, stop, ca_file), daemon=True)
    server.start()
    port = ports.get(timeout=30)
    try:
        folder.mkdir()
        config = project(folder, port, args.subscribers, ca_file)
        messages = prerendered(config, args.messages)
        rate_a = reused(port, messages, ca_file)
        rate_b = per_message(port, messages[: max(1, len(messages) // 4)], ca_file)
        run = pipeline(config)
    finally:
        stop.set()
        server.join(timeout=10)
    return {
        "a": rate_a,
        "b": rate_b,
        "c": run["sent"] / run["seconds"],
        "sent": int(run["sent"]),
        "seconds": run["seconds"],
        "peak_mb": run["peak_mb"],
        "size": sum(map(len, messages)) // len(messages),
    }


if __name__ == "__main__":
    main()
