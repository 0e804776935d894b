"""Typed configuration: one dataclass per command is both its CLI flags and its YAML config.

`instruct-tune train --config run.yaml --lr 1e-4` loads the YAML into the dataclass, then flags
override (config_file.py reads and writes the YAML). The resolved dataclass is saved as
`config.yaml` next to every run so it can be re-run.
Field docstrings are the `--help` text.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import tyro

from .errors import ConfigError

RecordFormat = Literal["auto", "alpaca", "prompt_completion", "chat"]
# Optional strings with a metavar that says what goes there (tyro would print "{None}|STR").
OptPath = Annotated[str | None, tyro.conf.arg(metavar="PATH")]
Columns = Annotated[str | None, tyro.conf.arg(metavar="FIELD=COLUMN,...")]
Text = Annotated[str | None, tyro.conf.arg(metavar="TEXT")]
OptTemplate = Annotated[str | None, tyro.conf.arg(metavar="NAME|PATH")]
Truncation = Literal["drop", "left", "error"]


# Field order is --help order. dataclasses list base-class fields first (in reverse MRO), so each
# command's own fields live in a base class named last: `class TrainConfig(ModelOptions,
# DataOptions, _Train)` lists model/data/out first and --trust-remote-code last.


@dataclass
class DataOptions:
    """How records are read, templated and tokenized (shared by inspect and train)."""

    format: RecordFormat = "auto"
    """Record format; auto-detected from the columns unless given."""
    columns: Columns = None
    """Map other column names, e.g. 'instruction=question,output=answer'."""
    template: OptTemplate = None
    """Prompt template: alpaca, chatml, raw, model (the tokenizer's chat_template) or a .yaml/.jinja path (default: the one saved with --model, else alpaca)."""
    max_length: int = 2048
    """Maximum tokens per example (prompt + response + EOS)."""
    truncation: Truncation = "drop"
    """Rows longer than --max-length: drop them (reported), cut the prompt from the left, or error."""
    skip_invalid: bool = False
    """Drop invalid rows (and report how many and why) instead of stopping."""
    cache_dir: Annotated[str | None, tyro.conf.arg(
        metavar="DIR", help_behavior_hint="(default: ~/.cache/instruct-tune/tokenized)")] = None
    """Tokenization cache; 'none' disables it."""

    def problems(self) -> list[str]:
        from .data.pairs import PAIR_TARGETS
        from .data.validate import TARGETS, parse_columns

        problems = [f"--max-length must be >= 2 (got {self.max_length})"] if self.max_length < 2 else []
        pairs = getattr(self, "method", "sft") != "sft"  # preference pairs have their own fields
        # inspect reads either kind of file: both kinds of field
        targets = (PAIR_TARGETS if pairs else TARGETS) if hasattr(self, "method") else tuple(
            dict.fromkeys(TARGETS + PAIR_TARGETS))
        try:
            parse_columns(self.columns, targets)
        except ConfigError as e:
            problems.append(str(e).rstrip("."))
        return problems + template_problems(self.template)


@dataclass
class ModelOptions:
    """How models are loaded. Loading never runs code unless you say so."""

    trust_remote_code: bool = False
    """Allow the model repository's own Python code to run (off by default)."""
    allow_pickle: bool = False
    """Allow pickle-based .bin/.pt weights, which can run arbitrary code when loaded."""


@dataclass
class SamplingOptions:
    """How text is generated."""

    max_new_tokens: int = 256
    """Stop after this many new tokens if the model has not stopped by itself."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling: sample only from the most likely tokens that add up to this probability (1: all)."""
    seed: int = 0
    """Seed of the sampler (with --temperature > 0): the same command and seed give the same answers."""

    def problems(self) -> list[str]:
        return [why for ok, why in [
            (self.max_new_tokens >= 1, f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})"),
            (self.temperature >= 0, f"--temperature must be >= 0 (0: greedy decoding; got {self.temperature})"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1] (1: no nucleus cut; got {self.top_p})"),
        ] if not ok]


