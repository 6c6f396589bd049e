"""Matching: the keyword rules (keywords), the index over papers' words (index) and the matcher
that picks each subscriber's papers (matcher)."""
