"""Synthetic, clean, Alpaca-like instruction data (seeded), used by the audit tests and bench.

Rows vary in task (verb + object), phrasing frame, topic, optional input and output length
(20-200 words of Zipf-distributed vocabulary, proper sentences), so a clean set has no duplicates,
no markers and no cut-off outputs — the audit should raise no error on it.
"""

from __future__ import annotations

import itertools
import random

from instruct_tune.data.records import Record, Source

TASKS = {
    "write": ["poem", "story", "essay", "email", "letter", "review", "haiku", "tweet", "speech"],
    "give": ["examples", "tips", "reasons", "advice", "an overview"],
    "explain": ["the concept", "the difference", "the process", "the idea"],
    "describe": ["a place", "a person", "a process", "a scene", "a tradition"],
    "list": ["items", "steps", "benefits", "ideas", "risks"],
    "classify": ["the sentence", "the review", "the tweet", "the statement"],
    "summarize": ["the text", "the article", "the paragraph"],
    "rewrite": ["the sentence", "the paragraph", "the message"],
    "generate": ["a title", "a question", "a slogan", "a name", "a headline"],
    "create": ["a plan", "a recipe", "an outline", "a schedule", "a quiz"],
    "suggest": ["activities", "books", "improvements", "gifts"],
    "compare": ["two approaches", "two cities", "two tools"],
    "identify": ["the main idea", "the tone", "the errors"],
    "translate": ["the sentence", "the phrase"],
    "design": ["a logo concept", "a workout", "an experiment"],
    "calculate": ["the total cost", "the average", "the area"],
    "answer": ["the question", "the riddle"], "edit": ["the draft", "the paragraph"],
    "plan": ["a trip", "a party", "a lesson"], "propose": ["a solution", "a name"],
    "outline": ["an argument", "a talk"], "predict": ["the outcome", "the trend"],
    "convert": ["the recipe", "the table"], "recommend": ["a film", "a book", "a route"],
    "find": ["the mistake", "a synonym"], "brainstorm": ["ideas", "themes"],
    "analyze": ["the poem", "the data"], "extract": ["the names", "the dates"],
    "paraphrase": ["the quote", "the claim"], "evaluate": ["the argument", "the proposal"],
}
FRAMES = [
    "{V} {o} about {t}.", "Please {v} {o} about {t}.", "Can you {v} {o} related to {t}?",
    "{V} {o} on {t} for a {aud} audience.", "I need {o} about {t}; {v} it in {k} sentences.",
    "Using the input, {v} {o} that touches on {t}.", "Your task: {v} {o} concerning {t}.",
    "For a {aud} reader, {v} {o} about {t} and keep it {style}.",
    "{V} {o} about {t}, in a {style} style.", "How would you {v} {o} about {t}?",
]
ADJ = str.split("quiet bright ancient modern rural urban hidden famous local global small large "
                "early late digital natural social public private coastal mountain desert "
                "northern southern")
NOUN = str.split("river market garden library festival museum harbor village forest railway "
                 "bakery school hospital factory island bridge theater kitchen laboratory stadium "
                 "orchard canal castle farm workshop studio airport temple mine vineyard")
AUD = ["young", "busy", "curious", "expert", "general", "skeptical"]
STYLE = ["formal", "playful", "concise", "vivid", "neutral", "friendly"]
SYLL = str.split("ka lo mi ra ne to su vi pa do re fa be lu mo ti na se go ri ze ha po ju")


def vocabulary(size: int = 6000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    common = str.split("the of and to in is that it for on with as was by at be this from or an "
                       "are not have has can will more one all their which about when would there "
                       "also into some its time people other than most only new very what make "
                       "like way over then may many each use work first good well long these year "
                       "even because day part")
    words = set(common)
    while len(words) < size:
        words.add("".join(rng.choice(SYLL) for _ in range(rng.randint(2, 4))))
    return common + sorted(words - set(common))


class Synth:
    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)
        self.vocab = vocabulary(seed=seed)
        # Zipf frequencies, like real text (cumulative, so choices() doesn't re-sum each call).
        self.cum = list(itertools.accumulate(1 / (r + 1) for r in range(len(self.vocab))))

    def sentence(self, k: int) -> str:
        ws = self.rng.choices(self.vocab, cum_weights=self.cum, k=k)
        return " ".join(ws).capitalize() + self.rng.choice(".....!?")

    def text(self, n_words: int) -> str:
        out, left = [], n_words
        while left > 0:
            k = min(left, self.rng.randint(6, 18))
            out.append(self.sentence(max(k, 3)))
            left -= k
        return " ".join(out)

    def instruction(self) -> str:
        r = self.rng
        v = r.choice(list(TASKS))
        o = r.choice(TASKS[v])
        # Topics and extra clauses draw on the whole vocabulary, so two instructions built on the
        # same frame still share few words (real sets like Alpaca were filtered at ROUGE-L 0.7).
        t = f"the {r.choice(ADJ)} {r.choice(NOUN)} of {' '.join(self.words(r.randint(2, 4)))}"
        s = r.choice(FRAMES).format(v=v, V=v.capitalize(), o=o, t=t, k=r.randint(2, 9),
                                    aud=r.choice(AUD), style=r.choice(STYLE))
        if r.random() < 0.85:
            s += " " + self.sentence(r.randint(4, 10))
        return s[0].upper() + s[1:]

    def words(self, k: int) -> list[str]:
        return self.rng.choices(self.vocab[80:], k=k)  # content words, uniformly

    def record(self, line: int, path: str = "synthetic.jsonl") -> Record:
        r = self.rng
        inp = self.text(r.randint(5, 40)) if r.random() < 0.4 else ""
        return Record.alpaca(self.instruction(), self.text(r.randint(20, 200)), inp,
                             source=Source(path, line))

    def records(self, n: int, path: str = "synthetic.jsonl", start: int = 1) -> list[Record]:
        return [self.record(start + i, path) for i in range(n)]
