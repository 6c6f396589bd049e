"""The configuration: its sections as dataclasses (settings), the reader that checks
config.yaml with file and line (load), and the checks across settings (checks)."""
