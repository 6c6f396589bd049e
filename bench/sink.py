"""An aiosmtpd SMTP sink in its own process on loopback, for the delivery benchmarks: it
accepts and counts messages; with a CA file path it requires STARTTLS with a certificate
from a throwaway CA it writes there."""

from __future__ import annotations

import multiprocessing


def _serve(out: multiprocessing.Queue, stop: multiprocessing.Event, ca_file: str) -> None:
    import socket
    import ssl

    from aiosmtpd.controller import Controller

    class Counter:
        accepted = 0

        async def handle_DATA(self, server, session, envelope):
            Counter.accepted += 1
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options: dict[str, object] = {}
    if ca_file:
        import trustme

        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        authority.cert_pem.write_to_path(ca_file)
        options = {"tls_context": context, "require_starttls": True}
    controller = Controller(Counter(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    out.put(port)
    stop.wait()
    controller.stop()
    out.put(Counter.accepted)


class Sink:
    """The sink process as a context manager: ``port`` while open, ``accepted`` after."""

    def __init__(self, ca_file: str = "") -> None:
        self.ca_file = ca_file
        self.port = 0
        self.accepted = 0

    def __enter__(self) -> Sink:
        self._out: multiprocessing.Queue = multiprocessing.Queue()
        self._stop = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=_serve, args=(self._out, self._stop, self.ca_file), daemon=True
        )
        self.process.start()
        self.port = self._out.get(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.accepted = self._out.get(timeout=60)
        self.process.join(timeout=30)
