"""The ledger: what was handed over to whom and how it went (exactly once), the suppression
list, the state folder's locks."""
