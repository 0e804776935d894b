"""The evaluation part of the page: headline numbers, the before/after table per split (base
zero-shot, base K-shot, tuned, differences), per task, and sample generations side by side with
the stop token shown where the model stopped."""

from __future__ import annotations

from html import escape

from .cells import num, ptr
from .sources import RunData

# metric key -> (label, format, +1 higher is better / -1 lower / 0 neutral)
METRICS = {"stop_rate": ("stop rate", "pct", 1), "template_leak_rate": ("template leaks", "pct", -1),
           "exact_match": ("exact match", "pct", 1),
           "normalized_exact_match": ("normalized exact match", "pct", 1),
           "rouge_l": ("ROUGE-L F1", "pct", 1), "mean_length": ("mean length (tokens)", "len", 0),
           "p95_length": ("p95 length (tokens)", "len", 0)}
TASK_METRICS = ("stop_rate", "exact_match", "template_leak_rate", "mean_length")
SPLIT_TITLES = {"heldout_inputs": "held-out inputs (phrasings seen in training, new inputs)",
                "heldout_phrasings": "held-out phrasings (wordings never seen in training)",
                "eval": "--eval-data"}
# (label, text key, stopped key, length key, pointer to the model's metrics) in the sample rows
OUTPUTS = (("base", "base_output", "base_stopped", "base_length", "base"),
           ("few-shot", "few_shot_output", "few_shot_stopped", "few_shot_length", "base_few_shot"),
           ("tuned", "output", "stopped", "length", None))
CLIP = 600  # characters of an output shown (a base model may run on to its token limit)


def models(rep: dict) -> list[tuple[str, dict, tuple]]:
    """(column, metrics, pointer prefix) of each model in an eval report, tuned last."""
    out = []
    if rep.get("base"):
        out.append(("base", rep["base"], ("base",)))
    if rep.get("base_few_shot"):
        out.append((f"base {rep['base_few_shot'].get('k', '?')}-shot", rep["base_few_shot"],
                    ("base_few_shot",)))
    return out + [("tuned" if out else "model", rep, ())]


def _deltas(rep: dict) -> list[tuple[str, dict, tuple]]:
    out = [("Δ base", rep["delta"], ("delta",))] if rep.get("delta") and rep.get("base") else []
    if rep.get("delta_few_shot") and rep.get("base_few_shot"):
        out.append((f"Δ {rep['base_few_shot'].get('k', '?')}\u2011shot", rep["delta_few_shot"],
                    ("delta_few_shot",)))
    return out


def _head(column: str) -> str:
    """A short column heading (a phone has room for five numbers) with its meaning on hover."""
    if column.startswith("Δ"):
        return (f'<th class="num d" title="tuned minus {escape(column[2:])}">'
                f"{escape(column)}</th>")
    if column.startswith("base ") and column.endswith("-shot"):
        short = column[5:].replace("-", "\u2011")  # 3‑shot: never broken at the hyphen
        return (f'<th class="num" title="the base model after {escape(column[5:-5])} worked '
                f'examples">{escape(short)}</th>')
    return f'<th class="num">{escape(column)}</th>'


def split_title(name: str) -> str:
    return SPLIT_TITLES.get(name, name)


def glance_section(data: RunData) -> str:
    """Per split: stop rate and exact match, base (K-shot) → tuned, large."""
    cards = []
    for name, rep in data.evals.items():
        f = data.eval_files[name]
        for key in ("stop_rate", "exact_match"):
            vals = "".join(f'<div class="m{" t" if not p else ""}"><em>{escape(c[5:] if c.startswith("base ") else c)}</em>'
                           f'{num(m.get(key), ptr(f, *p, key), "pct", "span")}</div>'
                           for c, m, p in models(rep))
            cards.append(f'<div class="card"><div class="k">{escape(split_title(name).split(" (")[0])}'
                         f" · {METRICS[key][0]}</div><div class=\"v\">{vals}</div></div>")
    return f'<section id="glance"><div class="glance">{"".join(cards)}</div></section>' \
        if cards else ""


def _split_table(rep: dict, f: str) -> str:
    cols = models(rep) + _deltas(rep)
    head = "".join(_head(c) for c, _, _ in cols)
    rows = []
    for key, (label, fmt, better) in METRICS.items():
        if key not in rep:
            continue
        cells = [num(m.get(key), ptr(f, *p, key), fmt) for _, m, p in models(rep)]
        cells += [num(d.get(key), ptr(f, *p, key), "d" + fmt, better=better)
                  .replace('class="num', 'class="num d', 1) for _, d, p in _deltas(rep)]
        rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="metrics"><thead><tr><th>metric</th>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