@dataclass
class _Inspect:
    data: str = ""
    """Data file (JSON, JSONL, CSV, Parquet) or a datasets name/directory (or the first argument)."""
    model: str = ""
    """Model directory or hub name whose tokenizer is used."""
    n: Annotated[int | None, tyro.conf.arg(aliases=["-n"], metavar="INT",
                                           help_behavior_hint="(default: 3; with --json all)")] = None
    """How many rows to show. 0 shows all."""
    json: bool = False
    """Print one JSON object per row (input_ids, labels, text) instead of the coloured view."""


@dataclass
class InspectConfig(ModelOptions, DataOptions, _Inspect):
    command: ClassVar[str] = "inspect"
    required: ClassVar[tuple[str, ...]] = ("data", "model")
    positional: ClassVar[tuple[str, ...]] = ("data",)


@dataclass
class _Train:
    model: str = ""
    """Base model: a local directory or a hub name."""
    data: str = ""
    """Training data file, directory or datasets name; several: a.jsonl,b.jsonl; a mix: a.jsonl=0.7,b.jsonl=0.3."""
    out: str = ""
    """Output directory (config.yaml, metrics.jsonl, checkpoints/, final/)."""
    eval_data: Annotated[str | None, tyro.conf.arg(metavar="PATH")] = None
    """Held-out data for eval loss (and the final generation eval)."""
    eval_split: float = 0.0
    """Hold out this share of --data for eval loss when --eval-data is not given."""
    eval_every: int = 100
    """Evaluate every N optimizer steps (0: only at the end)."""
    eval_max_new_tokens: int = 128
    """New-token limit per row in the final generation eval on --eval-data."""
    eval_samples: int = 16
    """Generation checks while training: answer this many eval prompts greedily at every eval and log stop rate, exact match, leaks (0: off)."""
    epochs: float = 3.0
    """Stop after this many passes over the data (fractions allowed)."""
    max_steps: Annotated[int | None, tyro.conf.arg(metavar="INT")] = None
    """Train exactly this many optimizer steps (overrides --epochs, cycling over the data)."""
    max_time: Annotated[str | None, tyro.conf.arg(metavar="DURATION")] = None
    """Wall-clock budget of this session, e.g. '300s', '20m', '2h'; the final model is saved when it runs out."""
    lr: Annotated[float | None, tyro.conf.arg(
        metavar="FLOAT", help_behavior_hint="(default: 2e-5 full fine-tuning, 2e-4 LoRA)")] = None
    """Peak learning rate."""
    batch_size: int = 8
    """Rows (or packed sequences) per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    packing: bool = False
    """Pack several rows into one sequence (each row still attends only to itself)."""
    lora: bool = False
    """Train a LoRA adapter instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scale numerator: updates are scaled by alpha / r."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    lora_targets: str = "all-linear"
    """Comma-separated module names, or 'all-linear'."""
    method: Literal["sft", "dpo", "ipo", "hinge", "robust", "simpo", "orpo"] = "sft"
    """sft: supervised tuning on records; dpo, ipo, hinge, robust, simpo, orpo: preference tuning on chosen/rejected pairs (start from a tuned model)."""
    beta: float = 0.1
    """Preference: how far from the reference the policy may move (DPO family); SimPO's reward scale."""
    label_smoothing: float = 0.0
    """Preference (dpo, robust, simpo): assumed probability that a pair's preference is flipped."""
    simpo_gamma: float = 0.5
    """SimPO target reward margin."""
    orpo_lambda: float = 0.1
    """ORPO: weight of the odds-ratio term next to the chosen answer's NLL."""
    sft_weight: float = 0.0
    """Preference: add this times the chosen answer's per-token NLL (keeps chosen log-probs from falling)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after warmup: cosine decay to 0, or constant."""
    warmup_ratio: float = 0.03
    """Share of steps spent warming up the learning rate linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay (matrices only; biases and norms are not decayed)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 uses autocast where the hardware supports it."""
    allow_slow_bf16: bool = False
    """Train in bf16 on a CPU without native bf16 (AVX512-BF16/AMX) anyway, where it is ~70x slower."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    seed: int = 42
    """Seed for initialisation, shuffling and dropout."""
    log_every: int = 10
    """Log loss, lr and throughput every N optimizer steps (console and metrics.jsonl)."""
    report_to: Literal["none", "tensorboard", "wandb"] = "none"
    """Also send metrics.jsonl's numbers and the config to TensorBoard (DIR/tensorboard) or Weights & Biases (DIR/wandb; offline without network)."""
    save_every: int = 500
    """Checkpoint every N optimizer steps (and always at the end)."""
    keep_checkpoints: int = 3
    """Keep only the newest K checkpoints."""
    resume: bool = False
    """Continue from the newest complete checkpoint in --out (e.g. --config DIR/config.yaml --resume)."""
    overwrite: bool = False
    """Allow writing into a non-empty --out (its old contents are removed)."""
    skip_nonfinite: bool = False
    """Skip optimizer steps whose loss is NaN/inf instead of stopping."""
    quiet: bool = False
    """No progress bar; one log line per --log-every steps."""


