"""Prompts that ask an LLM to write trait artifacts (used by `generate_trait.py`).

A base trait gets instruction pairs, questions and a judge prompt; a variant (`anxious_2`)
gets only instruction pairs written from its own definition, because it shares the base
trait's questions and judge prompt. Templates are `str.format` strings: literal braces
are doubled.
"""

from dataclasses import replace

from persona.trait_generation import TraitPrompts

SYSTEM_PROMPT = (
    "You write evaluation material for research on personality traits in language models. "
    "You reply with a single JSON object and nothing else."
)

_PAIRS_SPEC = """"instruction": exactly {n_pairs} pairs of system-prompt sentences addressed to an AI assistant. In each pair, "pos" tells the assistant to show the trait clearly and "neg" tells it to show the opposite behaviour. The two halves of a pair should mirror each other in wording and scope, each pair should bring out a different side of the definition, and every sentence should be a direct instruction ("Answer ...", "Treat ...", "Keep ...") that makes sense in front of any user question."""

ARTIFACT_PROMPT = (
    """We measure how a chat model's internal activations change when it expresses a personality trait. Write the material for one trait.

Trait: {trait}
Definition: {definition}

Write three things.

1. """
    + _PAIRS_SPEC
    + """

2. "questions": {n_questions} different questions that a user might put to an assistant, each giving the assistant room to show the trait or its opposite without naming the trait or hinting at the behaviour wanted. Make them concrete and varied: everyday situations, work, relationships, advice, opinions, plans and factual questions, short and long. Do not repeat a question in different words.

3. "eval_prompt": a prompt for a judge model that scores one answer for this trait. It must contain the placeholders {{question}} and {{answer}} exactly once each and no other curly braces. It should say briefly what counts as showing the trait and what does not, and tell the judge to reply REFUSAL if the assistant refused to answer, and otherwise only a number from 0 (trait absent) to 100 (trait strongly present), with no other text.

Reply with one JSON object and nothing else:
{{"instruction": [{{"pos": "...", "neg": "..."}}, ...], "questions": ["...", ...], "eval_prompt": "..."}}"""
)

VARIANT_PROMPT = (
    """We measure how a chat model's internal activations change when it expresses a personality trait. "{trait}" is one of several differently worded definitions of the trait "{base}"; write instructions from this particular wording.

Trait: {trait}
Definition: {definition}

Write """
    + _PAIRS_SPEC
    + """ Follow the emphasis of this definition rather than a generic description of "{base}".

Reply with one JSON object and nothing else:
{{"instruction": [{{"pos": "...", "neg": "..."}}, ...]}}"""
)


def with_question_instruction(prompts: TraitPrompts, instruction: str) -> TraitPrompts:
    """`prompts` whose artifact request ends with an extra instruction for the questions (none: unchanged).

    Braces in the instruction are escaped: the template is `str.format`ted afterwards.
    """
    if not instruction.strip():
        return prompts
    extra = instruction.strip().replace("{", "{{").replace("}", "}}")
    return replace(prompts, artifact=f"{prompts.artifact}\n\nAdditional instruction for the questions: {extra}")
