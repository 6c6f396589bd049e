"""What crosses the pipes to and from the rendering workers pickles as a tuple of field
values, and comes back equal."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields

from newsletter.files.pickling import pickled_as_tuple
from newsletter.matching.keywords import parse_keyword
from newsletter.models import Envelope, RenderedEmail, Subscriber
from newsletter.send.produce import Produced


def emailed() -> Produced:
    envelope = Envelope("digest@example.org", "ada@example.org")
    email = RenderedEmail(
        "ada@example.org", "Subject", "<p>", "text", "<m@x>", ("p1", "p2"), b"data", envelope, True
    )
    return Produced("ada@example.org", email, None)


def test_worker_results_and_profiles_come_back_equal_from_field_tuples() -> None:
    keywords = (parse_keyword("large language model | LLM"), parse_keyword("compress*"))
    subscriber = Subscriber("ada@example.org", keywords, name="Ada", max_papers=3, line=7)
    pattern = keywords[0].patterns[0]  # a named tuple: pickled as one already
    assert pickle.loads(pickle.dumps(pattern)) == pattern and hash(pattern) == hash(tuple(pattern))
    for keyword in keywords:  # as their text, through parse_keyword's cache: one object
        assert keyword.__reduce__() == (parse_keyword, (keyword.text,))
        assert pickle.loads(pickle.dumps(keyword)) is parse_keyword(keyword.text)
    for value in (emailed(), subscriber):
        cls, values = value.__reduce__()
        assert cls is type(value) and isinstance(values, tuple)
        assert len(values) == len([f for f in fields(value) if f.init])
        back = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == value and type(back) is type(value)
    assert pickle.loads(pickle.dumps(keywords[0])).key == keywords[0].key  # (made again)


def test_a_class_of_one_field_pickles_too() -> None:
    @pickled_as_tuple
    @dataclass(frozen=True)
    class One:
        value: int
        derived: int = field(init=False, default=0)

    assert One.__reduce__(One(3)) == (One, (3,))