@dataclass
class TrainConfig(ModelOptions, DataOptions, _Train):
    command: ClassVar[str] = "train"
    required: ClassVar[tuple[str, ...]] = ("model", "data", "out")
    positional: ClassVar[tuple[str, ...]] = ()

    def problems(self) -> list[str]:
        checks = [
            (not (self.resume and self.overwrite), "Conflicting options: --resume continues a run, "
             "--overwrite deletes it; pass only one"),
            (not (self.eval_data and self.eval_split > 0), "Conflicting options: --eval-data and "
             "--eval-split both choose the eval set; pass only one"),
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1 (got {self.grad_accum})"),
            (self.epochs > 0, f"--epochs must be > 0 (got {self.epochs})"),
            (self.max_steps is None or self.max_steps >= 1,
             f"--max-steps must be >= 1 (got {self.max_steps})"),
            (self.eval_samples >= 0, f"--eval-samples must be >= 0 (got {self.eval_samples})"),
            (self.eval_max_new_tokens >= 1,
             f"--eval-max-new-tokens must be >= 1 (got {self.eval_max_new_tokens})"),
            (0 <= self.eval_split < 1, f"--eval-split must be in [0, 1), e.g. 0.05 (got {self.eval_split})"),
            (0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})"),
            (self.lr is None or self.lr > 0, f"--lr must be > 0 (got {self.lr})"),
            (self.keep_checkpoints >= 1, f"--keep-checkpoints must be >= 1 (got {self.keep_checkpoints})"),
            (self.max_grad_norm >= 0, "--max-grad-norm must be >= 0 (0: no clipping)"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0 (got {self.weight_decay})"),
            (not self.lora or self.lora_r >= 1, f"--lora-r must be >= 1 (got {self.lora_r})"),
            (not self.lora or 0 <= self.lora_dropout < 1,
             f"--lora-dropout must be in [0, 1) (got {self.lora_dropout})"),
        ]
        problems = DataOptions.problems(self) + [why for ok, why in checks if not ok]
        if self.method != "sft":
            try:
                self.preference()
            except ConfigError as e:
                problems.append(str(e).rstrip("."))
        try:  # a list or mix spec: a.jsonl,b.jsonl or a.jsonl=0.7,b.jsonl=0.3 (data/mix.py)
            from .data.mix import parse_spec

            parse_spec(self.data, "--data")
        except ConfigError as e:
            problems.append(str(e).rstrip("."))
        if self.max_time is not None:
            try:
                parse_duration(self.max_time)
            except ConfigError as e:
                problems.append(str(e).rstrip("."))
        if self.report_to != "none" and importlib.util.find_spec(self.report_to) is None:
            # Found now, not after the model loaded (train/trackers.py imports it when the log opens).
            problems.append(f"--report-to {self.report_to} needs the {self.report_to} package, "
                            f"which is not installed: pip install 'instruct-tune[{self.report_to}]'"
                            " (or leave --report-to out)")
        return problems

    def preference(self) -> PreferenceLossConfig | None:
        """The preference loss of a --method other than sft (None for sft)."""
        if self.method == "sft":
            return None
        return PreferenceLossConfig(self.method, self.beta, self.label_smoothing, self.simpo_gamma,
                                    self.orpo_lambda, self.sft_weight)

    def warnings(self) -> list[str]:
        def changed(names: tuple[str, ...]) -> list[str]:
            return [f"--{f.replace('_', '-')}" for f in names
                    if getattr(self, f) != getattr(TrainConfig, f)]

        def nothing(flags: list[str], without: str, then: str) -> list[str]:
            return [f"{', '.join(flags)} do{'es' if len(flags) == 1 else ''} nothing without "
                    f"{without}: {then}"] if flags else []

        lora = changed(("lora_r", "lora_alpha", "lora_dropout", "lora_targets"))
        pref = changed(("beta", "label_smoothing", "simpo_gamma", "orpo_lambda", "sft_weight"))
        return ((nothing(lora, "--lora", "this run fine-tunes all weights (add --lora to train "
                         "an adapter)") if not self.lora else [])
                + (nothing(pref, "a preference --method", "this run is supervised tuning (add "
                           "--method dpo to tune on chosen/rejected pairs)")
                   if self.method == "sft" else []))


