"""The subscribers' side: their status, unsubscribes and history (service), bounces and the
reports they come in, and checking their addresses."""
