"""A profile file with ten kinds of mistakes, and what must be said about each."""

TEN_MISTAKES = """\
subscribers:
  - email: ada@example.org
    keywords: [pruning, "knowledge distillation", "compress*"]
    exclude: [medical]
    timezone: Europe/Berln
  - email: bob@
    keywords: [transformers]
    max_papers: 500
  - email: carol@example.org
    keyword: [diffusion]
  - email: dan@example.org
    keywords: []
    frequency: montly
  - email: ada@example.org
    keywords: ["*prune"]
    send_at: "25:00"
    active: maybe
    min_score: 99
"""
# (line, what the message must say), in file order.
EXPECTED = [
    (5, "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"),
    (6, "invalid address 'bob@'"),
    (8, "'max_papers' must be from 1 to 100, not 500"),
    (9, "missing 'keywords'"),
    (10, "unknown key 'keyword' (did you mean 'keywords'?)"),
    (12, "'keywords' is empty"),
    (13, "'frequency' cannot be 'montly'"),
    (14, "'ada@example.org' is already used on line 2"),
    (15, "'*' may only end a keyword"),
    (16, "'send_at' must be a time like \"07:00\", not '25:00'"),
    (17, "'active' must be true or false, not 'maybe'"),
]