@dataclass
class _Generate:
    instruction: Annotated[str, tyro.conf.arg(metavar="TEXT")] = ""
    """The instruction to answer ('-' reads it from stdin); or the argument after MODEL."""
    model: str = ""
    """A trained run's final/ directory (or any model directory)."""
    input: str = ""
    """Optional input block for the instruction."""
    template: OptTemplate = None
    """Used only when the model directory has no saved template."""


@dataclass
class GenerateConfig(ModelOptions, SamplingOptions, _Generate):
    command: ClassVar[str] = "generate"
    required: ClassVar[tuple[str, ...]] = ("model", "instruction")
    positional: ClassVar[tuple[str, ...]] = ("model", "instruction")


@dataclass
class _Chat:
    model: str = ""
    """A trained run's final/ directory (or any model directory)."""
    template: OptTemplate = None
    """Used only when the model directory has no saved template."""
    system: Text = None
    """System message, for templates that have one (chatml, model)."""


@dataclass
class ChatConfig(ModelOptions, SamplingOptions, _Chat):
    command: ClassVar[str] = "chat"
    required: ClassVar[tuple[str, ...]] = ("model",)
    positional: ClassVar[tuple[str, ...]] = ("model",)


@dataclass
class _Eval:
    model: str = ""
    """The model to evaluate, usually a trained run's final/ directory."""
    data: str = ""
    """Held-out records with the expected `output`, or preference pairs (chosen/rejected): then also the rewards of --model against --compare, and generation scored on the chosen answers."""
    compare: OptPath = None
    """Base model directory to evaluate with the same template, side by side."""
    out: OptPath = None
    """Write the report as JSON here."""
    json: bool = False
    """Print the report as JSON instead of tables."""
    samples: int = 3
    """How many sample generations to show side by side."""
    few_shot: int = 0
    """With --compare: also prompt the base model with this many worked examples before each question (the few-shot baseline)."""
    shots: OptPath = None
    """Worked examples for --few-shot (default: the training data named in the config.yaml of the run that wrote --model); rows whose prompt is an eval row's are never used."""
    beta: float = 0.1
    """Preference files (chosen/rejected): DPO's beta for the rewards beta * (log-prob under --model - under --compare, the reference); use the --beta the model was trained with. Without --compare only the model's own log-prob preference is shown."""
    batch_size: int = 16
    """Prompts generated together."""
    template: OptTemplate = None
    """Used only when the model directory has no saved template."""
    format: RecordFormat = "auto"
    """Record format; auto-detected from the columns unless given."""
    columns: Columns = None
    """Map other column names, e.g. 'instruction=question,output=answer'."""
    skip_invalid: bool = False
    """Drop invalid rows (and report how many and why) instead of stopping."""


@dataclass
class EvalConfig(ModelOptions, SamplingOptions, _Eval):
    command: ClassVar[str] = "eval"
    required: ClassVar[tuple[str, ...]] = ("model", "data")
    positional: ClassVar[tuple[str, ...]] = ("model",)

    def problems(self) -> list[str]:
        return SamplingOptions.problems(self) + [why for ok, why in [
            (self.batch_size >= 1, f"--batch-size must be >= 1 (got {self.batch_size})"),
            (self.beta > 0, f"--beta must be > 0 (got {self.beta}); 0.1 is the usual DPO value"),
            (self.few_shot >= 0, f"--few-shot must be >= 0 (got {self.few_shot})"),
            (not self.few_shot or bool(self.compare), "--few-shot is a baseline of the base "
             "model: give it with --compare BASE"),
        ] if not ok]

    def warnings(self) -> list[str]:
        return ["--shots does nothing without --few-shot K"] if self.shots and not self.few_shot \
            else []


