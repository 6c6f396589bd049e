"""The schedule: who is due when (slots) and the daemon that runs sends, fetches and bounce
reading on time (daemon)."""
