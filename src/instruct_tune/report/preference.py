"""The preference section: the demo's DPO stage (report.json's "preference") as supervised vs
preference-tuned on each held-out set. Every number points into report.json. "" for any run
without that stage."""

from __future__ import annotations

from html import escape

from .cells import num, ptr
from .sources import RunData

SPLITS = {"heldout_inputs": "held-out inputs", "heldout_phrasings": "held-out phrasings"}
ROWS = (("exact_match", "exact match", "pct"), ("stop_rate", "stop rate", "pct"),
        ("template_leak_rate", "template leak rate", "pct"),
        ("reward_accuracy", "reward accuracy (chosen gained more than rejected)", "pct"),
        ("reward_margin", "reward margin", "loss"),
        ("logp_accuracy", "chosen likelier than rejected", "pct"))
WHO = (("supervised", "SFT"), ("control", "SFT + chosen"), ("preference", "DPO"))


def preference_section(data: RunData) -> str:
    pref = (data.demo or {}).get("preference")
    if not isinstance(pref, dict) or not pref.get("eval"):
        return ""
    splits = list(pref["eval"])
    head = ('<thead><tr><th rowspan="2">metric</th>'
            + "".join(f'<th colspan="{len(WHO)}" class="group">{escape(SPLITS.get(s, s))}</th>'
                      for s in splits)
            + "</tr><tr>" + "".join(f'<th class="num">{w}</th>' for _ in splits for _, w in WHO)
            + "</tr></thead>")
    body = ""
    for key, label, fmt in ROWS:
        cells = [num(pref["eval"][s].get(key, {}).get(who),
                     ptr("report.json", "preference", "eval", s, key, who), fmt)
                 for s in splits for who, _ in WHO]
        body += f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>"
    how = pref.get("how", "") + (" Rewards are measured against the supervised model, so it "
                                 "has none of its own (–).")
    return (f'<section id="preference"><h2>Preference tuning after supervised tuning</h2>'
            f'<p class="how">{escape(how)}</p><div class="scroll"><table class="metrics">{head}'
            f"<tbody>{body}</tbody></table></div><p class=\"src\">from report.json (preference);"
            f" the full reports: prefer/eval_*.json; the DPO run: prefer/</p></section>")


__all__ = ["preference_section"]
