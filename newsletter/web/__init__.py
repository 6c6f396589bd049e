"""``newsletter serve``: the subscriber-facing web app."""
