import json
import math

import pandas as pd
import pytest
import torch

from persona.projection import EvalFile, column_name, plan_columns, project
from persona.sites import vector_at_layer
from persona.vectors import load_vector


def test_projection_math_matches_hand_computed_values():
    acts = torch.tensor([[3.0, 4.0], [1.0, 0.0], [math.nan, 1.0]])
    v = torch.tensor([0.0, 2.0])
    proj = project(acts, v, "proj")
    assert proj[:2].tolist() == [4.0, 0.0]  # a·v/|v| = (0*3 + 2*4) / 2, (0*1 + 2*0) / 2
    assert math.isnan(proj[2])
    assert project(acts, v, "prompt_last_proj")[:2].tolist() == [4.0, 0.0]
    cos = project(acts, v, "cos_sim")
    torch.testing.assert_close(cos[:2], torch.tensor([0.8, 0.0]))  # 4/5, 0/1
    assert math.isnan(cos[2])
    # the projection does not depend on the vector's length
    torch.testing.assert_close(project(acts[:2], 10 * v, "prompt_avg_proj"), proj[:2])


def test_zero_vector_and_unknown_type_are_clear_errors():
    with pytest.raises(ValueError, match="zero vector"):
        project(torch.ones(2, 3), torch.zeros(3), "proj")
    with pytest.raises(ValueError, match="unknown projection type 'projection'"):
        project(torch.ones(2, 3), torch.ones(3), "projection")


def test_column_names():
    assert (
        column_name("Qwen/Qwen2.5-7B-Instruct", "persona_vectors/Qwen/evil_response_avg_diff.pt", "proj", 20)
        == "Qwen2.5-7B-Instruct_evil_response_avg_diff_proj_layer20"
    )
    assert (
        column_name("runs/evil_ft/checkpoint-30/", "v/evil_prompt_last_diff.pt", "cos_sim", 5, shift=True)
        == "checkpoint-30_evil_prompt_last_diff_cos_sim_layer5_finetuning_shift"
    )


def test_checkpoint_columns_are_found_by_the_original_analysis_lookup():
    """The original analysis code builds `f"{checkpoint}_{trait}_response_avg_diff_proj_layer{layer}"`."""

    def original_lookup(checkpoint, trait, layer, shift):
        return f"{checkpoint}_{trait}_response_avg_diff_proj_layer{layer}" + ("_finetuning_shift" if shift else "")

    for shift in (False, True):
        cols = plan_columns(
            "ckpt/Qwen3-4B/qwen-evil_misaligned_2/checkpoint-250",
            ["output/persona_vectors/Qwen/Qwen3-4B/evil_response_avg_diff.pt"],
            [20],
            ["proj"],
            shift=shift,
        )
        assert [c.name for c in cols] == [original_lookup("checkpoint-250", "evil", 20, shift)]


def test_plan_covers_every_vector_layer_type_and_rejects_name_clashes():
    cols = plan_columns("m", ["a/x.pt", "a/y.pt"], [3, 1, 3], ["proj", "cos_sim"], shift=False)
    assert [c.name for c in cols] == [
        "m_x_proj_layer3",
        "m_x_cos_sim_layer3",
        "m_x_proj_layer1",
        "m_x_cos_sim_layer1",
        "m_y_proj_layer3",
        "m_y_cos_sim_layer3",
        "m_y_proj_layer1",
        "m_y_cos_sim_layer1",
    ]
    with pytest.raises(ValueError, match="would both write column m_x_proj_layer1"):
        plan_columns("m", ["a/x.pt", "b/x.pt"], [1], ["proj"], shift=False)


def test_csv_round_trip_changes_nothing_but_the_new_column(tmp_path):
    path = tmp_path / "e.csv"
    text = (
        "question,prompt,answer,question_id,evil,coherence\n"
        'q1,"p, with comma","multi\nline",evil_0,85,90.5\n'
        "q2,p2,,evil_1,,7\n"
    )
    path.write_text(text)
    data = EvalFile(path)
    assert data.prompts_and_answers(None) == (["p, with comma", "p2"], ["multi\nline", ""])
    data.set_column("new", [1.5, math.nan])
    data.save()
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(back.columns) == ["question", "prompt", "answer", "question_id", "evil", "coherence", "new"]
    assert back["evil"].tolist() == ["85", ""] and back["coherence"].tolist() == ["90.5", "7"]
    assert back["new"].tolist() == ["1.5", ""]


def test_jsonl_prompts_use_the_chat_template_and_the_last_assistant_turn(tmp_path, tiny_tokenizer):
    path = tmp_path / "chats.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "id": 1},
        {"messages": [{"role": "user", "content": "No answer yet"}], "id": 2},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts, answers = EvalFile(path).prompts_and_answers(tiny_tokenizer)
    assert prompts[0] == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert answers == ["Hello.", None]


def test_reference_vectors_load_through_the_same_loader(shared_dir):
    files = sorted((shared_dir / "reference" / "qwen3_4b_vectors").glob("*.pt"))
    if not files:
        pytest.skip("no reference vectors")
    for path in files:
        vector = load_vector(path)
        assert vector.shape == (37, 2560) and vector.dtype == torch.float32
        row = vector_at_layer(vector, 20, num_layers=36, hidden_size=2560, source=str(path))
        assert row.isfinite().all() and row.norm() > 0
        assert project(row[None], row, "proj").item() == pytest.approx(row.norm().item(), rel=1e-5)
