"""Model profiles: how a checkpoint family is asked and read, as its authors asked and read it.

A profile fixes the question's wording (template, system prompt, text or video first, how the query is cleaned), its
thinking mode, the frame sampling and the answer parser (a named parser of `vtg.data.grammar`). `vtg` is vtg's own
prompt (`grammar.grounding_prompt`) and the folder's own sampling, unchanged; the others re-express the inference
and eval code of the released models, cited in docs/eval.md#model-profiles. `vtg.request.GroundingPrompt` renders a
profile; eval and serve take `profile:`, and a model folder records its own in `vtg_prompt.json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vtg.errors import UserError

if TYPE_CHECKING:
    from vtg.data.video import FrameSampling
    from vtg.model_folder import ModelFolder

DEFAULT_PROFILE = "vtg"
THINKING = ("asked", "r1", "none")  # vtg's think flag words the prompt | Time-R1's two modes | no thinking mode


def _as_given(query: str) -> str:
    return query


def _stripped(query: str) -> str:
    return query.strip()


def _timelens_query(query: str) -> str:
    # TimeLens-Bench's annotation loader: whitespace runs collapsed, then outer spaces and periods removed
    return re.sub(r"\s+", " ", query).strip().strip(".").strip()


QUERY_FORMS = {"as-given": _as_given, "stripped": _stripped, "timelens": _timelens_query}


@dataclass(frozen=True)
class Profile:
    """One way of asking and reading a checkpoint family.

    `template` is a `str.format` template with `{query}` (and `{duration}`, seconds); None means vtg's own
    `grounding_prompt`. `sampling` holds FrameSampling keys; `min_tokens` / `total_tokens` are pixel budgets in
    visual tokens (times the family's image factor squared, as the official scripts write them). `families` are
    the model families the profile was written for; asking another one is refused.
    """

    name: str
    template: str | None = None
    system: str | None = None
    text_first: bool = False  # the question before the video (the Qwen2.5-VL cookbook)
    query_form: str = "stripped"
    thinking: str = "asked"
    no_think_suffix: str = ""  # `r1` thinking with think off: appended after the generation prompt
    sampling: dict = field(default_factory=dict)
    parser: str = "vtg"
    families: tuple[str, ...] = ("qwen2.5-vl", "qwen3-vl")

    def __post_init__(self) -> None:
        if self.thinking not in THINKING or self.query_form not in QUERY_FORMS:
            raise ValueError(f"profile {self.name}: bad thinking {self.thinking!r} or query_form {self.query_form!r}")

    def question(self, query: str, duration: float) -> str:
        """The question's text (non-`vtg` profiles; `vtg` words it with `grammar.grounding_prompt`)."""
        return self.template.format(query=QUERY_FORMS[self.query_form](query), duration=duration)

    def suffix(self, think: bool) -> str:
        """Text after the chat template's generation prompt: Time-R1's empty thinking block when think is off."""
        return self.no_think_suffix if self.thinking == "r1" and not think else ""

    def frame_sampling(self, family: str) -> FrameSampling:
        """The profile's frame sampling for a model family (qwen-vl-utils' defaults for keys it does not set)."""
        from vtg.data.video import FrameSampling
        from vtg.model_folder import IMAGE_FACTOR

        self.check_family(family)
        f = IMAGE_FACTOR[family]
        keys = {k: v for k, v in self.sampling.items() if not k.endswith("_tokens")}
        for name in ("min", "total"):
            if f"{name}_tokens" in self.sampling:
                keys[f"{name}_pixels"] = self.sampling[f"{name}_tokens"] * f * f
        return FrameSampling.from_dict({**keys, "image_factor": f}, f"profile {self.name} sampling")

    def check_family(self, family: str) -> None:
        if family not in self.families:
            raise UserError(
                f"profile {self.name!r} is for {' and '.join(self.families)} checkpoints, not {family}; "
                f"pick a profile for {family} ({', '.join(n for n, p in PROFILES.items() if family in p.families)})"
            )


# The official texts, byte for byte (sources: docs/eval.md#model-profiles; tests/fixtures/profiles/ hold them with
# their repo, path and commit, and tests/test_profiles.py checks the rendering against them).
_TIME_R1_TEMPLATE = (
    'To accurately pinpoint the event "{query}" in the video, determine the precise time period of the event.\n\n'
    "Output your thought process within the <think> </think> tags, including analysis with either specific time "
    "ranges (xx.xx to xx.xx) in <timestep> </timestep> tags.\n\n"
    "Then, provide the start and end times (in seconds, precise to two decimal places) in the format "
    '"start time to end time" within the <answer> </answer> tags. For example: "12.54 to 17.83".'
)
_TIMELENS_TEMPLATE = (
    "Please find the visual event described by the sentence '{query}', determining its starting and ending times. "
    "The format should be: 'The event happens in <start time> - <end time> seconds'."
)
_QWEN_COOKBOOK_TEMPLATE = "Give the query: '{query}', when does the described content occur in the video?"
_QWEN_SYSTEM = "You are a helpful assistant."

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("vtg"),
        Profile(
            "time-r1",
            template=_TIME_R1_TEMPLATE,
            system=_QWEN_SYSTEM,
            query_form="as-given",
            thinking="r1",
            no_think_suffix="<think>\n</think>\n",
            sampling={"fps": 2.0, "max_frames": 768, "min_tokens": 16, "total_tokens": 3584},
            parser="time-r1",
            families=("qwen2.5-vl",),
        ),
        Profile(
            "timelens",
            template=_TIMELENS_TEMPLATE,
            query_form="timelens",
            thinking="none",
            sampling={"fps": 2.0, "min_tokens": 64, "total_tokens": 14336},
            parser="timelens",
        ),
        Profile(
            "qwen2.5-vl",
            template=_QWEN_COOKBOOK_TEMPLATE,
            system=_QWEN_SYSTEM,
            text_first=True,
            query_form="as-given",
            thinking="none",
            sampling={"fps": 2.0, "min_tokens": 16, "total_tokens": 20480},
            parser="timestamps",
            families=("qwen2.5-vl",),
        ),
        Profile(
            "qwen3-vl",
            template=_QWEN_COOKBOOK_TEMPLATE,
            query_form="as-given",
            thinking="none",
            sampling={"fps": 2.0, "max_frames": 2048, "min_tokens": 64, "total_tokens": 20480},
            parser="timestamps",
            families=("qwen3-vl",),
        ),
    )
}


def get_profile(name: str | None, where: str = "profile") -> Profile:
    """The named profile (None: `vtg`); an unknown name is a `UserError` listing the known ones."""
    if name is None:
        return PROFILES[DEFAULT_PROFILE]
    if name not in PROFILES:
        raise UserError(f"{where}: unknown profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return PROFILES[name]


def check_profile(name: str | None, where: str = "profile") -> None:
    """Refuse an unknown profile name (None is allowed: "the model's own")."""
    if name is not None:
        get_profile(name, where)


def sampling_for(folder: ModelFolder, profile: str) -> FrameSampling:
    """A folder's frame sampling under a profile: `vtg` keeps the folder's own (vtg_sampling.json or the family's
    default), any other profile samples as its official code does."""
    p = get_profile(profile)
    return folder.sampling if p.name == DEFAULT_PROFILE else p.frame_sampling(folder.family)
