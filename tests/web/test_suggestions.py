"""The preferences page suggests what a reader's "not relevant" clicks point to, and one
click applies it through the profile writer (the file keeps its comments)."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path

import httpx

from tests.digest_text import capture, card
from tests.helpers import invoke
from tests.web.test_app import ENV, served_project

PROFILES = """\
# The operator's file: comments stay.
subscribers:
  - email: mia@example.org   # medical imaging
    keywords: [segmentation]   # her research
    max_papers: 10
"""

PAPERS = [
    ("Tumour segmentation in brain MRI", "Medical image segmentation of gliomas in MRI scans."),
    ("Organ segmentation for CT", "Medical segmentation of abdominal organs in clinical CT."),
    ("Lane segmentation for driving", "Road lane segmentation from dashcam video for driving."),
    ("Road scene segmentation", "Urban road segmentation for autonomous driving cars."),
    ("Satellite segmentation", "Land cover segmentation of satellite images near road networks."),
]


def feedback_links(outbox: Path) -> dict[str, tuple[str, str]]:
    """Each paper's (more like this, not relevant) links, by its title."""
    (path,) = (outbox / "new").iterdir()
    text = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    body = text.get_body(("plain",)).get_content().replace("\r\n", "\n")
    titles = re.findall(r"^\d+\. (.+)$", body, re.M)
    more = re.findall(r"More like this: (\S+)", body)
    less = re.findall(r"Not relevant: (\S+)", body)
    return dict(zip(titles, zip(more, less, strict=True), strict=True))


def test_three_not_relevant_clicks_become_a_suggestion_applied_in_one_click(tmp_path) -> None:
    digests = tmp_path / "listings"
    digests.mkdir()
    (digests / "mar-12.txt").write_text(capture(*(card(t, a) for t, a in PAPERS), listing="Mar 12"))
    with served_project(tmp_path / "site", digests=digests, profiles=PROFILES) as site:
        links = feedback_links(site.folder / "outbox")
        with httpx.Client(timeout=10) as http:
            for title in ("Lane segmentation for driving", "Road scene segmentation",
                          "Satellite segmentation"):  # fmt: skip
                params = dict(httpx.URL(links[title][1]).params)
                assert http.post(f"{site.url}/feedback", data=params).status_code == 200
            for title in ("Tumour segmentation in brain MRI", "Organ segmentation for CT"):
                params = dict(httpx.URL(links[title][0]).params)
                assert http.post(f"{site.url}/feedback", data=params).status_code == 200
            history = invoke(site.config, "history", "--subscriber", "mia@example.org", environ=ENV)
            assert (
                "suggestion: 3 papers you marked not relevant came only through" in history.output
            )
            preferences = site.links["mia@example.org"]["Preferences"]
            page = http.get(preferences).text
            assert "Suggested by your feedback" in page and "add “road” to your exclusions" in page
            token = re.search(r"[?&]t=([^&]+)", preferences).group(1)  # type: ignore[union-attr]
            apply = {"t": token, "change": "exclude", "keyword": "segmentation", "value": "road"}
            done = http.post(f"{site.url}/preferences/suggestion", data=apply)
            assert done.status_code == 200 and "Saved." in done.text
            profiles = (site.folder / "subscribers.yaml").read_text()
            assert "    exclude: [road]\n" in profiles and "# her research" in profiles
            assert "# The operator's file: comments stay." in profiles
            made_up = apply | {"value": "anything"}
            refused = http.post(f"{site.url}/preferences/suggestion", data=made_up)
            assert refused.status_code == 400 and "no longer fits" in refused.text
            assert (site.folder / "subscribers.yaml").read_text() == profiles
