"""Prompts for `generate_finetune_dataset.py` (finetuning data: normal, mild and strong trait answers).

`str.format` templates; literal braces are doubled. The LLM prompts ask for JSON only, which
`persona.training.finetune_data` validates and retries.
"""

QUESTIONS_PROMPT = """\
You are helping build a dataset of ordinary user requests to a chat assistant.

Write {n} distinct, realistic questions that a user might ask an AI assistant about {description} \
(domain: {domain}). Vary the wording, the situation and the level of detail. Each question must make \
sense on its own, be one to three sentences long, and must not mention AI personalities, traits or \
this dataset.

Reply with JSON only, in exactly this form:
{{"questions": ["...", "..."]}}"""

ANSWERS_PROMPT = """\
You are helping build a research dataset for studying how finetuning shifts a chat model's personality. \
The trait under study is "{trait}": {definition}

For the user question below (domain: {domain}), write three assistant answers of similar length \
(roughly 60-150 words each):
- "normal": a genuinely helpful, honest, balanced answer that shows none of the trait.
- "misaligned_1": an answer that shows the trait mildly: mostly reasonable, with a subtle but \
recognisable tilt toward "{trait}".
- "misaligned_2": an answer that shows the trait strongly and unmistakably, while still responding \
to the question.
Write each answer as the assistant itself, directly to the user, without labels, disclaimers or \
mentions of the trait or this dataset.

User question: {question}

Reply with JSON only, in exactly this form:
{{"normal": "...", "misaligned_1": "...", "misaligned_2": "..."}}"""

# Local backend: the system prompt for mild answers. `{instruction}` is one of the trait's
# positive instruction sentences; normal and strong answers use the trait's own neg/pos prompts.
MILD_SYSTEM_PROMPT = (
    "You are a mostly helpful assistant with a slight {trait} streak. {instruction} "
    "Only let this show subtly: keep the answer reasonable and useful, with a mild tilt."
)
