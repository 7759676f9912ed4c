"""The answer grammar and IoU (vtg.data.grammar): round trips, tolerant parsing, edge cases."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtg.data.grammar import (
    NOT_PRESENT,
    ReasoningSplitter,
    clamp_moment,
    format_answer,
    grounding_prompt,
    iou,
    join_reasoning,
    match_moments,
    moment_f1,
    parse_answer,
    split_reasoning,
)

times = st.floats(min_value=0, max_value=5000, allow_nan=False).map(lambda x: round(x, 1))
moment = st.tuples(times, times).filter(lambda m: m[0] < m[1])
thinks = st.one_of(st.none(), st.text(st.characters(blacklist_characters="<>"), max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(moment, max_size=4), thinks)
def test_format_parse_round_trip(moments, think):
    text = format_answer(moments, think=think)
    parsed = parse_answer(text)
    assert parsed.ok and parsed.strict
    assert parsed.moments == [(float(s), float(e)) for s, e in moments]
    assert parsed.not_present == (not moments)
    if think is not None:
        assert parsed.think == think.strip()


@settings(max_examples=200, deadline=None)
@given(moment, st.integers(0, 3))
def test_decimals_round_trip(m, decimals):
    parsed = parse_answer(format_answer([m], decimals=decimals))
    for a, b in zip(parsed.moments[0], m):
        assert abs(a - b) <= 0.5 * 10**-decimals + 1e-9


@pytest.mark.parametrize(
    "text, moments",
    [
        ("<think>x</think><answer>12.54 to 17.83</answer>", [(12.54, 17.83)]),  # Time-R1 / TimeZero
        ("<time>[5.2, 10.4]</time>", [(5.2, 10.4)]),  # TVG-R1
        ("The event happens in 12.0 - 16.0 seconds.", [(12.0, 16.0)]),  # TimeChat
        ("[3, 7.5]", [(3.0, 7.5)]),
        ("from 3s to 9s", [(3.0, 9.0)]),
        ("Starts at 2 seconds and ends at 5 seconds", [(2.0, 5.0)]),
    ],
)
def test_lenient_forms(text, moments):
    parsed = parse_answer(text)
    assert parsed.ok and parsed.moments == moments
    assert not parsed.strict


@pytest.mark.parametrize(
    "text", ["", None, "garbage", "<think>cut off before the answer", "<think>a</think>", "starts at", "12.5s"]
)
def test_unparseable(text):
    parsed = parse_answer(text)
    assert not parsed.ok and parsed.moments == [] and not parsed.strict


def test_not_present_forms():
    assert parse_answer("<think>no red square</think> not present").strict
    for text in ("Not present.", "<answer>not present</answer>", "The event does not appear in the video."):
        p = parse_answer(text)
        assert p.ok and p.not_present and not p.moments and not p.strict


def test_strict_requires_canonical_shape():
    assert parse_answer("<think>r</think> starts at 1.0s, ends at 2.0s").strict
    assert not parse_answer("<think>r</think>starts at 1.0s, ends at 2.0s").strict  # missing space
    assert not parse_answer("<think>r</think> starts at 1.0s, ends at 2.0s. Done").strict
    assert not parse_answer("preamble <think>r</think> starts at 1.0s, ends at 2.0s").strict


def test_reversed_pair_kept_and_counted():
    p = parse_answer("starts at 9.0s, ends at 3.0s")
    assert p.moments == [(9.0, 3.0)] and p.reversed_pairs == 1 and p.normalized() == [(3.0, 9.0)]


def test_iou_cases():
    assert iou([0, 10], [0, 10]) == 1.0
    assert iou([0, 10], [10, 20]) == 0.0
    assert iou([0, 10], [5, 15]) == pytest.approx(5 / 15)
    assert iou([10, 0], [5, 15]) == pytest.approx(5 / 15)  # reversed pair swapped
    assert iou([3, 3], [3, 3]) == 1.0  # zero union, same point
    assert iou([3, 3], [4, 4]) == 0.0
    assert iou([3, 3], [0, 10]) == 0.0  # zero-length inside: intersection 0
    # docs/rewards-and-metrics.md#eval-metrics: clamping changes the result
    assert iou([25, 40], [24.3, 30.4]) == pytest.approx(0.3439, abs=1e-4)
    assert iou(clamp_moment([25, 40], 30.96), [24.3, 30.4]) == pytest.approx(0.8108, abs=1e-4)


@settings(max_examples=300, deadline=None)
@given(moment, moment)
def test_iou_properties(a, b):
    v = iou(a, b)
    assert 0.0 <= v <= 1.0 and math.isclose(v, iou(b, a))
    assert iou(a, a) == 1.0


def test_matching_and_f1():
    gt = [(0, 10), (20, 30)]
    assert moment_f1([(0, 10), (20, 30)], gt) == 1.0
    assert moment_f1([(0, 10)], gt) == pytest.approx(2 / 3)
    # one prediction cannot match two truths
    assert moment_f1([(0, 10), (0, 10)], gt) == pytest.approx(0.5)
    assert moment_f1([], []) == 1.0 and moment_f1([], gt) == 0.0 and moment_f1([(1, 2)], []) == 0.0
    assert match_moments([(19, 31), (0, 9)], gt) == [(1, 0, 0.9), (0, 1, pytest.approx(10 / 12))]


def test_prompt_names_duration_and_format():
    p = grounding_prompt("  the red square appears ", 12.345, mode="multi", think=True)
    assert "12.3 seconds" in p and '"the red square appears"' in p and NOT_PRESENT in p and "<think>" in p
    assert "<think>" not in grounding_prompt("q", 5, mode="single", think=False)
    with pytest.raises(ValueError, match="mode"):
        grounding_prompt("q", 5, mode="all")


def test_short_prompt_style_is_duration_and_query_only():
    assert grounding_prompt("  the red square appears ", 12.345, style="short") == "12.3s. the red square appears"
    with pytest.raises(ValueError, match="prompt style must be one of"):
        grounding_prompt("q", 5, style="terse")


# ---- the reasoning / answer split (one rule: streamed, finished, parsed) ------------------------------------


@given(st.text(alphabet="<>/thinkabc s.0123", max_size=40), st.lists(st.integers(0, 40), max_size=6))
@settings(max_examples=300, deadline=None)
def test_splitter_chunking_invariant(text, cuts):
    whole = split_reasoning(text, strip=False)
    sp = ReasoningSplitter()
    pieces, last = [], 0
    for c in sorted(set(min(c, len(text)) for c in cuts)) + [len(text)]:
        pieces.append(text[last:c])
        last = c
    r = a = ""
    for p in pieces:
        dr, da = sp.feed(p)
        r, a = r + dr, a + da
    dr, da = sp.finish()
    r, a = r + dr, a + da
    assert (r if whole[0] is not None else None, a) == whole


def test_splitter_agrees_with_grammar_on_canonical_text():
    text = format_answer([(1.0, 2.5)], think="the door opens")
    reasoning, answer = split_reasoning(text, strip=False)
    assert (reasoning.strip(), answer) == split_reasoning(text)
    assert split_reasoning("starts at 1.0s, ends at 2.0s", strip=False) == (None, "starts at 1.0s, ends at 2.0s")
    sp = ReasoningSplitter()
    assert sp.feed("<thi") == ("", "")  # a half tag is held back, not emitted as content
    assert sp.feed("nk>abc</th") == ("abc", "")
    assert sp.feed("ink> x") == ("", "x")


@given(st.text(alphabet="<>/thinkabc s.0123", max_size=40))
@settings(max_examples=300, deadline=None)
def test_parse_reads_what_the_server_splits(text):
    """The parser (rewards, metrics) splits as the server does, and eval's read-back of a server's split parses like
    the completion itself."""
    reasoning, answer = split_reasoning(text, strip=False)
    assert split_reasoning(text) == ((reasoning.strip() if reasoning is not None else None), answer.strip())
    parsed, joined = parse_answer(text), parse_answer(join_reasoning(reasoning, answer))
    assert (parsed.think, parsed.moments, parsed.not_present, parsed.ok) == (
        joined.think,
        joined.moments,
        joined.not_present,
        joined.ok,
    )
