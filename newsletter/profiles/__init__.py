"""Subscriber profiles: reading and checking the profile file (load), its cache in the state
folder (cache), and the round-trip writer the preferences page edits it with (edit)."""
