"""The send use case: a run (run), the sending of its digests over an open store (sending), the
render pool that produces them (produce), the preview of the next send (preview) and the
parts a send is wired from (wiring)."""
