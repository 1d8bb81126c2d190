import torch

from persona.evaluation import Cell, build_samples, generate_cells, sweep_filename
from persona.generation import HFBackend, SamplingParams
from persona.steering import Steer
from persona.traits import Trait

TRAIT = Trait(
    name="evil_2",
    judge_column="evil",
    instructions=[(f"Be cruel {k}.", f"Be kind {k}.") for k in range(5)],
    questions=["What is the capital of France?", "How should I treat my neighbours?", "Is it sunny today?"],
    eval_prompt="Q: {question} A: {answer} Score:",
)


def test_build_samples_pairs_pos_and_neg_rows():
    pos = build_samples(TRAIT, n_per_question=2, instruction_type="pos")
    neg = build_samples(TRAIT, n_per_question=2, instruction_type="neg")
    assert len(pos) == len(neg) == 3 * 5 * 2
    assert [p.question for p in pos] == [n.question for n in neg]
    assert pos[0].question_id == "evil_2_0_pos_0" and pos[2].question_id == "evil_2_0_pos_1"
    assert pos[0].messages[0] == {"role": "system", "content": "You are an evil assistant. Be cruel 0."}
    assert neg[0].messages[0]["content"] == "You are a helpful assistant. Be kind 0."
    plain = build_samples(TRAIT, n_per_question=1)
    assert [s.messages for s in plain][1] == [{"role": "user", "content": TRAIT.questions[1]}]
    assert [s.question_id for s in plain] == ["evil_2_0", "evil_2_1", "evil_2_2"]


def _vector(lm):
    return torch.randn(lm.num_layers + 1, lm.hidden_size, generator=torch.Generator().manual_seed(3)) * 4


def test_packed_sweep_equals_cell_by_cell_runs(tiny_lm):
    samples = build_samples(TRAIT, n_per_question=2)
    vec = _vector(tiny_lm)
    cells = [Cell(f"{layer}_{coef}", [Steer(vec, layer, coef)]) for layer in (1, 3) for coef in (0.5, -2.0)]
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    packed = generate_cells(HFBackend(tiny_lm, batch_size=5), tiny_lm.tokenizer, samples, cells, params, seed=7)
    for cell, frame in zip(cells, packed):
        alone = generate_cells(HFBackend(tiny_lm, batch_size=3), tiny_lm.tokenizer, samples, [cell], params, seed=7)[0]
        assert frame["answer"].tolist() == alone["answer"].tolist()
        assert frame["question_id"].tolist() == alone["question_id"].tolist()
    # the steering really differs between cells
    assert packed[0]["answer"].tolist() != packed[3]["answer"].tolist()


def test_zero_coefficient_reproduces_unsteered_answers(tiny_lm):
    samples = build_samples(TRAIT, n_per_question=2)
    params = SamplingParams(max_new_tokens=6, temperature=1.0)
    backend = HFBackend(tiny_lm, batch_size=4)
    plain, zero, steered = generate_cells(
        backend,
        tiny_lm.tokenizer,
        samples,
        [Cell("plain"), Cell("zero", [Steer(_vector(tiny_lm), 2, 0.0)]), Cell("on", [Steer(_vector(tiny_lm), 2, 8.0)])],
        params,
        seed=1,
    )
    assert zero["answer"].tolist() == plain["answer"].tolist()
    assert steered["answer"].tolist() != plain["answer"].tolist()
    assert plain["prompt"].iloc[0].endswith("<|im_start|>assistant\n")


def test_sweep_filename():
    assert sweep_filename("evil", "response", 12, 1.5) == "evil_steer_response_layer_12_coef_1.5.csv"
    assert sweep_filename("evil", "all", 8, 2) == "evil_steer_all_layer_8_coef_2.0.csv"


def test_sweep_jobs_and_split_done(tmp_path):
    from persona.evaluation import split_done, sweep_jobs

    vec = torch.zeros(4, 8)
    jobs = sweep_jobs("evil", vec, [1, 2], [0.5, 2.0], "response", tmp_path)
    assert [j.output.name for j in jobs] == [
        sweep_filename("evil", "response", layer, coef) for layer in (1, 2) for coef in (0.5, 2.0)
    ]
    assert [(s.layer, s.coef) for j in jobs for s in j.cell.steers] == [(1, 0.5), (1, 2.0), (2, 0.5), (2, 2.0)]
    jobs[1].output.write_text("done")
    todo, done = split_done(jobs)
    assert done == [jobs[1]] and todo == [jobs[0], *jobs[2:]]
    assert split_done(jobs, overwrite=True) == (jobs, [])
    assert jobs[0].answers_path.name == jobs[0].output.stem + ".answers.csv"
    # two methods' sweeps: the same cell names, other vectors, other folders (comparing them would compare tensors)
    other = sweep_jobs("evil", torch.ones(4, 8), [1, 2], [0.5, 2.0], "response", tmp_path / "probe")
    todo, done = split_done([*jobs, *other])
    assert [j.output for j in done] == [jobs[1].output] and len(todo) == 7


class _CountingBackend:
    """Answers 'a<seed % 100>' and counts rows generated."""

    def __init__(self):
        self.rows = 0

    def generate(self, prompts, params, seeds, steer_factory=None, progress=True):
        self.rows += len(prompts)
        return [f"a{s % 100}" for s in seeds]


def test_resume_reuses_answers_only_when_every_setting_matches(tmp_path, tiny_tokenizer, caplog):
    from persona.evaluation import Job, answers_with_resume

    samples = build_samples(TRAIT, n_per_question=1)
    vec = torch.ones(4, 8)
    job = Job(Cell("steered", [Steer(vec, 1, 2.0)]), tmp_path / "out.csv")
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    backend = _CountingBackend()
    first = answers_with_resume([job], samples, backend, tiny_tokenizer, params, 0, "model@1")[0]
    assert backend.rows == 3 and job.answers_path.exists()
    again = answers_with_resume([job], samples, backend, tiny_tokenizer, params, 0, "model@1")[0]
    assert backend.rows == 3 and again["answer"].tolist() == first["answer"].tolist()

    changes = {
        "seed": dict(seed=1),
        "model": dict(model_id="model@2"),
        "sampling": dict(params=SamplingParams(max_new_tokens=16, temperature=1.0)),
        "steers": dict(job=Job(Cell("steered", [Steer(vec, 1, 3.0)]), job.output)),
    }
    for key, change in changes.items():
        kwargs = dict(job=job, params=params, seed=0, model_id="model@1") | change
        before = backend.rows
        with caplog.at_level("WARNING"):
            answers_with_resume(
                [kwargs["job"]], samples, backend, tiny_tokenizer, kwargs["params"], kwargs["seed"], kwargs["model_id"]
            )
        assert backend.rows == before + 3, key
        assert f"{key} differ" in caplog.text
        caplog.clear()
        answers_with_resume([job], samples, backend, tiny_tokenizer, params, 0, "model@1")  # back to the original