@dataclass
class _Export:
    model: str = ""
    """A trained run's final/ directory (full or LoRA)."""
    to: str = ""
    """Directory to write the exported model to."""
    merge: bool = True
    """Merge a LoRA adapter into the base weights."""
    overwrite: bool = False
    """Replace a non-empty --to directory."""
    template: OptTemplate = None
    """Used only when the model directory has no saved template."""


@dataclass
class ExportConfig(ModelOptions, _Export):
    command: ClassVar[str] = "export"
    required: ClassVar[tuple[str, ...]] = ("model", "to")
    positional: ClassVar[tuple[str, ...]] = ("model",)


@dataclass
class _Audit:
    data: str = ""
    """Data file (JSON, JSONL, CSV, Parquet) or a datasets name/directory (or the first argument)."""
    model: OptPath = None
    """Tokenizer for token counts and truncation checks."""
    eval_data: OptPath = None
    """Check this eval set for contamination by the training data."""
    json: bool = False
    """Print the report as JSON."""
    strict: bool = False
    """Exit non-zero when there is any error-level finding."""
    template: OptTemplate = None
    """Prompt template used for token counts, as in train (default: the one saved with --model, else alpaca)."""
    max_length: int = 2048
    """With --model: flag rows longer than this many tokens (train would drop them)."""
    format: RecordFormat = "auto"
    """Record format; auto-detected from the columns unless given."""
    columns: Columns = None
    """Map other column names, e.g. 'instruction=question,output=answer'."""
    skip_invalid: bool = True
    """Audit the valid rows and count the invalid ones (--no-skip-invalid: stop at them)."""


@dataclass
class AuditConfig(ModelOptions, _Audit):
    command: ClassVar[str] = "audit"
    required: ClassVar[tuple[str, ...]] = ("data",)
    positional: ClassVar[tuple[str, ...]] = ("data",)

    def problems(self) -> list[str]:
        return ([f"--max-length must be >= 2 (got {self.max_length})"] if self.max_length < 2
                else []) + ([] if not self.model else template_problems(self.template))


@dataclass
class _Curate:
    data: Annotated[tuple[str, ...], tyro.conf.arg(
        metavar="DATA [DATA ...]", help_behavior_hint="(or the arguments; or --mix)")] = ()
    """Data files or directories; a row repeated in several is kept once (the first)."""
    out: Annotated[str, tyro.conf.arg(metavar="PATH")] = ""
    """The curated training file (JSON Lines); OUT.manifest.json lists every dropped row and why."""
    mix: Annotated[str | None, tyro.conf.arg(metavar="PATH=SHARE,...")] = None
    """Sample a mix by share instead of DATA, e.g. a.jsonl=0.7,b.jsonl=0.3 (shares are normalized)."""
    rows: Annotated[int | None, tyro.conf.arg(metavar="INT", help_behavior_hint=(
        "(default: all; with --mix the largest mix that repeats no row)"))] = None
    """Rows to write, sampled after curation (repeats are reported when a source runs out)."""
    seed: int = 0
    """Seed of the --mix/--rows sampling."""
    eval_data: OptPath = None
    """Drop training rows whose prompt (exact or near-duplicate) is in this eval set."""
    model: OptPath = None
    """Tokenizer for the --max-length check: rows that would not fit are dropped."""
    max_length: int = 2048
    """With --model: drop rows longer than this many tokens (template included)."""
    template: OptTemplate = None
    """Prompt template used for token counts, as in train (default: the one saved with --model, else alpaca)."""
    conflicts: Literal["drop", "keep-first", "keep"] = "drop"
    """Rows with the same prompt and different outputs: drop them all, keep the first, or keep all."""
    max_near_duplicates: Annotated[int | None, tyro.conf.arg(
        metavar="K", help_behavior_hint="(default: keep all, report only)")] = None
    """Keep at most K distinct instructions per group of near-duplicate instructions."""
    keep_duplicates: bool = False
    """Keep rows that repeat an earlier row (same prompt and output)."""
    keep_contaminated: bool = False
    """Keep rows whose prompt is in --eval-data."""
    keep_empty: bool = False
    """Keep rows with an empty output."""
    keep_copies: bool = False
    """Keep rows whose output repeats the instruction or the input."""
    keep_refusals: bool = False
    """Keep refusals and 'as an AI language model' outputs."""
    keep_cut_off: bool = False
    """Keep outputs that stop mid-sentence."""
    keep_markers: bool = False
    """Keep outputs that contain template or chat markers (### Response:, <|im_start|>, </s>)."""
    keep_too_long: bool = False
    """Keep rows longer than --max-length (with --model)."""
    overwrite: bool = False
    """Replace an existing --out (an input file is never replaced)."""
    format: RecordFormat = "auto"
    """Record format; auto-detected from the columns unless given."""
    columns: Columns = None
    """Map other column names, e.g. 'instruction=question,output=answer' (the output keeps yours)."""
    skip_invalid: bool = True
    """Drop invalid rows, listed in the manifest (--no-skip-invalid: stop at them)."""


