"""`generate` prints only the response; `chat` streams, keeps history for chat templates only,
and exits cleanly on Ctrl-D / Ctrl-C."""

from __future__ import annotations

import io
import sys

from instruct_tune.cli import main
from instruct_tune.data.records import Message
from instruct_tune.evaluate.generate import Generator
from instruct_tune.serve.chat import chat_loop, is_multi_turn


def feed(*lines, end: type[BaseException] = EOFError):
    """A fake `input`: returns the lines, then raises `end` (EOFError = Ctrl-D)."""
    it = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise end from None
    return read


def test_generate_prints_only_the_response(tuned_dir, capsys):
    assert main(["generate", "--model", str(tuned_dir), "What is the capital of France?"]) == 0
    assert capsys.readouterr().out == "Paris\n"
    assert main(["generate", "--model", str(tuned_dir), "Reverse the word.", "--input", "cat"]) == 0
    assert capsys.readouterr().out == "tac\n"


def test_generate_says_when_it_hit_the_limit(base_dir, capsys):
    assert main(["generate", "--model", str(base_dir), "Say yes.", "--max-new-tokens", "3"]) == 0
    assert "no stop token" in capsys.readouterr().err


def test_generate_needs_an_instruction(tuned_dir, capsys):
    assert main(["generate", "--model", str(tuned_dir)]) == 2
    assert "instruction" in capsys.readouterr().err


def test_alpaca_chat_is_single_turn(tuned_dir):
    gen = Generator.load(tuned_dir)
    seen: list[list[Message]] = []
    encode = gen.encode
    gen.encode = lambda msgs: seen.append(list(msgs)) or encode(msgs)
    out: list[str] = []
    code = chat_loop(gen, read=feed("What is the capital of France?", "Say yes."), write=out.append,
                     sampling={"max_new_tokens": 16})
    text = "".join(out)
    assert code == 0
    assert "single-turn" in text and "Paris\n" in text and "yes\n" in text
    assert [len(m) for m in seen] == [1, 1]  # no history for alpaca


def test_chatml_chat_keeps_history_and_resets(chatml_dir):
    gen = Generator.load(chatml_dir)
    assert is_multi_turn(gen.template)
    seen: list[list[Message]] = []
    encode = gen.encode
    gen.encode = lambda msgs: seen.append(list(msgs)) or encode(msgs)
    out: list[str] = []
    chat_loop(gen, read=feed("Count to three.", "Say yes.", "/reset", "Say yes."), write=out.append,
              system="Be brief.", sampling={"max_new_tokens": 16})
    assert "multi-turn" in "".join(out)
    assert [[m.role for m in msgs] for msgs in seen] == [
        ["system", "user"], ["system", "user", "assistant", "user"], ["system", "user"]]
    assert seen[1][2] == Message("assistant", "one two three")


def test_old_turns_are_dropped_to_fit_the_context(chatml_dir):
    gen = Generator.load(chatml_dir)
    gen.context = len(gen.encode([Message("user", "Count to three.")])) + 30
    out: list[str] = []
    chat_loop(gen, read=feed("Count to three.", "Count to three.", "Count to three."),
              write=out.append, sampling={"max_new_tokens": 16})
    assert "dropped 1 old exchange" in "".join(out)


def test_too_long_message_is_reported_and_chat_goes_on(tuned_dir):
    gen = Generator.load(tuned_dir)
    gen.context = 40
    out: list[str] = []
    assert chat_loop(gen, read=feed("word " * 60, "Say yes."), write=out.append,
                     sampling={"max_new_tokens": 4}) == 0
    text = "".join(out)
    assert "does not fit the model's context" in text and "yes\n" in text


def test_ctrl_c_stops_an_answer_then_quits_at_the_prompt(tuned_dir):
    gen = Generator.load(tuned_dir)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    gen.stream = interrupted
    out: list[str] = []
    assert chat_loop(gen, read=feed("Say yes.", "Say yes.", end=KeyboardInterrupt), write=out.append) == 0
    assert len(calls) == 2 and "".join(out).count("(interrupted)") == 2


def test_chat_command_reads_stdin_until_end_of_input(tuned_dir, monkeypatch, capsys):
    # The real `input()` path: piped stdin, Ctrl-D is the end of the input.
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say yes.\n/reset\nName a color.\n"))
    assert main(["chat", str(tuned_dir)]) == 0
    captured = capsys.readouterr()
    assert "yes\n" in captured.out and "red\n" in captured.out
    assert "Traceback" not in captured.err
