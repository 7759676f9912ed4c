"""Reward table tests: hand-made completions, expected values worked out by hand."""

import pytest

from vtg.errors import UserError
from vtg.train.rewards import REWARDS, completion_text, get_reward

D = 20.0
ONE = [[4.0, 8.0]]
TWO = [[2.0, 4.0], [10.0, 14.0]]

# (reward, completion, truth, expected)
TABLE = [
    # plain IoU
    ("tiou", "starts at 4.0s, ends at 8.0s", ONE, 1.0),
    ("tiou", "<think>red square</think> starts at 4.0s, ends at 6.0s", ONE, 0.5),
    ("tiou", "starts at 8.0s, ends at 4.0s", ONE, 1.0),  # reversed pair is swapped
    ("tiou", "starts at 10.0s, ends at 12.0s", ONE, 0.0),  # disjoint
    ("tiou", "4.0 to 8.0", ONE, 1.0),  # lenient form still scores
    ("tiou", "I think it's around the middle", ONE, 0.0),  # unparseable
    ("tiou", "", ONE, 0.0),
    ("tiou", "not present", ONE, 0.0),  # denies a true moment
    ("tiou", "not present", [], 1.0),  # correctly absent
    ("tiou", "starts at 1.0s, ends at 2.0s", [], 0.0),  # invents a moment
    ("tiou", "starts at 10.0s, ends at 14.0s; starts at 0.0s, ends at 1.0s", TWO, 1.0),  # top-1 vs best truth
    ("tiou", "starts at 4.0s, ends at 30.0s", ONE, 4.0 / 16.0),  # clamped to [0, D]: [4, 20]
    # Time-R1 v2: IoU 0.5 * (1 - 0/20) * (1 - 2/20)
    ("tiou_v2", "starts at 4.0s, ends at 6.0s", ONE, 0.5 * 1.0 * 0.9),
    ("tiou_v2", "starts at 4.0s, ends at 8.0s", ONE, 1.0),
    # IoU 2/6 * (1 - 2/20) * (1 - 0/20)
    ("tiou_v2", "starts at 2.0s, ends at 8.0s", ONE, (4.0 / 6.0) * 0.9),
    ("tiou_v2", "garbage", ONE, 0.0),
    ("tiou_v2", "not present", [], 1.0),
    # multi-moment soft F1
    ("multi_moment", "starts at 2.0s, ends at 4.0s; starts at 10.0s, ends at 14.0s", TWO, 1.0),
    ("multi_moment", "starts at 2.0s, ends at 4.0s", TWO, 2 * 1.0 * 0.5 / 1.5),  # P=1, R=0.5
    # P = (1 + 0.5)/2, R = (1 + 0.5)/2 -> F1 0.75
    ("multi_moment", "starts at 2.0s, ends at 4.0s; starts at 10.0s, ends at 12.0s", TWO, 0.75),
    # a duplicate of one moment does not count twice: matched 1.0, P=1/2, R=1/2
    ("multi_moment", "starts at 2.0s, ends at 4.0s; starts at 2.0s, ends at 4.0s", TWO, 0.5),
    ("multi_moment", "not present", [], 1.0),
    ("multi_moment", "starts at 2.0s, ends at 4.0s", [], 0.0),
    ("multi_moment", "not present", TWO, 0.0),
    ("multi_moment", "no idea", TWO, 0.0),
    # moment count: 1 - |n - n_true| / max(n, n_true), IoU ignored
    (
        "moment_count",
        "starts at 0.0s, ends at 1.0s; starts at 5.0s, ends at 6.0s",
        TWO,
        1.0,
    ),  # right count, wrong times
    ("moment_count", "starts at 2.0s, ends at 4.0s", TWO, 0.5),  # one of two: the F1 above pays 0.667
    (
        "moment_count",
        "starts at 2.0s, ends at 4.0s; starts at 10.0s, ends at 14.0s; starts at 16.0s, ends at 18.0s",
        TWO,
        1.0 - 1.0 / 3.0,
    ),
    ("moment_count", "not present", [], 1.0),
    ("moment_count", "starts at 2.0s, ends at 4.0s", [], 0.0),
    ("moment_count", "not present", TWO, 0.0),
    ("moment_count", "no idea", TWO, 0.0),
    # format: canonical form only
    ("format", "<think>a red square appears</think> starts at 4.0s, ends at 8.0s", ONE, 1.0),
    ("format", "starts at 4.0s, ends at 8.0s", ONE, 1.0),
    ("format", "not present", ONE, 1.0),  # format is about form, not truth
    ("format", "<answer>4.0 to 8.0</answer>", ONE, 0.0),
    ("format", "starts at 4.0s, ends at 8.0s and then more", ONE, 0.0),
    ("format", "<think>unfinished", ONE, 0.0),
    # not-present detection alone
    ("not_present", "not present", [], 1.0),
    ("not_present", "starts at 1.0s, ends at 2.0s", [], 0.0),
    ("not_present", "starts at 1.0s, ends at 2.0s", ONE, 1.0),
    ("not_present", "not present", ONE, 0.0),
    ("not_present", "???", [], 0.0),
]


@pytest.mark.parametrize("name,text,truth,expected", TABLE)
def test_reward_table(name, text, truth, expected):
    fn = REWARDS[name]
    got = fn([text], moments=[truth], duration=[D])
    assert got == [pytest.approx(expected)]


def test_trl_call_shape_and_conversational_completions():
    """TRL passes every dataset column as a keyword and conversational completions as message lists."""
    fn = get_reward("tiou")
    assert fn.__name__ == "tiou"  # TRL logs rewards/<__name__>/mean
    comps = [[{"role": "assistant", "content": "starts at 4.0s, ends at 8.0s"}], "not present"]
    got = fn(
        prompts=["p", "p"],
        completions=comps,
        moments=[ONE, []],
        duration=[D, D],
        query=["q", "q"],
        completion_ids=[[1], [2]],
        trainer_state=None,
    )
    assert got == [1.0, 1.0]


def test_format_requires_think_when_column_says_so():
    texts = ["starts at 4.0s, ends at 8.0s", "<think>x</think> starts at 4.0s, ends at 8.0s"]
    assert REWARDS["format"](texts, think=[True, True]) == [0.0, 1.0]
    assert REWARDS["format"](texts, think=[False, False]) == [1.0, 1.0]


def test_unknown_reward_names_the_known_ones():
    with pytest.raises(UserError, match="tiou_v2"):
        get_reward("tIoU")


def test_completion_text_forms():
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]) == "a"
    assert completion_text(None) == ""
