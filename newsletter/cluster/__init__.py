"""Several hosts on one PostgreSQL store: the queue of a shared run's chunks, the workers that
send them, and the leader that runs the schedule."""
