"""Prompt/completion rows with long, templated prompts (issue 16's benchmark data).

Each prompt is one of a few task templates ("Summarize the following article ...", "Read the
passage below and answer ...") wrapped around a document of 30-110 words; each completion is
8-50 words. Text is tests/audit/synth.py's Zipf-distributed vocabulary, seeded, so two runs write
the same file. With stories260k's tokenizer (512 tokens of context) about three rows in four fit,
at ~400 tokens each: 55,000 rows are ~16.6M tokens.

    python bench/prompt_rows.py 55000 /tmp/rows.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.audit.synth import Synth  # noqa: E402

FRAMES = [
    "Summarize the following article in {k} sentences.\n\nArticle:\n{doc}\n\nSummary:",
    "Read the passage below and answer the question.\n\nPassage: {doc}\n\n"
    "Question: what is the main point about {topic}?",
    "You are a helpful assistant. Classify the sentiment of this review as positive or "
    "negative.\n\nReview: {doc}",
    "Translate the following text into plain English:\n{doc}",
    "Extract every name mentioned in the text.\nText: {doc}\nNames:",
]


def prompt_rows(n: int, seed: int = 0) -> list[dict]:
    synth, rng = Synth(seed), random.Random(seed + 1)
    rows = []
    for _ in range(n):
        doc = synth.text(rng.randint(30, 110))
        prompt = rng.choice(FRAMES).format(k=rng.randint(1, 5), doc=doc,
                                           topic=" ".join(synth.words(2)))
        rows.append({"prompt": prompt, "completion": " " + synth.text(rng.randint(8, 50))})
    return rows


def write_prompt_rows(path: Path, n: int, seed: int = 0) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in prompt_rows(n, seed)))
    return path


if __name__ == "__main__":
    print(write_prompt_rows(Path(sys.argv[2]), int(sys.argv[1])))
