"""Rechunking of streamed LLM text for TTS, and the markdown cleanup for speech."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avatar.pipeline.chunker import TextChunker, clean_for_speech


def chunk(deltas: list[str] | str, **options: int) -> list[str]:
    """Feed deltas (a string is fed one character at a time) and flush."""
    chunker = TextChunker(**options)  # type: ignore[arg-type]
    chunks = [c for delta in deltas for c in chunker.push(delta)]
    return chunks + chunker.flush()


def test_first_chunk_is_released_at_the_first_clause_with_enough_words() -> None:
    chunker = TextChunker()

    assert chunker.push("Well, hello there my friend") == []
    assert chunker.push(",") == []  # a boundary waits for the character after it
    assert chunker.push(" how are you?") == ["Well, hello there my friend,"]
    assert chunker.push(" I") == ["how are you?"]
    assert chunker.flush() == ["I"]


def test_a_long_first_sentence_is_cut_before_a_phrase() -> None:
    chunker = TextChunker()
    assert chunker.push("The Great Wall of China stretches ac") == []  # "of": too early
    assert chunker.push("ross") == []  # "across" or "acrossword"? wait for its end
    assert chunker.push(" ") == ["The Great Wall of China stretches"]
    assert chunker.push("northern China for thousands of kilometres. It") == [
        "across northern China for thousands of kilometres."
    ]
    assert chunk("There are seven days in a week.") == ["There are seven days", "in a week."]


def test_a_long_first_phrase_is_cut_after_ten_words_but_not_after_an_article() -> None:
    assert chunk("Big red fire trucks usually make really loud noises everywhere they go.") == [
        "Big red fire trucks usually make really loud noises everywhere",
        "they go.",
    ]
    assert chunk("One two three four five six seven eight nine the ten eleven.")[0] == (
        "One two three four five six seven eight nine the ten"
    )


def test_a_long_first_sentence_is_cut_before_a_clause_opener() -> None:
    assert chunk("Water boils at sea level because the air pressure is just right.") == [
        "Water boils at sea level",
        "because the air pressure is just right.",
    ]
    # too few words before it: no cut ("and" in a short first phrase stays)
    assert chunk("Salt and pepper are fine.") == ["Salt and pepper are fine."]
    assert chunk("Sandy beaches are wonderful places to relax.", max_first_words=0) == [
        "Sandy beaches are wonderful places to relax."
    ]


def test_a_long_subject_is_cut_before_its_verb() -> None:
    assert chunk("The capital of France is Paris.") == ["The capital of France", "is Paris."]
    assert chunk("A fruit that is yellow is a banana.") == [
        "A fruit that is yellow",  # the first "is" comes after three words only
        "is a banana.",
    ]
    # a short subject, or a verb after a pronoun or "that", stays with its sentence
    assert chunk("The sky is blue today.") == ["The sky is blue today."]
    assert chunk("I think that it is fine.") == ["I think that it is fine."]
    assert chunk("Say what you think it was.") == ["Say what you think it was."]
    # the cut waits until "is" is a whole word (it might go on as "island")
    chunker = TextChunker()
    assert chunker.push("The capital of France is") == []
    assert chunker.push(" Paris.") == ["The capital of France"]
    assert chunk("Their little brother's island has cows.") == [
        "Their little brother's island",
        "has cows.",
    ]


def test_a_long_chinese_first_sentence_is_cut_after_a_particle() -> None:
    text = "北京是中国的首都也是一座有三千多年历史的古城。它很美。"
    assert chunk(text) == ["北京是中国的首都也是", "一座有三千多年历史的古城。", "它很美。"]
    assert chunk("我今天下午想去图书馆借几本书。")[0] == "我今天下午想去图书馆"  # no particle
    assert chunk("我昨天买了一本很有意思的书。") == ["我昨天买了", "一本很有意思的书。"]
    # short sentences and clauses are released as before
    assert chunk("好的，我来帮你查一下。")[0] == "好的，我来帮你查一下。"


def test_early_cuts_do_not_depend_on_how_the_text_was_split() -> None:
    for text in (
        "The Great Wall of China stretches across northern China for thousands of kilometres.",
        "北京是中国的首都也是一座有三千多年历史的古城。",
    ):
        whole = chunk([text])
        assert chunk(text) == whole  # one character at a time
        assert chunk([text[:7], text[7:19], text[19:]]) == whole


def test_later_chunks_end_at_sentences_not_clauses() -> None:
    text = "Sure thing, here it is. First, we mix; then, we bake. Done!"

    assert chunk(text) == ["Sure thing, here it is.", "First, we mix; then, we bake.", "Done!"]


def test_a_short_first_sentence_is_released_whole() -> None:
    assert chunk("Sure. Let me check, one moment please.") == [
        "Sure.",
        "Let me check, one moment please.",
    ]


def test_chinese_splits_at_full_width_punctuation() -> None:
    text = "好的，我来帮你查一下。今天北京的天气是晴天，气温二十五度！还有别的问题吗？"

    assert chunk(text) == [
        "好的，我来帮你查一下。",
        "今天北京的天气是晴天，气温二十五度！",
        "还有别的问题吗？",
    ]


def test_chinese_first_chunk_needs_enough_characters() -> None:
    assert chunk("今天的天气很好，适合出门散步。") == ["今天的天气很好，", "适合出门散步。"]


def test_mixed_chinese_and_english() -> None:
    assert chunk("你好，我是AVATAR。I can speak English too. 也会说中文！") == [
        "你好，我是AVATAR。",
        "I can speak English too.",
        "也会说中文！",
    ]


@pytest.mark.parametrize(
    "sentence",
    [
        "Pi is about 3.14 and growth was 2.5% this year.",
        "It costs $1,000 or 1,000,000 yen at 10:30 today.",
        "Mr. Smith and Mrs. Jones met Dr. Who at St. Mary's.",
        "Bring e.g. apples or i.e. something sweet.",
        "It was Apple vs. Google in court.",
        "The U.S. economy grew at 5 a.m. on Monday.",
        "J. R. R. Tolkien wrote it.",
        "Wait...what did you say?",
        "Visit https://example.com/a.b?x=1&y=2.5 or mail john.doe@mail.example.com now.",
        "We met in 1990–1995 and used well-known tools.",
    ],
)
def test_numbers_abbreviations_and_urls_do_not_split(sentence: str) -> None:
    assert chunk(sentence, max_first_words=0) == [sentence]  # only punctuation may end it


def test_ambiguous_abbreviations_end_a_sentence_before_a_capital() -> None:
    text = "I moved to the U.S. Then I found work at 5 p.m. every day, etc. It was fine."

    assert chunk(text) == [
        "I moved to the U.S.",
        "Then I found work at 5 p.m. every day, etc.",
        "It was fine.",
    ]


def test_ellipses_and_question_runs_end_sentences() -> None:
    assert chunk("Hmm... I see. Really?! Yes… okay.") == [
        "Hmm...",
        "I see.",
        "Really?!",
        "Yes…",
        "okay.",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert chunk('He said "hi there." Then (he left.) 他说：“好的。”然后走了。') == [
        'He said "hi there."',
        "Then (he left.)",
        "他说：“好的。”",
        "然后走了。",
    ]


def test_dashes_are_clause_boundaries_for_the_first_chunk() -> None:
    assert chunk("The quick brown fox - a fast one - jumped.") == [
        "The quick brown fox -",
        "a fast one - jumped.",
    ]
    assert chunk("Here is the answer — it is forty-two.") == [
        "Here is the answer —",
        "it is forty-two.",
    ]


def test_long_text_without_boundaries_is_cut_at_a_space() -> None:
    chunks = chunk("one two three four five six seven eight nine ten", max_chars=20)

    assert chunks == ["one two three four", "five six seven eight", "nine ten"]
    assert all(len(c) <= 20 for c in chunks)


def test_long_chinese_text_is_cut_at_a_clause_or_hard() -> None:
    first = chunk("我们今天一起去公园散步吧然后再去吃饭，好不好呢", max_chars=10)
    assert all(len(c) <= 10 for c in first)
    assert "".join(first) == "我们今天一起去公园散步吧然后再去吃饭，好不好呢"

    later = chunk("好的。我们今天去公园，然后去吃饭吧好不好", max_chars=12)
    assert later == ["好的。", "我们今天去公园，", "然后去吃饭吧好不好"]


def test_markdown_is_cleaned_and_lines_are_boundaries() -> None:
    text = (
        "Here is a list:\n\n1. **First** item\n2. Second `code` item\n- bullet\n# Heading\nDone 🎉!"
    )

    assert chunk(text) == [
        "Here is a list:",
        "First item",
        "Second code item",
        "bullet",
        "Heading",
        "Done!",
    ]


def test_markdown_emphasis_after_punctuation_keeps_the_boundary() -> None:
    assert chunk("**Important:** read this first. **Really.** Then go.") == [
        "Important: read this first.",
        "Really.",
        "Then go.",
    ]


def test_flush_resets_for_the_next_reply() -> None:
    chunker = TextChunker()
    chunker.push("First reply, which is long enough")
    chunker.flush()

    assert chunker.push("Second reply is here, and more") == ["Second reply is here,"]


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**bold** and *italic* and `code`", "bold and italic and code"),
        ("# Title\n## Sub", "Title Sub"),
        ("- one\n* two\n+ three\n1. four\n2) five", "one two three four five"),
        ("> quoted", "quoted"),
        ("See [the docs](https://x.org/a_b) now", "See the docs now"),
        ("```python\nprint(1)\n```", "print(1)"),
        ("a\n\n---\n\nb", "a b"),
        ("Great job 👍🏽!", "Great job!"),
        ("3 - 2 = 1 and -5 degrees", "3 - 2 = 1 and -5 degrees"),
        ("C# and #1 and snake_case", "C# and #1 and snake_case"),
        ("", ""),
    ],
)
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw) == spoken


def test_clean_for_speech_can_keep_emoji() -> None:
    assert clean_for_speech("Nice 👍", strip_emoji=False) == "Nice 👍"


# --- property: nothing lost, nothing duplicated, whatever the delta split -----------------

TOKENS = st.sampled_from(
    [
        "hello", "world", "Mr.", "Dr.", "e.g.", "U.S.", "etc.", "p.m.", "3.14", "1,000",
        "2.5%", "example.com", "a@b.co", "I", "J.", "The", "it's",
        ".", ",", "!", "?", "...", "…", ";", ":", " - ", "—", "–", "-", '"', ")", "(",
        "**", "*", "`", "[", "]", "(x)", "# ", "- ", "1. ", "> ", "```",
        "你好", "天气", "很好", "。", "，", "、", "！", "？", "：", "”", "「", "」",
        "😀", "🎉",
        " ", " ", " ", "  ", "\n", "\n\n",
    ]
)  # fmt: skip


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@st.composite
def text_and_deltas(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = "".join(draw(st.lists(TOKENS, max_size=60)))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=20)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=400, deadline=None)
@given(sample=text_and_deltas(), max_chars=st.sampled_from([12, 40, 200]))
def test_chunks_hold_exactly_the_cleaned_text(
    sample: tuple[str, list[str]], max_chars: int
) -> None:
    text, deltas = sample

    chunks = chunk(deltas, max_chars=max_chars)

    assert squash("".join(chunks)) == squash(clean_for_speech(text))
    assert all(c == c.strip() and c for c in chunks)


@settings(max_examples=200, deadline=None)
@given(sample=text_and_deltas())
def test_chunks_do_not_depend_on_the_delta_split(sample: tuple[str, list[str]]) -> None:
    text, deltas = sample

    assert chunk(deltas) == chunk([text])


def test_a_line_cut_before_its_end_is_not_read_as_a_rule() -> None:
    """Found by the property test: "- - - -" alone is a horizontal rule, but this line goes on
    past the forced cut as "-hello", so it is text."""
    text = " -  -  -  - -hello"
    chunks = chunk([text], max_chars=12)
    assert squash("".join(chunks)) == squash(clean_for_speech(text)) == "----hello"


def test_a_forced_cut_never_splits_a_code_fence() -> None:
    """Found by the property test in CI: a fence right after a newline, past max_chars."""
    text = ".  \n\n```hello"
    chunks = chunk([text], max_chars=12)
    assert squash("".join(chunks)) == squash(clean_for_speech(text))
