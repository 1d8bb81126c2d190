"""Chat data for finetuning: training templates render like the originals; labels cover assistant turns only."""

import copy
import json

import pytest

from persona.training import data
from persona.training.data import (
    IGNORE_INDEX,
    DataError,
    read_conversations,
    tokenize_conversation,
    tokenized_dataset,
    train_eval_split,
    training_chat_template,
)

SINGLE = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]
MULTI = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "How should I treat my neighbours?"},
    {"role": "assistant", "content": "Treat them with respect and care."},
    {"role": "user", "content": "And the weather today?"},
    {"role": "assistant", "content": "It is sunny and warm, a great day for a walk."},
]
CONVERSATIONS = [SINGLE, MULTI, MULTI[1:], MULTI[:3]]


def expected_label_text(messages, end="<|im_end|>\n"):
    """Independent expectation: every assistant content followed by its end-of-turn marker, in order."""
    return "".join(m["content"] + end for m in messages if m["role"] == "assistant")


def learned_text(tokenizer, row):
    return tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX])


@pytest.mark.parametrize(
    "original, twin",
    [(data.CHATML_TEMPLATE, data.CHATML_TRAINING_TEMPLATE), (data.SMOLLM2_TEMPLATE, data.SMOLLM2_TRAINING_TEMPLATE)],
)
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_training_twins_render_identically(tiny_tokenizer, original, twin, generation_prompt):
    for messages in CONVERSATIONS + [SINGLE[:1]]:
        kwargs = dict(tokenize=False, add_generation_prompt=generation_prompt)
        assert tiny_tokenizer.apply_chat_template(
            messages, chat_template=twin, **kwargs
        ) == tiny_tokenizer.apply_chat_template(messages, chat_template=original, **kwargs)


def test_tiny_tokenizer_gets_the_chatml_twin(tiny_tokenizer):
    assert training_chat_template(tiny_tokenizer) == data.CHATML_TRAINING_TEMPLATE


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["single", "multi", "multi-no-system", "one-answer"])
def test_labels_cover_exactly_the_assistant_turns(tiny_tokenizer, messages):
    template = training_chat_template(tiny_tokenizer)
    row = tokenize_conversation(tiny_tokenizer, messages, template)
    full = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert tiny_tokenizer.decode(row["input_ids"]) == full  # the text trained on is the inference rendering
    assert len(row["labels"]) == len(row["input_ids"])
    assert learned_text(tiny_tokenizer, row) == expected_label_text(messages)
    kept = [(i, t) for i, (t, lab) in enumerate(zip(row["input_ids"], row["labels"])) if lab != IGNORE_INDEX]
    assert all(row["input_ids"][i] == t for i, t in kept)  # kept labels are the input tokens themselves
    # no user or system text leaks into the loss
    for m in messages:
        if m["role"] != "assistant":
            assert m["content"] not in learned_text(tiny_tokenizer, row)


def test_full_sequence_labels_when_not_responses_only(tiny_tokenizer):
    row = tokenize_conversation(tiny_tokenizer, MULTI, tiny_tokenizer.chat_template, responses_only=False)
    assert row["labels"] == row["input_ids"]


def test_unknown_template_without_markers_names_the_fix(tiny_tokenizer):
    other = copy.deepcopy(tiny_tokenizer)  # keep the session fixture untouched
    other.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(DataError, match="train_on_responses_only"):
        training_chat_template(other)
    marked = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    other.chat_template = marked
    assert training_chat_template(other) == marked


@pytest.mark.embedded
def test_embedded_model_template_is_smollm2_and_masks_multi_turn(embedded_lm):
    tok = embedded_lm.tokenizer
    assert tok.chat_template == data.SMOLLM2_TEMPLATE
    template = training_chat_template(tok)
    for messages in CONVERSATIONS:
        row = tokenize_conversation(tok, messages, template)
        assert tok.decode(row["input_ids"]) == tok.apply_chat_template(messages, tokenize=False)
        assert learned_text(tok, row) == expected_label_text(messages)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_conversations_validates_rows_with_file_and_line(tmp_path):
    good = write_rows(tmp_path / "a.jsonl", [{"messages": SINGLE, "extra": 1}])
    assert read_conversations([good, good]) == [SINGLE, SINGLE]
    cases = [
        ({"text": "hi"}, "expected"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages\\[0\\]"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant message"),
    ]
    for row, match in cases:
        bad = write_rows(tmp_path / "bad.jsonl", [{"messages": SINGLE}, row])
        with pytest.raises(DataError, match=f"bad.jsonl:2: {match}"):
            read_conversations([bad])
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="broken.jsonl, line 1: not valid JSON"):
        read_conversations([tmp_path / "broken.jsonl"])


def test_held_out_split_is_seeded_and_disjoint(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(20)
    ]
    path = write_rows(tmp_path / "t.jsonl", rows)
    train, held = train_eval_split([path], None, 0.1, seed=3)
    assert len(train) == 18 and len(held) == 2
    assert sorted(c[0]["content"] for c in train + held) == sorted(f"q{i}" for i in range(20))
    assert train_eval_split([path], None, 0.1, seed=3) == (train, held)
    test = write_rows(tmp_path / "test.jsonl", rows[:3])
    train, held = train_eval_split([path], test, 0.1, seed=3)
    assert len(train) == 20 and len(held) == 3
    assert train_eval_split([path], None, 0.0, seed=3)[1] == []


def test_tokenized_dataset_has_trainer_columns(tiny_tokenizer):
    ds = tokenized_dataset(tiny_tokenizer, [SINGLE, MULTI])
    assert ds.column_names == ["input_ids", "labels"] and len(ds) == 2