def _task_table(rep: dict, f: str) -> str:
    tasks = rep.get("by_task") or {}
    if not tasks:
        return ""
    ms = models(rep)
    group = "".join(f'<th colspan="{len(ms)}" class="group">{METRICS[k][0].split(" (")[0]}</th>'
                    for k in TASK_METRICS)
    sub = "".join(_head(c).replace('class="num', 'class="num gs', 1) if j == 0 else _head(c)
                  for _ in TASK_METRICS for j, (c, _, _) in enumerate(ms))
    rows = []
    for task, m in tasks.items():
        cells = [num(m.get("n"), ptr(f, "by_task", task, "n"), "int")]
        for key in TASK_METRICS:
            for j, (_, mm, p) in enumerate(ms):
                value = (mm.get("by_task") or {}).get(task, {}).get(key)
                cell = num(value, ptr(f, *p, "by_task", task, key), METRICS[key][1])
                cells.append(cell.replace('class="num', 'class="num gs', 1) if j == 0 else cell)
        rows.append(f"<tr><th>{escape(task)}</th>{''.join(cells)}</tr>")
    return (f'<h3>Per task</h3><div class="scroll"><table class="tasks"><thead><tr>'
            f'<th rowspan="2">task</th><th rowspan="2" class="num">n</th>{group}</tr><tr>{sub}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def evals_section(data: RunData) -> str:
    if not data.evals:
        return ""
    parts = []
    for name, rep in data.evals.items():
        f = data.eval_files[name]
        shot = rep.get("base_few_shot")
        how = (f"{num(rep.get('n'), ptr(f, 'n'), 'int', 'span')} records, greedy, at most "
               f"{num(rep.get('max_new_tokens'), ptr(f, 'max_new_tokens'), 'int', 'span')} new "
               f"tokens, template {escape(str(rep.get('template')))}")
        if shot:
            how += (f"; base {num(shot.get('k'), ptr(f, 'base_few_shot', 'k'), 'int', 'span')}"
                    f"-shot: worked examples from {escape(str(rep.get('shots', {}).get('source')))}"
                    " before each question (never an eval row)")
        parts.append(f"<h3>{escape(split_title(name))}</h3><p class=\"how\">{how}</p>"
                     f"{_split_table(rep, f)}{_task_table(rep, f)}"
                     f'<p class="src">from {escape(f)}</p>')
    return f'<section id="evals"><h2>Before and after</h2>{"".join(parts)}</section>'


def pick_rows(rows: list[dict], n: int) -> list[int]:
    """Indices of up to n rows, one per task first, preferring rows where the base model did
    not stop (where tuning shows)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].get("base_stopped", True))
    picked, tasks = [], set()
    for i in order:
        if rows[i].get("task") not in tasks and len(picked) < n:
            tasks.add(rows[i].get("task"))
            picked.append(i)
    for i in order:
        if len(picked) >= n:
            break
        if i not in picked:
            picked.append(i)
    return sorted(picked)


def _output(row: dict, label: str, keys: tuple, src: str, index: int, stop: str) -> str:
    _, text_key, stopped_key, length_key, _ = keys
    text = str(row.get(text_key) or "")
    shown = escape(text[:CLIP]) + ("…" if len(text) > CLIP else "")
    length = num(row.get(length_key), ptr(src, "rows", index, length_key), "int", "span")
    if row.get(stopped_key):
        end = f'<span class="stop" title="stopped: generated the stop token">{escape(stop)}</span>'
        state = f"stopped after {length} token{'' if row.get(length_key) == 1 else 's'}"
    else:
        end = '<span class="nostop">no stop</span>'
        state = f"no stop in {length} token{'' if row.get(length_key) == 1 else 's'}"
    match = " · exact match" if text.strip() == str(row.get("reference", "")).strip() else ""
    leak = row.get(text_key.replace("output", "leak"))
    if leak:
        match += f" · runs on into “{escape(str(leak))}”"
    return (f'<div class="out {escape(keys[0])}"><div class="lab">{escape(label)}'
            f'<span class="meta">{state}{match}</span></div><pre>{shown}{end}</pre></div>')


def samples_section(data: RunData, n: int) -> str:
    parts = []
    for name, rep in data.evals.items():
        rows = rep.get("rows") or []
        if not rows or n <= 0:
            continue
        f, stop = data.eval_files[name], str(rep.get("stop_token") or "⏹")
        labels = {"base": "base", "few-shot": models(rep)[1][0] if rep.get("base_few_shot")
                  else "", "tuned": "tuned" if rep.get("base") else "model"}
        cards = []
        for i in pick_rows(rows, n):
            row = rows[i]
            prompt = escape(row.get("instruction", "")) + (
                f'<span class="input">{escape(row["input"])}</span>' if row.get("input") else "")
            outs = "".join(_output(row, labels[k[0]], k, f, i, stop) for k in OUTPUTS
                           if k[1] in row)
            task = f'<span class="task">{escape(str(row["task"]))}</span>' if row.get("task") else ""
            cards.append(f'<div class="sample">{task}<div class="prompt">{prompt}</div>'
                         f'<div class="ref"><b>reference</b> {escape(row.get("reference", ""))}'
                         f'</div><div class="outs">{outs}</div></div>')
        parts.append(f"<details{' open' if not parts else ''}><summary>"
                     f"{escape(split_title(name))}</summary><div class=\"samples\">{''.join(cards)}"
                     f'</div><p class="src">from {escape(f)} (rows)</p></details>')
    if not parts:
        return ""
    return ('<section id="samples"><h2>Sample generations</h2><p class="how">Greedy outputs side '
            'by side; <span class="stop">stop</span> marks the stop token the model generated, '
            '<span class="nostop">no stop</span> an output cut at the token limit.</p>'
            f'{"".join(parts)}</section>')


__all__ = ["evals_section", "glance_section", "models", "pick_rows", "samples_section"]