@dataclass
class CurateConfig(ModelOptions, _Curate):
    command: ClassVar[str] = "curate"
    required: ClassVar[tuple[str, ...]] = ("out",)
    positional: ClassVar[tuple[str, ...]] = ("data",)

    def problems(self) -> list[str]:
        return [why for ok, why in [
            (bool(self.data) or bool(self.mix), "curate needs data: instruct-tune curate DATA "
             "[DATA ...] --out clean.jsonl (or --mix a.jsonl=0.7,b.jsonl=0.3)"),
            (self.max_length >= 2, f"--max-length must be >= 2 (got {self.max_length})"),
            (self.rows is None or self.rows >= 1, f"--rows must be >= 1 (got {self.rows})"),
            (self.max_near_duplicates is None or self.max_near_duplicates >= 1,
             f"--max-near-duplicates must be >= 1 (got {self.max_near_duplicates}; leave it "
             "out to keep all)"),
        ] if not ok] + ([] if not self.model else template_problems(self.template))

    def warnings(self) -> list[str]:
        if not self.model and (self.max_length != 2048 or self.keep_too_long):
            return ["--max-length/--keep-too-long do nothing without --model (the tokenizer "
                    "that counts the tokens)"]
        return []


@dataclass
class DemoConfig:
    out: str = "instruct-tune-demo"
    """Output directory: data/, train/final/ (the tuned model), eval/, report.md, loss_curve.png."""
    model: OptPath = None
    """Run the demo on your own base model (directory or hub name) instead of the local one."""
    fast: bool = False
    """A shorter version (a few minutes on a laptop) for tests and CI."""
    levers: bool = False
    """Instead of the story: measure the data levers (size, task and phrasing diversity, output quality), one changed at a time at the same number of steps (about 10 minutes; with --fast about 3)."""
    prefer: bool = True
    """After supervised tuning, preference-tune (DPO) on pairs from the tuned model's own answers, next to a control (supervised tuning continued on the same chosen answers), and compare the three (--no-prefer: skip that stage)."""
    seed: int = 0
    """Seed of the task data and of tuning (the local base model is cached, whatever the seed)."""
    overwrite: bool = False
    """Replace a non-empty --out left by an earlier demo run."""

    command: ClassVar[str] = "demo"
    required: ClassVar[tuple[str, ...]] = ()
    positional: ClassVar[tuple[str, ...]] = ()


@dataclass
class ReportConfig:
    run_dir: Annotated[str, tyro.conf.arg(metavar="DIR")] = ""
    """A train or demo --out, or the directory of eval --out JSON files (or the argument)."""
    out: OptPath = None
    """Where to write the page (default: RUN_DIR/report.html; a page of yours is never replaced)."""
    samples: int = 6
    """Sample generations shown per eval split (one per task first)."""

    command: ClassVar[str] = "report"
    required: ClassVar[tuple[str, ...]] = ("run_dir",)
    positional: ClassVar[tuple[str, ...]] = ("run_dir",)

    def problems(self) -> list[str]:
        return [f"--samples must be >= 0 (got {self.samples})"] if self.samples < 0 else []


