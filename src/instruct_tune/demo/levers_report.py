"""What `demo --levers` shows and writes: the table (setting x held-out exact match x stop rate),
one sentence per lever saying what was measured, the figure, report.md and report.json."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .levers_data import Setting, half_of_tasks
from .report import SPLIT_TITLES
from .tasks import TASKS

SPLITS = ("heldout_inputs", "heldout_phrasings")
KEYS = ("n", "exact_match", "stop_rate")
# (lever, panel title, [(setting, its label in that panel)]): the baseline is every lever's
# reference. The task panel scores only the types the 6-type setting leaves out.
PANELS = (("size", "size (share of rows)", (("size_10", "10%"), ("size_30", "30%"), ("baseline", "100%"))),
          ("tasks", "task diversity\n(scored on the 6 types left out)",
           (("tasks_half", "6 other types"), ("baseline", "all 12 types"))),
          ("phrasings", "phrasing diversity", (("phrasings_one", "1 phrasing"), ("baseline", "all 4"))),
          ("quality", "output quality", (("baseline", "clean"), ("corrupted", "25% corrupted"),
                                         ("curated", "corrupted\n+ curate"))))


def summarize(s: Setting, evals: dict[str, dict], trained_rows: int, clocks: dict) -> dict:
    """One setting's entry in report.json: rows, how often each was seen, the headline metrics
    per held-out set and per task, exact match on the types the task setting leaves out (both
    sets), and its train/eval times."""
    row = {"name": s.name, "lever": s.lever, "label": s.label, "rows": len(s.records),
           "epochs": round(trained_rows / len(s.records), 1) if trained_rows and s.records else 0,
           "info": s.info, "timings": clocks,
           "eval": {split: {**{k: r[k] for k in KEYS},
                            "by_task": {t: {k: m[k] for k in KEYS} for t, m in r["by_task"].items()}}
                    for split, r in evals.items()}}
    row["left_out_exact_match"] = on_tasks(row, left_out())
    return row


def on_tasks(row: dict, names: list[str], key: str = "exact_match",
             splits: tuple[str, ...] = SPLITS) -> float | None:
    """`key` over the rows of these task types in the held-out sets `splits`."""
    pairs = [(m[key], m["n"]) for split in splits
             for t, m in row["eval"][split]["by_task"].items() if t in names]
    n = sum(c for _, c in pairs)
    return sum(v * c for v, c in pairs) / n if n else None


def left_out() -> list[str]:
    """The task types the 'tasks' setting never trains on."""
    kept = half_of_tasks()
    return [t for t in TASKS if t not in kept]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    unseen = left_out()
    head = ["setting", "rows", "epochs", *(f"{SPLIT_TITLES[s]} {m}" for s in SPLITS
                                           for m in ("exact match", "stop rate")),
            f"exact match, the {len(unseen)} types 'tasks' leaves out"]
    rows = [[r["label"], f"{r['rows']:,}" if r["rows"] else "–", f"{r['epochs']:g}" if r["epochs"] else "–",
             *(_pct(r["eval"][s][m]) for s in SPLITS for m in ("exact_match", "stop_rate")),
             _pct(r["left_out_exact_match"])] for r in results]
    return head, rows


def sentences(results: list[dict], budget: dict) -> dict[str, str]:
    """What each lever measured, in numbers (the baseline is the reference of every lever)."""
    r = {x["name"]: x for x in results}
    b = r["baseline"]

    def em(x: dict) -> str:
        return "/".join(_pct(x["eval"][s]["exact_match"]) for s in SPLITS)

    def stop(x: dict) -> str:
        return "/".join(_pct(x["eval"][s]["stop_rate"]) for s in SPLITS)

    n = b["eval"][SPLITS[0]]["n"]
    margin = 196 * (0.25 / n) ** 0.5  # 95% binomial half-width at 50%, in points
    out = {"how to read": f"Numbers are held-out inputs/held-out phrasings. Every run: "
           f"{budget['steps']} optimizer steps of {budget['rows_per_step']} rows and one training "
           f"seed (run-to-run variation is not measured). Each held-out set has {n} questions, so "
           f"a share near 50% is uncertain by about ±{margin:.0f} points (95%), less near 0% or 100%."}
    out["size"] = (f"Size: {r['size_10']['rows']:,} rows (10%, each seen {r['size_10']['epochs']:g} times) "
                   f"scored {em(r['size_10'])} exact match, {r['size_30']['rows']:,} rows (30%) "
                   f"{em(r['size_30'])}, all {b['rows']:,} rows {em(b)}; stop rate "
                   f"{stop(r['size_10'])}, {stop(r['size_30'])}, {stop(b)}.")
    unseen, half = left_out(), r["tasks_half"]
    seen = half["info"]["tasks"]
    out["tasks"] = (f"Task diversity: trained on {len(seen)} of {len(seen) + len(unseen)} task types "
                    f"({half['rows']:,} rows, about as many as the baseline), the model got "
                    f"{_pct(on_tasks(half, unseen))} exact match on the {len(unseen)} types it never saw "
                    f"({', '.join(unseen)}) against {_pct(on_tasks(b, unseen))} when they were trained "
                    f"(stop rate {_pct(on_tasks(half, unseen, 'stop_rate'))} vs "
                    f"{_pct(on_tasks(b, unseen, 'stop_rate'))}), and {_pct(on_tasks(half, seen))} vs "
                    f"{_pct(on_tasks(b, seen))} on the types it saw (with twice their baseline rows).")
    one = r["phrasings_one"]
    out["phrasings"] = (f"Phrasing diversity: with one phrasing per task (same rows per task), exact "
                        f"match on held-out phrasings was {_pct(one['eval'][SPLITS[1]]['exact_match'])} "
                        f"vs {_pct(b['eval'][SPLITS[1]]['exact_match'])} with all training phrasings, "
                        f"and on held-out inputs (asked in every training phrasing, of which this "
                        f"setting saw one) {_pct(one['eval'][SPLITS[0]]['exact_match'])} vs "
                        f"{_pct(b['eval'][SPLITS[0]]['exact_match'])}; stop rate {stop(one)} vs {stop(b)}.")
    bad, cur = r["corrupted"], r["curated"]["info"]["curate"]
    k = bad["info"]["corrupted"]
    dropped = cur["dropped"]
    clean = _reasons(dropped["clean"])
    if "copies_input" in dropped["clean"]:
        clean += ", right answers identical to their input: copy rows, already sorted lists"
    out["quality"] = (f"Output quality: with {k['wrong']} wrong and {k['ramble']} rambling answers "
                      f"({bad['info']['share']:.0%} of {bad['rows']:,} rows) exact match was {em(bad)} "
                      f"and stop rate {stop(bad)}, against {em(b)} and {stop(b)} clean. curate dropped "
                      f"{sum(dropped['ramble'].values())} of the {k['ramble']} rambling rows "
                      f"({_reasons(dropped['ramble'])}: it sees a ramble only when it stops "
                      f"mid-sentence), {sum(dropped['wrong'].values())} of the {k['wrong']} wrong "
                      f"answers (a wrong answer looks like a right one to every check) and "
                      f"{sum(dropped['clean'].values())} clean rows ({clean}); trained on the "
                      f"{cur['kept']:,} rows it kept: {em(r['curated'])} exact match, stop rate "
                      f"{stop(r['curated'])}.")
    return out


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{why} {n}" for why, n in counts.items()) or "none"


def figure(results: list[dict], png: Path) -> Path | None:
    """One figure, a panel per lever: exact match (bars) and stop rate (markers) on both sets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = {x["name"]: x for x in results}
    unseen = left_out()
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 4.2), sharey=True,
                             gridspec_kw={"width_ratios": [len(p[2]) for p in PANELS]})
    for ax, (lever, title, members) in zip(axes, PANELS, strict=True):
        names = unseen if lever == "tasks" else list(TASKS)
        xs = range(len(members))
        for j, (split, color) in enumerate(zip(SPLITS, ("tab:blue", "tab:orange"), strict=True)):
            at = [x + (j - 0.5) * 0.38 for x in xs]
            ax.bar(at, [on_tasks(r[m], names, "exact_match", (split,)) for m, _ in members], 0.36,
                   color=color, label=f"exact match, {SPLIT_TITLES[split]}")
            ax.plot(at, [on_tasks(r[m], names, "stop_rate", (split,)) for m, _ in members], "o",
                    color="black", markerfacecolor="white", label="stop rate" if j == 0 else None)
        ax.set_xticks(list(xs), [label for _, label in members])
        ax.set(title=title, ylim=(0, 1.05))
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("share of held-out questions")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def markdown(result: dict) -> str:
    lv, plan = result["levers"], result["plan"]
    head, rows = table_rows(lv["settings"])
    lines = ["# instruct-tune demo --levers", "",
             f"One lever changed at a time against the baseline, on the demo's base model "
             f"(`{result['base_model']['model']}`) and tasks. Every setting was tuned from the same "
             f"base model for the same budget: {lv['budget']['steps']} optimizer steps of "
             f"{lv['budget']['rows_per_step']} rows (packed into sequences of {plan['max_length']} "
             f"tokens), lr {lv['budget']['lr']:g} ({lv['budget']['schedule']}), seed "
             f"{lv['budget']['seed']}; a smaller set is repeated more often (the epochs column). All "
             f"are evaluated on the same held-out inputs and held-out phrasings (greedy, "
             f"{plan['max_new_tokens']} new tokens).", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    if lv.get("figure"):
        lines += ["", f"![the levers]({lv['figure']})"]
    lines += ["", "## What each lever measured", ""]
    lines += [f"- {text}" for text in lv["sentences"].values()]
    lines += ["", "## Time", "", "| stage | wall s | cpu s |", "|---|---:|---:|"]
    lines += [f"| {k} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} |" for k, t in result["timings"].items()]
    lines += [f"| total | {result['total_wall_s']:.1f} | {result['total_cpu_s']:.1f} |"]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, result: dict) -> None:
    result["levers"]["sentences"] = sentences(result["levers"]["settings"],
                                             result["levers"]["budget"])
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(markdown(result))


def print_report(console: Console, result: dict) -> None:
    head, rows = table_rows(result["levers"]["settings"])
    table = Table(title="The levers, measured (held-out sets; same steps for every run)",
                  title_justify="left")
    for k, col in enumerate(head):
        table.add_column(col, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for text in result["levers"]["sentences"].values():
        console.print(f"- {text}", highlight=False)
    console.print(f"Time: {result['total_wall_s']:.0f} s wall, {result['total_cpu_s']:.0f} s CPU. "
                  f"Written to report.html, report.md, report.json, {result['levers'].get('figure')}", highlight=False)
