"""Source specs (`a.jsonl,b.jsonl`, `a.jsonl=0.7,b.jsonl=0.3`): parsing and its errors, share
rounding and seeded sampling, and `train --data` / `data:` in YAML reading the same spec."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruct_tune.config import TrainConfig, check
from instruct_tune.config_file import load_yaml
from instruct_tune.data.mix import SourceSpec, load_spec, parse_spec, plan, sample, sample_mix
from instruct_tune.errors import ConfigError


def write(path, n: int, tag: str) -> str:
    with open(path, "w") as f:
        for k in range(n):
            f.write(json.dumps({"instruction": f"{tag} question {k}", "output": f"answer {k}",
                                "src": tag}) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path):
    return write(tmp_path / "a.jsonl", 30, "a"), write(tmp_path / "b.jsonl", 4, "b")


def test_parse_forms(files):
    a, b = files
    assert parse_spec(a) == [SourceSpec(a)]
    assert parse_spec(f"{a},{b}") == [SourceSpec(a), SourceSpec(b)]
    assert parse_spec(f"{a}=0.7, {b}=0.3") == [SourceSpec(a, 0.7), SourceSpec(b, 0.3)]
    assert parse_spec([a, f"{b}"]) == [SourceSpec(a), SourceSpec(b)]
    assert parse_spec("owner/name") == [SourceSpec("owner/name")]  # a datasets name


def test_existing_path_with_comma_or_equals_is_one_source(tmp_path):
    odd = write(tmp_path / "x,y=2.jsonl", 2, "x")
    assert parse_spec(odd) == [SourceSpec(odd)]
    other = write(tmp_path / "b.jsonl", 2, "b")
    assert parse_spec([odd, other]) == [SourceSpec(odd), SourceSpec(other)]  # curate's DATA args


@pytest.mark.parametrize("spec, words", [
    ("a.jsonl=0.7,b.jsonl=abc", ["entry 2", "'abc' is not a number", "PATH=SHARE"]),
    ("a.jsonl=0.7,b.jsonl", ["'b.jsonl' has no share", "every source a share or none"]),
    ("a.jsonl=0,b.jsonl=1", ["entry 1", "must be a number > 0", "leave the source out"]),
    ("a.jsonl=-1,b.jsonl=1", ["entry 1", "> 0"]),
    ("a.jsonl=nan,b.jsonl=1", ["entry 1", "> 0"]),
    ("a.jsonl,,b.jsonl", ["entry 2 is empty", "separated by commas"]),
    ("a.jsonl,", ["entry 2 is empty"]),
    ("=0.5,b.jsonl=0.5", ["entry 1", "no path before '='"]),
    ("a.jsonl=0.5,a.jsonl=0.5", ["'a.jsonl' is listed twice", "larger share"]),
])
def test_bad_specs_say_what_where_and_how(spec, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        parse_spec(spec, "--mix")
    assert str(e.value).startswith("--mix")
    for w in words:
        assert w in str(e.value)


def test_shares_are_normalized_with_a_note(files):
    a, b = files
    _, parts, notes = sample_mix([30, 4], parse_spec(f"{a}=3,{b}=1"), 20, seed=0)
    assert [p.share for p in parts] == [0.75, 0.25] and "normalized" in notes[0]
    _, _, notes = sample_mix([30, 4], parse_spec(f"{a}=0.75,{b}=0.25"), 20, seed=0)
    assert notes == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=1, max_size=6), st.integers(0, 5000))
def test_plan_adds_up_and_stays_within_one_row_of_each_share(weights, rows):
    shares = [w / sum(weights) for w in weights]
    counts = plan([10**6] * len(shares), shares, rows)
    assert sum(counts) == rows
    assert all(abs(c - rows * s) < 1 + 1e-6 for c, s in zip(counts, shares, strict=True))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.floats(0.05, 5)), min_size=1, max_size=5))
def test_default_size_is_the_largest_mix_without_repeats(sources):
    sizes, weights = [n for n, _ in sources], [w for _, w in sources]
    shares = [w / sum(weights) for w in weights]
    counts = plan(sizes, shares, None)
    assert all(c <= n for c, n in zip(counts, sizes, strict=True))
    # ...and the binding source is used up (to rounding): no larger total keeps the shares.
    assert sum(counts) > min(n / s for n, s in zip(sizes, shares, strict=True)) - 1


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(0, 200), st.integers(0, 3))
def test_sample_without_replacement_until_it_must_repeat(available, n, seed):
    picks = sample(available, n, random.Random(seed))
    assert len(picks) == n and picks == sorted(picks) and set(picks) <= set(range(available))
    uses = Counter(picks)
    if n <= available:
        assert max(uses.values(), default=1) == 1
    else:  # every row k or k+1 times
        k = n // available
        assert set(uses) == set(range(available)) and set(uses.values()) <= {k, k + 1}


def test_sampling_is_seeded(files):
    a, b = files
    specs = parse_spec(f"{a}=0.5,{b}=0.5")
    one = sample_mix([30, 4], specs, 10, seed=1)[0]
    assert sample_mix([30, 4], specs, 10, seed=1)[0] == one
    assert sample_mix([30, 4], specs, 10, seed=2)[0] != one
    _, parts, _ = sample_mix([30, 4], specs, 10, seed=1)
    assert parts[1].upsampled == 1 and "up-sampled" in parts[1].describe()


def test_a_source_with_no_rows_cannot_be_mixed(files):
    with pytest.raises(ConfigError, match="has no rows to mix"):
        sample_mix([30, 0], parse_spec(f"{files[0]}=1,{files[1]}=1"), 10, seed=0)


def test_load_spec_list_and_mix(files):
    a, b = files
    both = load_spec(f"{a},{b}")
    assert len(both.records) == 34 and both.format == "alpaca"
    mix = load_spec(f"{a}=0.8,{b}=0.2", seed=5)  # b's 4 rows are a fifth of 20
    assert Counter(r.meta["src"] for r in mix.records) == {"a": 16, "b": 4}
    assert any(n.startswith("mix (seed 5)") for n in mix.notes)
    assert [r.source for r in load_spec(f"{a}=0.8,{b}=0.2", seed=5).records] == \
        [r.source for r in mix.records]


def test_train_data_takes_a_spec_from_flags_and_yaml(files, tmp_path):
    a, b = files
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"data: [{a}=0.8, {b}=0.2]\nmodel: m\nout: o\n")
    assert load_yaml(yaml_file, TrainConfig)["data"] == f"{a}=0.8,{b}=0.2"
    yaml_file.write_text(f"data:\n  {a}: 3\n  {b}: 1\n")
    assert load_yaml(yaml_file, TrainConfig)["data"] == f"{a}=3,{b}=1"
    with pytest.raises(ConfigError, match="entry 2"):
        check(TrainConfig(model="m", data=f"{a}=0.5,{b}=x", out="o"))


def test_train_loads_a_mix(files, tmp_path):
    from transformers import LlamaConfig

    from instruct_tune.train.prepare import load_data
    from tests.conftest import get_tokenizer

    model = tmp_path / "tok"
    get_tokenizer("llama").save_pretrained(model)
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=4).save_pretrained(model)
    a, b = files
    cfg = TrainConfig(model=str(model), data=f"{a}=0.8,{b}=0.2", out=str(tmp_path / "o"),
                      cache_dir="none", seed=3)
    lines: list[str] = []
    data = load_data(cfg, lines.append)
    assert len(data.train) == 20
    assert any("mix (seed 3)" in line for line in data.report)