PREFERENCE_METHODS = ("dpo", "ipo", "hinge", "robust", "simpo", "orpo")
_SMOOTHED = {"dpo", "robust", "simpo"}  # methods whose formula uses label_smoothing


@dataclass(frozen=True)
class PreferenceLossConfig:
    """Which preference loss and its hyperparameters (names as in TRL where TRL has them)."""

    method: str = "dpo"
    beta: float = 0.1  # DPO-family temperature; SimPO's reward scale; unused by ORPO
    label_smoothing: float = 0.0  # cDPO / robust-DPO flip probability; SimPO as TRL; in [0, 0.5)
    simpo_gamma: float = 0.5  # SimPO target margin gamma, in reward units (TRL's simpo_gamma)
    orpo_lambda: float = 0.1  # weight of ORPO's odds-ratio term (TRL's ORPOConfig.beta)
    sft_weight: float = 0.0  # weight of the chosen answer's per-token mean NLL, added to every method

    def __post_init__(self) -> None:
        if self.method not in PREFERENCE_METHODS:
            raise ConfigError(f"--method {self.method!r} is not a preference method; "
                              f"use one of {', '.join(PREFERENCE_METHODS)}.")
        if not self.beta > 0:
            raise ConfigError(f"--beta must be > 0 (got {self.beta}); 0.1 is the usual DPO value.")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"--label-smoothing must lie in [0, 0.5) (got {self.label_smoothing}): "
                              "it is the probability that a pair's preference label is flipped.")
        if self.label_smoothing and self.method not in _SMOOTHED:
            raise ConfigError(f"--label-smoothing has no effect with --method {self.method}; "
                              f"drop it or use one of {', '.join(sorted(_SMOOTHED))}.")
        if self.orpo_lambda < 0 or self.sft_weight < 0 or self.simpo_gamma < 0:
            raise ConfigError("--orpo-lambda, --sft-weight and --simpo-gamma must be >= 0.")



COMMAND_CONFIGS: tuple[type, ...] = (InspectConfig, AuditConfig, CurateConfig, TrainConfig,
                                     EvalConfig, GenerateConfig, ChatConfig, ExportConfig, DemoConfig,
                                     ReportConfig)


def template_problems(template: str | None) -> list[str]:
    """A typo in --template, found before anything loads (Jinja files and 'model' need the
    tokenizer, so only their existence is checked here)."""
    if not template or template == "model":
        return []
    if Path(template).suffix in (".jinja", ".j2"):
        return [] if Path(template).is_file() else [f"--template {template}: file not found"]
    from .data.templates import get_template

    try:
        get_template(template)
    except ConfigError as e:
        return [str(e).rstrip(".")]
    return []


def parse_duration(text: str) -> float:
    """'300s', '20m', '2h', '1h30m', '1.5h' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    s = re.sub(r"\s+", "", str(text).lower())
    if re.fullmatch(r"\d+(\.\d+)?", s):
        seconds = float(s)
    elif re.fullmatch(r"(\d+(\.\d+)?[smhd])+", s):
        seconds = sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhd])", s))
    else:
        raise ConfigError(f"--max-time {text!r}: use a duration like 300s, 20m, 2h or 1h30m.")
    if seconds <= 0:
        raise ConfigError(f"--max-time {text!r} must be more than 0.")
    return seconds


def check(cfg) -> list[str]:
    """Everything about a command's options that can be checked without loading anything: the
    required options, then each bad value (all at once). Returns warnings; raises ConfigError."""
    missing = [f"--{f.replace('_', '-')}" for f in type(cfg).required if not getattr(cfg, f)]
    if missing:
        usage = " ".join(f"{f.upper()}" for f in type(cfg).positional)
        hint = f" (usage: instruct-tune {cfg.command} {usage} ...)" if usage else ""
        raise ConfigError(f"{cfg.command} needs {' and '.join(missing)}{hint}.")
    problems = getattr(cfg, "problems", list)()
    if problems:
        raise ConfigError(problems[0] + "." if len(problems) == 1 else
                          "Bad options:\n  " + "\n  ".join(problems))
    return getattr(cfg, "warnings", list)()
