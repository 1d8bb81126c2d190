"""Chat JSONL for finetuning: loading, training chat templates and assistant-only labels.

Rows are `{"messages": [{"role": ..., "content": ...}, ...]}`. With assistant-only loss
every token outside an assistant turn gets label -100, so the model learns the answers
(and to end its turn) but not the questions. Masks come from `{% generation %}` markers:
a template that lacks them is swapped for a training twin that renders the same text
with the markers added (TRL ships twins for Qwen, Llama, Gemma...; SmolLM2 and plain
ChatML twins live here).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

from persona.errors import InputError
from persona.io import read_jsonl

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100

_CHATML_TURN = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
_CHATML_GEN_PROMPT = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
_SMOLLM2_DEFAULT_SYSTEM = (
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI "
    "assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
)
_ASSISTANT_TURN = (
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}{% else %}" + _CHATML_TURN + "{% endif %}"
)

# SmolLM2-Instruct's own template (the embedded model ships it) and its training twin.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}" + _SMOLLM2_DEFAULT_SYSTEM + _CHATML_TURN + "{% endfor %}" + _CHATML_GEN_PROMPT
)
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}" + _SMOLLM2_DEFAULT_SYSTEM + _ASSISTANT_TURN + "{% endfor %}" + _CHATML_GEN_PROMPT
)
# Plain ChatML (no default system prompt) and its training twin.
CHATML_TEMPLATE = "{% for message in messages %}" + _CHATML_TURN + "{% endfor %}" + _CHATML_GEN_PROMPT
CHATML_TRAINING_TEMPLATE = "{% for message in messages %}" + _ASSISTANT_TURN + "{% endfor %}" + _CHATML_GEN_PROMPT

TRAINING_TWINS = {SMOLLM2_TEMPLATE: SMOLLM2_TRAINING_TEMPLATE, CHATML_TEMPLATE: CHATML_TRAINING_TEMPLATE}


class DataError(InputError):
    """A finetuning file or row is malformed; the message names the file, line and fix."""


def training_chat_template(tokenizer: PreTrainedTokenizerBase) -> str:
    """A template with `{% generation %}` markers that renders exactly like the tokenizer's own."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template["default"]
    if not template:
        raise DataError("the tokenizer has no chat template; finetuning needs chat-formatted training text")
    if has_generation_markers(template):
        return template
    if template in TRAINING_TWINS:
        return TRAINING_TWINS[template]
    try:
        twin = get_training_chat_template(tokenizer)
    except ValueError:
        twin = None
    if twin is None:
        raise DataError(
            "no training twin (with {% generation %} markers) is known for this tokenizer's chat "
            'template, so assistant-only labels cannot be built. Set "train_on_responses_only": '
            "false to train on every token, or give the tokenizer a template with generation markers."
        )
    return twin


def _check_row(row: object, where: str, require_assistant: bool = True) -> Conversation:
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        raise DataError(f'{where}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
    messages = []
    for i, msg in enumerate(row["messages"]):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
            raise DataError(f"{where}: messages[{i}] needs a role in {list(ROLES)} and a string content, got {msg!r}")
        messages.append({"role": msg["role"], "content": msg["content"]})
    if require_assistant and not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant message, so nothing would be learned from this row")
    return messages


def read_chat_file(
    path: str | os.PathLike, *, skip_unanswered: bool = False
) -> tuple[list[tuple[int, Conversation]], list[str]]:
    """(row number, conversation) of each row of one chat JSONL file, and what was skipped.

    A row without an assistant message is an error, or with `skip_unanswered` skipped and
    reported as `path:N: ...` (screening reads other people's data; finetuning must not skip).
    """
    try:
        rows = read_jsonl(path)
    except ValueError as err:
        raise DataError(str(err)) from None  # names the file and the line
    if not rows:
        raise DataError(f"{path}: no rows")
    numbered, skipped = [], []
    for n, row in enumerate(rows, start=1):
        messages = _check_row(row, f"{path}:{n}", require_assistant=not skip_unanswered)
        if any(m["role"] == "assistant" for m in messages):
            numbered.append((n, messages))
        else:
            skipped.append(f"{path}:{n}: no assistant message; skipped")
    return numbered, skipped


def read_conversations(paths: Sequence[str | os.PathLike]) -> list[Conversation]:
    """All conversations of one or more chat JSONL files, in order, validated row by row."""
    return [messages for path in paths for _, messages in read_chat_file(path)[0]]


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: Conversation, template: str, responses_only: bool = True
) -> dict[str, list[int]]:
    """`input_ids` and `labels` for one conversation; labels are -100 outside assistant turns when `responses_only`."""
    enc = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=responses_only
    )
    assert isinstance(enc, Mapping)  # return_dict=True
    ids = list(enc["input_ids"])
    if not responses_only:
        return {"input_ids": ids, "labels": list(ids)}
    labels = [tok if keep else IGNORE_INDEX for tok, keep in zip(ids, enc["assistant_masks"])]
    return {"input_ids": ids, "labels": labels}


def tokenized_dataset(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation], responses_only: bool = True
) -> Dataset:
    """A `Dataset` of `input_ids`/`labels` ready for SFTTrainer (which truncates and pads)."""
    template = training_chat_template(tokenizer) if responses_only else tokenizer.chat_template
    rows = [tokenize_conversation(tokenizer, c, template, responses_only) for c in conversations]
    return Dataset.from_list(rows)


def train_eval_split(
    train_files: Sequence[str | os.PathLike], test_file: str | os.PathLike | None, test_size: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """Train and held-out conversations: the test file if given, else a seeded `test_size` split."""
    train = read_conversations(train_files)
    if test_file is not None:
        return train, read_conversations([test_file])
    if test_size <= 0 or len(train) < 2:
        return train, []
    split = Dataset.from_dict({"i": list(range(len(train)))}).train_test_split(test_size=test_size, seed=seed)
    log.info("holding out %d of %d conversations for evaluation (no test_file)", len(split["test"]), len(train))
    return [train[i] for i in split["train"]["i"]], [train[i] for i in split["test"]["i"]]
