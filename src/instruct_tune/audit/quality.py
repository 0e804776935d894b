"""Lever 4, output quality: targets that would teach the model something you don't want.

Each check is cheap and explainable; what it cannot tell (whether an answer is *right*) is left to
evaluation. Severity follows harm: an empty target teaches the model to stop at once, a chat marker
in a target teaches it to invent the next turn (and `</s>` in text is tokenized as a real EOS by
most tokenizers), and an echoed instruction teaches parroting: those are errors. Refusals,
conflicts and cut-off outputs are warnings, because some are intended.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rapidfuzz.distance import Indel

from ..data.records import Source
from .context import AuditData, TokenStats
from .findings import Example, Finding, LeverReport, examples_of, pct, plural, snippet

MARKERS = [r"###\s*(?:instruction|response|input)\s*:", r"<\|im_start\|>", r"<\|im_end\|>",
           r"<\|endoftext\|>", r"<\|eot_id\|>", r"<\|(?:start|end)_header_id\|>",
           r"<\|(?:user|assistant|system)\|>", r"\[/?INST\]", r"<</?SYS>>", r"</?s>"]
PLACEHOLDERS = {"n/a", "todo", "tbd", "...", "…", "<nooutput>", "<no output>", "nooutput",
                "<noinput>", "<no input>", "noinput", "[output]", "<output>", "<input>", "null"}
AI_BOILERPLATE = re.compile(
    r"\bas an ai\b|\bas a(?:n ai)? language model\b|\bi(?: am|'m) (?:just )?an ai\b|"
    r"\bi(?: do not|don't) have (?:personal (?:opinions|experiences|feelings|beliefs)|access to "
    r"(?:real-time|the internet|current))|\bmy (?:knowledge cutoff|training data)\b", re.I)
_AI_KEYS = ("an ai", "language model", "personal", "access to", "knowledge cutoff", "training data")
REFUSAL_START = re.compile(
    r"^(?:i(?:'m| am) sorry|sorry|i apologi[sz]e|unfortunately)?[,.!]?\s*(?:but\s+)?i(?: cannot|"
    r" can't|'m unable to| am unable to|'m not able to| am not able to| won't| will not)\s+"
    r"(?:help|assist|provide|fulfil|fulfill|comply|answer|do that|generate|create|write)", re.I)
LONG_FORM_VERBS = {"explain", "describe", "elaborate", "discuss"}
WRITE_VERBS = {"write", "compose", "draft", "create", "generate", "give", "provide", "tell"}
LONG_FORM_OBJECTS = {"essay", "story", "poem", "letter", "email", "article", "paragraph",
                     "summary", "description", "explanation", "report", "review", "blog", "speech",
                     "script", "post", "guide", "proposal", "song", "dialogue", "conversation"}
NEAR_COPY = 0.9
# How the verdict line names each problem (singular, plural), e.g. "3 empty outputs".
SHORT = {"empty_output": ("empty output", "empty outputs"),
         "template_marker_in_output": ("output with chat markers", "outputs with chat markers"),
         "echoes_instruction": ("output echoing its instruction",
                                "outputs echoing their instruction"),
         "template_marker_in_prompt": ("prompt with chat markers", "prompts with chat markers"),
         "placeholder_text": ("placeholder output or input", "placeholder outputs or inputs"),
         "copies_input": ("output identical to its input", "outputs identical to their input"),
         "refusal_boilerplate": ("refusal or AI disclaimer", "refusals or AI disclaimers"),
         "cut_off_output": ("cut-off output", "cut-off outputs"),
         "short_long_form_output": ("too-short long-form answer", "too-short long-form answers"),
         "conflicting_outputs": ("row with conflicting outputs", "rows with conflicting outputs"),
         "too_long": ("row over --max-length", "rows over --max-length")}
_END_OK = set(".!?。！？…\"'”’)]}>`*|~")
_LIST_OR_CODE = re.compile(r"^\s*(?:[-*+•\u2015\u2014\[#>|]|\d+[.)]|[a-z][.)]\s)|\||^\s{2,}|\t",
                           re.I)
_CODE = re.compile(r"[;{}]\s*$|^\s*(?:def |class |import |return |for .* in |#include)", re.M)
_DANGLING = {"and", "or", "but", "the", "a", "an", "to", "of", "with", "for", "in", "on", "at",
             "from", "by", "that", "which", "is", "are", "was", "were", "be", "will", "can", "as",
             "because", "if", "than", "their", "its", "your", "our", "my"}
_HAS_SENTENCE = re.compile(r"[.!?](?:\s|$)")


def _markers(extra: list[str]) -> re.Pattern:
    return re.compile("|".join(MARKERS + [re.escape(t) for t in extra]), re.I)


def cut_off(text: str) -> str:
    """"strong" if the text stops mid-sentence for sure (dangling "and"/"the", a trailing comma in
    a long line, an unclosed code block), "weak" if prose merely ends without final punctuation
    (often just informal writing), "" otherwise. Lists, tables, code and sign-offs ("Best,") are
    allowed to end without punctuation."""
    t = text.rstrip()
    if not t or t[-1] in _END_OK and "```" not in t or len(t.split()) < 8:
        return ""  # the common case, decided cheaply
    if t.count("```") % 2:
        return "strong"
    last = t.splitlines()[-1]
    if _LIST_OR_CODE.search(last) or _CODE.search(t):
        return ""
    words_last = last.split()
    if t[-1] in ",:-(\u2014" and len(words_last) >= 8:
        return "strong"
    if t[-1].isalpha() and words_last[-1].lower() in _DANGLING and len(words_last) >= 5:
        return "strong"
    if t[-1].isalnum() and len(words_last) >= 3 and _HAS_SENTENCE.search(t):
        return "weak"
    return ""


def _finding(d: AuditData, code, severity, rows, subject: tuple[str, str], message, advice,
             field_="output", show=None) -> Finding | None:
    """A finding over `rows`, worded "<count> <subject> <message>", the subject in singular or
    plural form ("1 row has", "3 rows have"); `show(i)` picks the example text (default: the
    start of field_)."""
    if not rows:
        return None
    examples = examples_of(d.records, rows, field_)
    if show is not None:
        for e, i in zip(examples, rows, strict=False):
            e.text = show(i)
    text = f"{plural(len(rows), *subject)} {message.format(share=pct(len(rows) / d.n))}"
    return Finding(code, severity, text, len(rows), d.n, advice, examples,
                   [d.records[i].source for i in rows])


def _around(text: str, pattern: re.Pattern) -> str:
    m = pattern.search(text)
    if not m:
        return snippet(text)
    return f"{m.group()!r} in: …{snippet(text[max(0, m.start() - 40): m.end() + 40], 110)}"


def _task_and_output(r) -> str:
    """The instruction beside the output, so a reader can tell an editing task from a copy."""
    return f"{snippet(r.instruction, 50)} → {snippet(r.output, 50)}"


def _tail(text: str) -> str:
    flat = " ".join(text.split())
    return "…" + flat[-90:] if len(flat) > 90 else flat


def output_checks(d: AuditData, special_tokens: list[str] | None = None) -> dict[str, list[int]]:
    """The per-row verdicts of the output checks: finding code -> row indices, in row order.
    `quality_lever` words them as findings; `curate` drops rows by them."""
    ins, inp, out = d.instructions, d.inputs, d.outputs
    raw_ins, raw_inp, raw_out = d.raw
    marker = _markers([t for t in special_tokens or [] if len(t) > 1])
    empty, placeholder, short, echo, copy_in, near = [], [], [], [], [], []
    refusal, cut, unterminated, mark_out, mark_prompt = [], [], [], [], []
    for i, raw in enumerate(raw_out):
        o = out[i]
        if not o:
            empty.append(i)
            continue
        if o in PLACEHOLDERS or inp[i] in PLACEHOLDERS:
            placeholder.append(i)
        nw = len(o.split())
        verb, obj = d.tasks[i]
        if nw <= 2 and (verb in LONG_FORM_VERBS or verb in WRITE_VERBS and obj in LONG_FORM_OBJECTS):
            short.append(i)
        if o == ins[i]:
            echo.append(i)
        elif inp[i] and o == inp[i] and raw.split() == raw_inp[i].split():
            copy_in.append(i)  # case counts here: "make it uppercase" changes nothing else
        elif nw >= 5 and max(Indel.normalized_similarity(o, inp[i]),
                             Indel.normalized_similarity(o, ins[i])) >= NEAR_COPY:
            near.append(i)
        if (any(k in o for k in _AI_KEYS) and AI_BOILERPLATE.search(o)) or REFUSAL_START.search(o[:200]):
            refusal.append(i)
        kind = cut_off(raw)
        if kind:
            (cut if kind == "strong" else unterminated).append(i)
        if marker.search(raw):
            mark_out.append(i)
        if marker.search(raw_ins[i]) or marker.search(raw_inp[i]):
            mark_prompt.append(i)
    return {"empty_output": empty, "template_marker_in_output": mark_out,
            "echoes_instruction": echo, "template_marker_in_prompt": mark_prompt,
            "placeholder_text": placeholder, "copies_input": copy_in,
            "refusal_boilerplate": refusal, "cut_off_output": cut,
            "unterminated_output": unterminated, "short_long_form_output": short,
            "near_copy_of_prompt": near}


def quality_lever(d: AuditData, special_tokens: list[str] | None = None) -> LeverReport:
    recs = d.records
    marker = _markers([t for t in special_tokens or [] if len(t) > 1])
    rows = output_checks(d, special_tokens)
    empty, mark_out, echo, mark_prompt = (rows[c] for c in (
        "empty_output", "template_marker_in_output", "echoes_instruction",
        "template_marker_in_prompt"))
    placeholder, copy_in, refusal, cut, unterminated, short, near = (rows[c] for c in (
        "placeholder_text", "copies_input", "refusal_boilerplate", "cut_off_output",
        "unterminated_output", "short_long_form_output", "near_copy_of_prompt"))
    findings = [f for f in (
        _finding(d, "empty_output", "error", empty, ("row has", "rows have"), "an empty output.",
                 "Training on an empty target teaches the model to stop immediately. Remove them.",
                 field_="instruction"),
        _finding(d, "template_marker_in_output", "error", mark_out,
                 ("output contains", "outputs contain"),
                 "template or chat markers (### Response:, <|im_start|>, </s>).",
                 "They teach the model to write the next turn itself, and special-token text such "
                 "as </s> is tokenized as a real end-of-text. Strip them: they usually mean rows "
                 "were exported already templated or split wrongly.",
                 show=lambda i: _around(recs[i].output, marker)),
        _finding(d, "echoes_instruction", "error", echo, ("output repeats", "outputs repeat"),
                 "the instruction.",
                 "Teaches the model to parrot the prompt. Usually a column-mapping mistake."),
        _finding(d, "template_marker_in_prompt", "warning", mark_prompt,
                 ("instruction or input contains", "instructions or inputs contain"),
                 "template or chat markers.",
                 "The prompt would contain fake turn boundaries; pass raw text and let the "
                 "template add the markers.",
                 show=lambda i: _around(recs[i].instruction + "\n" + recs[i].input, marker)),
        _finding(d, "placeholder_text", "warning", placeholder,
                 ("row has", "rows have"),
                 "a placeholder as output or input (<nooutput>, <noinput>, N/A, ...).",
                 "Placeholders are learned literally (Alpaca has '<nooutput>' rows). Remove them, "
                 "or leave input empty instead of '<noinput>'."),
        _finding(d, "copies_input", "warning", copy_in, ("output is", "outputs are"),
                 "identical to the input.",
                 "Fine for an editing task with nothing to fix; otherwise the model learns to copy.",
                 show=lambda i: _task_and_output(recs[i])),
        _finding(d, "refusal_boilerplate", "warning", refusal,
                 ("output refuses or says", "outputs refuse or say"),
                 "'as an AI language model' ({share}).",
                 "The model will learn to refuse or disclaim in the same way. Keep only refusals "
                 "you want it to make."),
        _finding(d, "cut_off_output", "warning", cut,
                 ("output stops", "outputs stop"),
                 "mid-sentence ({share}): a dangling 'and'/'the', a trailing comma, or a code "
                 "block left open.",
                 "Often generation that hit a token limit; the model learns to stop mid-thought.",
                 show=lambda i: _tail(recs[i].output)),
        _finding(d, "unterminated_output", "info", unterminated,
                 ("prose output ends", "prose outputs end"),
                 "without final punctuation.",
                 "Could be cut off at a word boundary, or just informal writing: look at the "
                 "examples. Many at similar lengths would point to a generation limit.",
                 show=lambda i: _tail(recs[i].output)),
        _finding(d, "short_long_form_output", "warning", short,
                 ("output has", "outputs have"),
                 "at most 2 words for an explain/describe or write-an-essay/story/... "
                 "instruction.",
                 "A long-form request answered in a word or two is usually a truncated or "
                 "misplaced answer."),
        _finding(d, "near_copy_of_prompt", "info", near,
                 ("output is", "outputs are"),
                 ">= 90% similar to the instruction or input (character edit similarity).",
                 "Normal for editing tasks (grammar correction, formatting); a copying problem "
                 "otherwise.", show=lambda i: _task_and_output(recs[i])),
        _conflicts(d), *(_token_findings(d) if d.tokens else []),
    ) if f is not None]
    stats = {"checked_rows": d.n, **{f.code: f.count for f in findings}}
    bad = [f for f in findings if f.severity != "info"]
    verdict = ("No problems found by the output checks." if not bad else
               "; ".join(plural(f.count, *SHORT.get(f.code, (f.code.replace("_", " "),)))
                         for f in bad[:4]) +
               ("; more below." if len(bad) > 4 else "."))
    return LeverReport("output_quality", verdict, findings, stats, limits=(
        "Checks form, not truth: a fluent wrong answer passes. Judge correctness by reading "
        "samples or with `instruct-tune eval`."))


def conflict_groups(d: AuditData, alive: Sequence[bool] | None = None) -> list[list[int]]:
    """Rows with the same prompt (instruction and input, or a chat's earlier turns) but different
    outputs, one group per prompt, rows in order; with `alive`, only rows marked True count."""
    groups = []
    for idx in d.prompt_groups.values():
        if len(idx) < 2:
            continue
        if alive is not None:
            idx = [i for i in idx if alive[i]]
        if len(idx) >= 2 and len({d.outputs[i] for i in idx}) >= 2:
            groups.append(idx)
    return groups


def _conflicts(d: AuditData) -> Finding | None:
    """Same instruction + input, different outputs."""
    rows, partner, short_groups, n_groups = [], {}, 0, 0
    for idx in conflict_groups(d):
        outs = {d.outputs[i] for i in idx}
        n_groups += 1
        short_groups += all(len(o.split()) <= 5 for o in outs)
        first_out = d.outputs[idx[0]]
        other = next(i for i in idx if d.outputs[i] != first_out)
        partner[idx[0]], partner[other] = other, idx[0]
        rows += idx
    if not rows:
        return None
    return Finding(
        "conflicting_outputs", "warning",
        f"{plural(n_groups, 'prompt has', 'prompts have')} different outputs for the same "
        f"instruction and input ({plural(len(rows), 'row')})"
        + ("." if not short_groups else "; its answers are all 5 words or fewer." if n_groups == 1
           else f"; in {short_groups:,} of them every answer is 5 words or fewer."), len(rows), d.n,
        "Short differing answers are contradictory labels: pick one. Long ones may be fine for "
        "open-ended prompts (several good answers), but they halve each answer's weight.",
        examples_of(d.records, sorted(partner), "output", partner),
        [d.records[i].source for i in rows], {"groups": n_groups, "short_answer_groups": short_groups})


def _too_long_advice(t: TokenStats) -> str:
    """Raising --max-length helps only up to the model's context."""
    cut = "a cut response would teach the model to stop mid-answer."
    if t.context is None:
        return f"Raise --max-length, shorten them, or accept losing them; {cut}"
    if t.max_length >= t.context:
        return (f"These rows cannot fit this model at all: its context is {t.context:,} tokens, "
                "so no --max-length can hold them. Shorten them, use a model with a longer "
                f"context, or accept losing them; {cut}")
    return (f"Raise --max-length (this model takes up to {t.context:,} tokens), shorten them, or "
            f"accept losing them; {cut}")


def _token_findings(d: AuditData) -> list[Finding]:
    t = d.tokens
    out = []
    if t.dropped:
        whole = ", the model's whole context" if t.context and t.max_length >= t.context else ""
        out.append(Finding(
            "too_long", "warning",
            f"{plural(len(t.dropped), 'row does', 'rows do')} not fit in --max-length "
            f"{t.max_length:,} tokens ({pct(len(t.dropped) / d.n)}){whole}: training drops them "
            "(or cuts the prompt with --truncation left).",
            len(t.dropped), d.n, _too_long_advice(t),
            [Example(Source(p.path, p.line or 0), snippet(p.message)) for p in t.dropped[:5]],
            [Source(p.path, p.line or 0) for p in t.dropped]))
    total, trained = sum(t.lengths), sum(t.trained)
    share = trained / total if total else 0.0
    out.append(Finding(
        "trained_token_share", "info",
        f"{pct(share)} of tokens are trained (response + stop token); the rest is prompt.",
        trained, max(total, 1), "Long prompts with short answers give few trained tokens per "
        "step; that is expected for classification or extraction data.",
        stats={"tokens": total, "trained_tokens": trained}))
    return out
