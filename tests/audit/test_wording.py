"""What a reader sees: questions as one task family, counts in singular or plural, no jargon
codes in verdicts, and copy checks that respect case."""

from __future__ import annotations

import io
import random
import re

import pytest
from rich.console import Console

from instruct_tune.audit.render import render
from instruct_tune.audit.report import audit
from instruct_tune.audit.tasks import task_of
from instruct_tune.data.records import Record, Source
from tests.audit.synth import Synth, vocabulary

QUESTIONS = [
    "What is the capital of France?", "Who wrote Hamlet?", "How many legs does a spider have?",
    "Why is the sky blue?", "When did the Second World War end?", "Where is Lima?",
    "Which planet is the largest?", "Is a tomato a fruit?", "Do you think cats can swim?",
    "Can a penguin fly?", "Whose idea was the telephone?",
]


def text_of(report) -> str:
    buf = io.StringIO()
    render(report, Console(file=buf, width=200, color_system=None, soft_wrap=True), source="t")
    return buf.getvalue()


def unique_instructions(n: int, seed: int = 0) -> list[str]:
    """Instructions that share no content words, so they form no clusters or near-duplicates."""
    pool = vocabulary(seed=seed)[200:]
    random.Random(seed).shuffle(pool)
    return [f"Describe {' '.join(pool[4 * i: 4 * i + 4])}." for i in range(n)]


def recs(instructions, outputs=None, inputs=None) -> list[Record]:
    syn = Synth(5)
    return [Record.alpaca(ins, outputs[i] if outputs else syn.text(25), inputs[i] if inputs else "",
                          source=Source("t.jsonl", i + 1)) for i, ins in enumerate(instructions)]


@pytest.mark.parametrize("question", QUESTIONS)
def test_questions_are_one_task_family(question):
    verb, obj = task_of(question)
    assert verb == "question" and obj and not obj.endswith("?")


@pytest.mark.parametrize("instruction, verb", [
    ("How would you explain gravity to a child?", "explain"),  # the verb after "you" is the task
    ("What is a haiku? Write one about autumn.", "write"),  # a command beats a question
    ("Do the following exercise and show your work.", "do"),  # "do" + object is a command
])
def test_questions_that_name_a_task_keep_its_verb(instruction, verb):
    assert task_of(instruction)[0] == verb


def test_question_led_set_shows_no_question_word_as_a_verb():
    rep = audit(recs(QUESTIONS * 3))
    lever = rep["task_diversity"]
    verbs = [v for v, _ in lever.stats["top_verbs"]]
    assert verbs == ["question"]  # one family, not "what?", "who?", "is?" ...
    assert lever.stats["question_share"] == 1.0
    assert rep.find("task_dominance") is not None  # a set of only questions is one task type
    shown = text_of(rep)
    assert not re.search(r"\b(?:what|who|how|why|when|where|which|is|do|can|whose)\?", shown)


def test_one_cluster_is_singular():
    ins = unique_instructions(30) + ["Translate the sentence into French."] * 2
    rep = audit(recs(ins, inputs=[f"sentence {i}" for i in range(len(ins))]))
    f = rep.find("instruction_clusters")
    assert rep["task_diversity"].stats["clusters"] == 1
    assert "1 cluster of similar" in f.message
    assert "1 cluster of similar" in text_of(rep)


PLURAL_NOUNS = ("rows|clusters|errors|warnings|outputs|groups|prompts|task types|eval rows|"
                "instruction texts|invalid rows|distinct instructions|distinct prompts|"
                "sampled rows|instructions or inputs")


def test_single_counts_read_singular_everywhere():
    ins = unique_instructions(40)
    outs = [Synth(8).text(25) for _ in ins]
    outs[3] = "As an AI language model, I cannot help with that."  # refusal
    ins.append(ins[4])  # one conflicting prompt, different answer
    outs.append("A different answer entirely, written here.")
    ins.append(ins[5])  # one exact duplicate row
    outs.append(outs[5])
    rep = audit(recs(ins, outs), eval_records=recs(ins[:1]) + recs(["Totally new question?"]))
    assert len(rep.errors) == 1  # the contaminated eval row
    shown = text_of(rep)
    assert "(s)" not in shown
    wrong = re.findall(rf"(?<![\d.,])1 (?:{PLURAL_NOUNS})\b", shown)
    assert not wrong, wrong


def test_copies_input_respects_case():
    ins = unique_instructions(30)
    inputs = ["tree house soft frog"] * 30
    outs = [Synth(3).text(20) for _ in ins]
    ins[0], outs[0] = "Convert the text to uppercase.", "TREE HOUSE SOFT FROG"  # a change
    ins[1], outs[1] = "Repeat the words exactly.", "tree house soft frog"  # a copy
    f = audit(recs(ins, outs, inputs)).find("copies_input")
    assert [s.line for s in f.rows] == [2]
    assert "Repeat the words exactly." in f.examples[0].text  # the task is shown beside the copy


def test_verdicts_name_problems_in_words_not_codes():
    ins = unique_instructions(30)
    outs = [Synth(4).text(20) for _ in ins]
    outs[0] = ins[0]  # echo
    outs[1] = "Fine text. <|im_start|>assistant"
    rep = audit(recs(ins, outs))
    verdict = rep["output_quality"].verdict
    findings = rep["output_quality"].findings
    assert {"echoes_instruction", "template_marker_in_output"} <= {f.code for f in findings}
    for f in findings:  # neither the code nor the code with spaces for underscores
        assert f.code not in verdict and f.code.replace("_", " ") not in verdict, verdict


def test_share_is_not_printed_twice():
    ins = ["Translate the input into French."] * 40
    rep = audit(recs(ins, inputs=[f"sentence {i}" for i in range(40)]))
    f = rep.find("reused_instructions")
    assert f.severity == "warning"
    line = next(x for x in text_of(rep).splitlines() if "used by more than one row" in x)
    assert line.count("100.0%") == 1


def test_contamination_verdict_lists_only_what_was_found():
    ins = unique_instructions(30)
    rep = audit(recs(ins), eval_records=recs(ins[:2] + ["Something not in training at all?"]))
    verdict = rep["contamination"].verdict
    assert rep["contamination"].stats["exact"] == 2
    assert not re.search(r"(?<![\d.,])0 ", verdict)  # no "0 near-duplicate prompts"


def test_token_median_says_which_rows_it_covers(get_tokenizer_llama):
    rows = Synth(6).records(30)
    rep = audit(rows, tokenizer=get_tokenizer_llama, max_length=256)
    kept = rep["size"].stats["rows_fitting_max_length"]
    assert 0 < kept < 30
    assert f"of the {kept} rows that fit --max-length 256" in rep["size"].verdict
