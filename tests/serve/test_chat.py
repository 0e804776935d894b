"""`generate` prints only the response; `chat` streams, keeps history for chat templates only,
exits cleanly on Ctrl-D / Ctrl-C, never sends a mistyped /command to the model, and with piped
stdin prints only the answers, one block per line."""

from __future__ import annotations

import io
import sys

import pytest

from instruct_tune.cli import main
from instruct_tune.data.records import Message
from instruct_tune.evaluate.generate import Generator
from instruct_tune.serve.chat import chat_loop, is_multi_turn
from tests.evaluate import tuned


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


class TTY(io.StringIO):
    """Stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def counting_stream(gen: Generator) -> list[list[int]]:
    """Record each prompt the model is asked to answer."""
    calls: list[list[int]] = []
    stream = gen.stream
    gen.stream = lambda prompt, *a, **kw: calls.append(list(prompt)) or stream(prompt, *a, **kw)
    return calls


@pytest.mark.parametrize("typo", ["/hlep", "/quit2", "/Reset-all"])
def test_unknown_command_is_named_and_not_sent_to_the_model(tuned_dir, typo):
    gen = Generator.load(tuned_dir)
    calls = counting_stream(gen)
    out: list[str] = []
    assert chat_loop(gen, read=feed(typo, "Say yes."), write=out.append,
                     sampling={"max_new_tokens": 8}) == 0
    text = "".join(out)
    assert len(calls) == 1 and calls[0] == gen.encode([Message("user", "Say yes.")])
    assert f"unknown command {typo}" in text
    assert all(c in text.split(typo, 1)[1] for c in ("/reset", "/exit", "/quit", "/help"))


@pytest.mark.parametrize("line", ["/usr/bin/env is a path", "/etc?", "/reset please", "/ hi"])
def test_text_that_starts_with_a_slash_goes_to_the_model(tuned_dir, line):
    gen = Generator.load(tuned_dir)
    calls = counting_stream(gen)
    out: list[str] = []
    chat_loop(gen, read=feed(line), write=out.append, sampling={"max_new_tokens": 2})
    assert calls == [gen.encode([Message("user", line)])]
    assert "unknown command" not in "".join(out)


def test_commands_ignore_case_and_help_lists_them(tuned_dir):
    gen = Generator.load(tuned_dir)
    calls = counting_stream(gen)
    out: list[str] = []
    assert chat_loop(gen, read=feed("/HELP", "/Exit", "Say yes."), write=out.append) == 0
    assert calls == [] and "/reset" in "".join(out).split("/HELP")[-1]


def expected(*instructions: str) -> str:
    """The tuned model's answers (tuned.RECORDS), each followed by a blank line."""
    answers = {r.instruction: r.output for r in tuned.RECORDS}
    return "".join(f"{answers[i]}\n\n" for i in instructions)


def test_piped_chat_prints_only_the_answers_separated_by_blank_lines(tuned_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say yes.\n\n  \n/hlep\nName a color.\n"))
    assert main(["chat", str(tuned_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected("Say yes.", "Name a color.")
    assert "unknown command /hlep" in captured.err and "Traceback" not in captured.err


def test_piped_chat_without_a_final_newline_and_with_crlf(tuned_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say yes.\r\nName a color."))
    assert main(["chat", str(tuned_dir)]) == 0
    assert capsys.readouterr().out == expected("Say yes.", "Name a color.")


def test_piped_chat_notes_go_to_stderr(base_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Say yes.\nSay no.\n"))
    assert main(["chat", str(base_dir), "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    answers = captured.out.split("\n\n")
    assert len(answers) == 3 and answers[2] == "" and all(answers[:2])  # two blocks, nothing else
    assert captured.err.count("no stop token") == 2


def test_terminal_chat_keeps_the_banner_and_prompt(tuned_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", TTY("Say yes.\n"))
    assert main(["chat", str(tuned_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Chatting with") and ">>> yes\n>>> " in out


def test_sampling_is_reproducible_with_a_seed(tuned_dir, capsys):
    def sample(seed: int) -> str:
        assert main(["generate", "--model", str(tuned_dir), "Write a poem about the sea.", "--temperature", "3.0",
                     "--max-new-tokens", "12", "--seed", str(seed)]) == 0
        return capsys.readouterr().out

    first = sample(1)
    assert sample(1) == first
    assert len({first, *(sample(s) for s in range(2, 7))}) > 1  # the seed does change the sample
