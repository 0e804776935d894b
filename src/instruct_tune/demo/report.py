"""What the demo shows and writes: the before/after table, sample generations side by side, the
loss curves (PNG), per-stage timings and the Markdown report."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..evaluate.report import fmt
from ..evaluate.report import to_markdown as eval_markdown

SPLIT_TITLES = {"heldout_inputs": "held-out inputs", "heldout_phrasings": "held-out phrasings"}
HEADLINE = (("stop_rate", "stop rate"), ("template_leak_rate", "template leak rate"),
            ("exact_match", "exact match"), ("mean_length", "mean output length (tokens)"))


def _rows(evals: dict[str, dict]) -> list[list[str]]:
    """[label, base, tuned, base, tuned, ...] rows: headline metrics, then exact match per task."""
    rows = [[label, *(fmt(key, v) for r in evals.values() for v in (r["base"][key], r[key]))]
            for key, label in HEADLINE]
    task_names = list(next(iter(evals.values()))["by_task"])
    for task in task_names:
        cells = []
        for r in evals.values():
            tuned, base = r["by_task"].get(task), r["base"]["by_task"].get(task)
            cells += [fmt("exact_match", base and base["exact_match"]),
                      fmt("exact_match", tuned and tuned["exact_match"])]
        rows.append([f"exact match · {task}", *cells])
    return rows


def eval_table(evals: dict[str, dict]) -> Table:
    table = Table(title="Before (base) and after (tuned) instruction tuning", title_justify="left")
    table.add_column("metric")
    for name in evals:
        for who in ("base", "tuned"):
            table.add_column(f"{SPLIT_TITLES.get(name, name)}\n{who}", justify="right")
    for row in _rows(evals):
        table.add_row(*row)
    return table


PREFER_ROWS = (("exact_match", "exact match"), ("stop_rate", "stop rate"),
               ("reward_accuracy", "reward accuracy (held-out pairs)"),
               ("logp_accuracy", "chosen likelier than rejected"))
PREFER_COLUMNS = {"supervised": "SFT", "control": "SFT + chosen", "preference": "DPO"}


def prefer_rows(prefer: dict) -> list[list[str]]:
    """[label, then each model per held-out set]. Reward accuracy is measured against the
    supervised model (the reference), whose own rewards are 0 by definition: shown as '-'."""
    evals = prefer["eval"].values()
    return [[label, *(fmt("exact_match", r[key].get(who)) for r in evals for who in PREFER_COLUMNS)]
            for key, label in PREFER_ROWS]


def prefer_table(prefer: dict) -> Table:
    table = Table(title="Supervised (SFT), SFT continued on the chosen answers (the control) and "
                  "preference-tuned (DPO), on the same held-out sets", title_justify="left")
    table.add_column("metric")
    for name in prefer["eval"]:
        for who in PREFER_COLUMNS.values():
            table.add_column(f"{SPLIT_TITLES.get(name, name)}\n{who}", justify="right")
    for row in prefer_rows(prefer):
        table.add_row(*row)
    return table


def prefer_markdown(prefer: dict) -> list[str]:
    """The preference section of report.md: what the pairs were, then SFT vs DPO side by side."""
    heads = [f"{SPLIT_TITLES.get(n, n)}: {who}" for n in prefer["eval"]
             for who in PREFER_COLUMNS.values()]
    lines = ["", "## Preference tuning (DPO) after supervised tuning", "", prefer["how"],
             "", f"- Preference-tuned model: `{prefer['model']}`; the control: `{prefer['control']}`",
             "",
             "| metric | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    lines += ["| " + " | ".join(row) + " |" for row in prefer_rows(prefer)]
    return lines + ["", "Reward accuracy: the share of held-out pairs whose chosen answer gained "
                    "more log-prob from preference tuning than the rejected one (the reference, "
                    "the supervised model, has no reward of its own). Chosen likelier: the share "
                    "of pairs where a model gives the chosen answer more log-prob."]


def pick_samples(report: dict, n: int = 6) -> list[dict]:
    """One row per task (the first n tasks), so the samples show different kinds of work."""
    seen, out = set(), []
    for row in report["rows"]:
        if row["task"] not in seen and len(out) < n:
            seen.add(row["task"])
            out.append(row)
    return out


def _prompt(row: dict) -> str:
    return row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")


def _output(text: str, stopped: bool) -> str:
    """One line: newlines shown as ⏎ (a base model often rambles on into new paragraphs)."""
    text = text.strip(" ").replace("\n", "⏎")
    return (text[:120] + "…" if len(text) > 120 else text) + ("" if stopped else " [no stop]")


def samples_table(rows: list[dict]) -> Table:
    table = Table(title="Sample generations (held-out phrasings)", title_justify="left",
                  show_lines=True)
    for col in ("instruction", "reference", "base", "tuned"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(escape(_prompt(r)), escape(r["reference"]),
                      escape(_output(r["base_output"], r["base_stopped"])),
                      escape(_output(r["output"], r["stopped"])))
    return table


def plot_losses(pretrain_losses: list[float] | None, metrics_path: Path, png: Path) -> Path | None:
    """Pretraining loss (when the base model was made here) and instruction-tuning loss."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    steps, losses = [], []
    if metrics_path.is_file():
        for line in metrics_path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("loss") is not None:
                steps.append(rec["step"])
                losses.append(rec["loss"])
    panels = [p for p in (("pretraining the base model (plain text)", pretrain_losses),
                          ("instruction tuning (response tokens only)", (steps, losses)))
              if p[1] and (not isinstance(p[1], tuple) or p[1][0])]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels, strict=True):
        xs, ys = data if isinstance(data, tuple) else (range(1, len(data) + 1), data)
        ax.plot(xs, ys)
        ax.set(title=title, xlabel="optimizer step", ylabel="loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def print_timings(console: Console, stages: dict[str, dict[str, float]], total: float) -> None:
    table = Table(title=f"Time per stage (total {total:.0f} s wall)", title_justify="left")
    for col in ("stage", "wall s", "share", "cpu s"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, t in stages.items():
        table.add_row(name, f"{t['wall_s']:.1f}", f"{t['wall_s'] / max(total, 1e-9):.0%}",
                      f"{t['cpu_s']:.1f}")
    console.print(table)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>") or "∅"


def markdown(result: dict, evals: dict[str, dict], samples: list[dict], png: Path | None) -> str:
    heads = [f"{SPLIT_TITLES.get(n, n)}: {who}" for n in evals for who in ("base", "tuned")]
    base, n = result["base_model"], result.get("rows", {})
    made = ("pretrained here on plain text only (it has never seen an instruction)"
            if base.get("local") else "your base model")
    lines = ["# instruct-tune demo", "",
             f"A base model {made} was instruction-tuned on {n.get('train', '?')} examples of "
             f"{result.get('tasks', '?')} verifiable tasks, then the base and the tuned model answered "
             f"the same held-out questions: **held-out inputs** (phrasings seen in training, new "
             f"inputs) and **held-out phrasings** (instructions worded in ways never seen in "
             f"training, new inputs).", "",
             f"- Base model: `{base['model']}`", f"- Tuned model: `{result['tuned_model']}`",
             "", "## Before and after", "",
             "| metric | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(evals)]
    if result.get("preference"):
        lines += prefer_markdown(result["preference"])
    lines += ["", "## Sample generations (held-out phrasings)", "",
              "| instruction | reference | base | tuned |", "|---|---|---|---|"]
    lines += [f"| {_md_cell(_prompt(r))} | {_md_cell(r['reference'])} | "
              f"{_md_cell(_output(r['base_output'], r['base_stopped']))} | "
              f"{_md_cell(_output(r['output'], r['stopped']))} |" for r in samples]
    if png is not None:
        lines += ["", "## Loss", "", f"![loss curves]({png.name})"]
    lines += ["", "## Data audit", ""]
    lines += [f"- **{lever}** ({v['status']}): {v['verdict']}" for lever, v in result["audit"].items()]
    if result.get("timings"):
        lines += ["", "## Time per stage", "", "| stage | wall s | cpu s |", "|---|---:|---:|"]
        lines += [f"| {k} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} |" for k, t in result["timings"].items()]
    final = result["tuned_model"]
    lines += ["", "## Try it", "", "```",
              f'instruct-tune generate --model {final} "Sort these words alphabetically." --input "pear apple kite"',
              f"instruct-tune chat {final}", f"instruct-tune export {final} --to tuned-export", "```"]
    for name, report in evals.items():
        lines += ["", f"# Details: {SPLIT_TITLES.get(name, name)}", "",
                  eval_markdown({**report, "samples": []})]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, result: dict, evals: dict[str, dict], png: Path | None) -> None:
    """OUT/report.json (the summary) and OUT/report.md (the summary plus per-split details)."""
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(markdown(result, evals, result["samples"], png))
