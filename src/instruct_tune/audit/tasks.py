"""What task an instruction asks for: its leading verb and that verb's object ("write -> poem").

The Self-Instruct paper parsed instructions with a constituency parser and plotted root verbs with
their direct noun objects. A parser model is a download we can't make, so this is a light
heuristic tuned to how instructions are written: find the first sentence that starts (after polite
or framing prefixes such as "Please", "Can you", "Given X,") with a verb from a lexicon of ~300
instruction verbs, then take the first content word after it as the object.

Questions are one task family, QUESTION, with the question word as the object ("What is ...?" ->
("question", "what"), "Is there ...?" -> ("question", "yes/no")). A question word is not a verb,
and the verb after "what is" / "who was" / "how many ... are" is a copula or auxiliary that says
nothing about the task, so splitting questions by it (or by wh-word, as "what?" and "which?"
types) would inflate the task count with grammar. Where a question does name the work to do,
through "you" ("How would you explain X?", "Can you list ..."), that verb is the task. A
sentence with a verb is preferred over a question, so "What is X? Explain." is "explain".
English only: other languages come out as "(other)", and the audit says so when that is most of
the set.
"""

from __future__ import annotations

import re

VERBS = frozenset(str.split("""
act add address adjust advise analyse analyze annotate answer apologize apply argue arrange ask
assess assign assist brainstorm break build calculate categorise categorize change check choose
cite clarify classify clean code combine come compare compile complete compose compute condense
construct continue convert convince correct count craft create critique debug decide decode
decrypt define delete derive describe design detect determine develop devise diagnose discuss
distinguish divide do draft draw edit elaborate eliminate encode encourage enumerate equip
estimate evaluate examine expand explain explore express extract figure fill filter find finish
fix follow form format formulate frame generate get give go guess help highlight identify
illustrate imagine implement improve include incorporate infer input insert interpret introduce
invent investigate judge justify keep label let list locate look make map mark match measure
memorize merge mention modify name narrate note observe offer optimize order organise organize
outline output paraphrase parse pick pitch plan play point predict prepare present pretend
produce program propose prove provide put rank rate read reason recall recommend reconstruct
recount refactor reformat reformulate remove rename reorder rephrase replace reply report
represent request research resolve respond restate restructure retell return reverse review
revise rewrite rhyme roleplay rearrange say schedule score search select sell send separate
share shorten show simplify sketch solve sort specify spell split state structure suggest sum
summarise summarize supply support switch tag take talk teach tell test think tokenize transcribe
transform translate transliterate turn type underline understand unscramble use validate verify
visualize weigh word work write
accept adapt advertise align alphabetize approximate assemble balance begin brief capitalize
caption characterize circle collect comment complain conclude conjugate connect consider contrast
copy cover craft curate demonstrate differentiate discover emphasize enhance ensure enter
establish exclude execute fetch flag forecast gather group guide hypothesize indicate inform
interview invite join jot learn limit lowercase mimic minimize negotiate notice number
obtain omit pair perform persuade plot practice prioritize proofread publish punctuate quote
react rebut recognize record redact reduce refer reflect relate remember remind reorganize
repeat reproduce retrieve satirize scan segment sequence set shuffle sing speculate standardize
start study submit substitute synthesize tabulate tally tweet update uppercase vote
warn welcome notify
"""))
PARTICLES = {("come", "up"): "come up with", ("figure", "out"): "figure out",
             ("fill", "in"): "fill in", ("point", "out"): "point out", ("sum", "up"): "sum up",
             ("break", "down"): "break down", ("think", "of"): "think of",
             ("look", "up"): "look up", ("make", "up"): "make up", ("write", "down"): "write down"}
QUESTION = "question"  # the task family of every question, whatever its wh-word
WH = frozenset(str.split("what how why when where who whom whose which"))
AUX = frozenset(str.split("is are was were do does did can could should would will has have am "
                          "shall may might"))
# "Do you ...?" is a question, "Do the following" is a command ("do" is also a lexicon verb).
_DO_QUESTION = frozenset(str.split("you i we they"))
# Framing that precedes the real verb: "Please", "Can you", "I want you to", "Now", ...
PREFIX = re.compile(
    r"^(?:(?:please|kindly|now|also|then|next|first|finally|briefly|quickly|carefully|"
    r"(?:can|could|would|will) you(?: please)?|i (?:want|need|would like|'d like) you to|"
    r"i want to|help me(?: to)?|let'?s|let us|you (?:should|need to|must|have to|will)|"
    r"(?:your|the) task is to|try to|in this task,? you (?:are asked to|will|should|need to))"
    r"\s+)+")
FRAMES = frozenset(str.split("given based using for in with after from if when according "
                             "considering assuming suppose as to once while during on"))
SKIP = frozenset(str.split("""
a an the this that these those some any each every all my your our
their his her its me us him them one two three four five six seven eight nine ten few several many more
most following given provided above below short brief long new simple detailed good great
creative funny catchy interesting different similar possible appropriate suitable relevant best
main key important common original random unique concise clear formal informal positive negative
better personal professional persuasive compelling descriptive top next first last final correct
whole entire single multiple various specific general basic another other such own same
"""))
STOP_OBJECT = frozenset(str.split("about to of in on at for with from by into as if whether how "
                                  "what why when where who which that and or but than so it them "
                                  "they"))
# "You are given X, and you need to create ...", "if you could suggest ...", "you should decide"
_YOU_TO = re.compile(r"\byou (?:will )?(?:need|have|are asked|are required|will be asked|will be "
                     r"required|are expected) to (?:\w+ly )?([a-z]+)|\b(?:are|is) required to "
                     r"([a-z]+)|\byou (?:should|must|can|could) ([a-z]+)|\b(?:if you could|"
                     r"could you|can you|would you|please|up to you to) (?:\w+ly )?([a-z]+)")
# Passive instructions: "The given text must be classified as ..."
_PASSIVE = re.compile(r"\b(?:should|must|needs to|has to|is to) be (?:\w+ly )?([a-z]+)")
_IRREGULAR = {"written": "write", "given": "give", "done": "do", "made": "make", "chosen": "choose",
              "taken": "take", "told": "tell", "found": "find", "shown": "show", "drawn": "draw",
              "rewritten": "rewrite", "sent": "send", "built": "build"}
_SENT = re.compile(r"(?<=[.!?:;])\s+|\n+|\s+[-\u2013\u2014]+\s+")
_TOKEN = re.compile(r"[a-z][a-z'\-]*|\d[\w\-]*|[^\sa-z\d]")


def task_of(instruction: str) -> tuple[str, str]:
    """(verb, object) of an instruction; verb is "(other)" when none is recognised.

    Questions give (QUESTION, wh-word or "yes/no"). The object is "" when the verb is followed
    by a preposition or clause ("explain how ...") rather than a noun.
    """
    question = None
    for sentence in _SENT.split(instruction.strip().lower())[:6]:
        found = _sentence_task(sentence)
        if found and found[0] != QUESTION:
            return found
        question = question or found
    return question or ("(other)", "")


def label(verb: str, obj: str) -> str:
    """How a (verb, object) pair is shown: "write poem", "question (what)"."""
    if verb == QUESTION:
        return f"{QUESTION} ({obj})" if obj else QUESTION
    return f"{verb} {obj}".strip()


def _base(word: str) -> str | None:
    """The lexicon verb a word is, or is a gerund of ("coming" -> "come", "solving" -> "solve")."""
    if word in VERBS:
        return word
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        for cand in (stem, stem + "e", stem[:-1]):
            if cand in VERBS:
                return cand
    return None


def _sentence_task(raw: str) -> tuple[str, str] | None:
    sentence = PREFIX.sub("", raw.strip(" \t\"'*-#>"))
    toks = _TOKEN.findall(sentence)
    if not toks:
        return None
    # "Given a sentence, classify it", "You are given X, convert it": look after the comma.
    framed = toks[0] in FRAMES or sentence.startswith(("you are given", "you are provided"))
    if framed and "," in toks:
        found = _sentence_task(sentence.split(",", 1)[1])
        if found:
            return found
    verb = None if toks[0] == "do" and toks[1:2] and toks[1] in _DO_QUESTION else _base(toks[0])
    if verb is None and toks[0] == "try" and len(toks) > 1:  # "Try coming up with ..."
        toks, verb = toks[1:], _base(toks[1])
    if verb is None:
        return _indirect(sentence, raw, toks)
    return _with_object(verb, toks[1:])


def _indirect(sentence: str, raw: str, toks: list[str]) -> tuple[str, str] | None:
    """Verbs not at the start: "you are given X and need to <verb>", passives, questions."""
    m = _YOU_TO.search(raw)
    verb = _base(next(g for g in m.groups() if g)) if m else None
    if m and verb:
        return _with_object(verb, _TOKEN.findall(raw[m.end():]))
    if toks[0] in WH:
        return QUESTION, toks[0]
    if toks[0] in AUX:
        return QUESTION, "yes/no"
    if toks[0] in FRAMES and len(toks) > 1 and toks[1] in WH:  # "In what genres does ..."
        return QUESTION, toks[1]
    m = _PASSIVE.search(sentence)
    if m:
        w = m.group(1)
        verb = _IRREGULAR.get(w) or (_base(w[:-3] + "y") if w.endswith("ied") else None)
        verb = verb or next((v for v in (w[:-2], w[:-1], w[:-3]) if w.endswith("ed") and v in VERBS),
                            None)
        if verb:
            return verb, ""
    return None


def _with_object(verb: str, rest: list[str]) -> tuple[str, str]:
    if verb == "help" and rest[:1] in (["me"], ["us"]):  # "help me write ..." is about writing
        rest = rest[2:] if rest[1:2] == ["to"] else rest[1:]
        if rest and _base(rest[0]):
            verb, rest = _base(rest[0]), rest[1:]
    if rest and (verb, rest[0]) in PARTICLES:
        verb = PARTICLES[(verb, rest[0])]
        rest = rest[2:] if verb == "come up with" and rest[1:2] == ["with"] else rest[1:]
    return verb, _object(rest)


def _object(rest: list[str]) -> str:
    for t in rest[:8]:
        if t in STOP_OBJECT or not t[0].isalpha():
            if t[0].isdigit() or t == "-":
                continue  # "a 500-word essay", "5 tips"
            return ""
        if t in SKIP or "-" in t:  # determiners, common adjectives, "one-sentence"
            continue
        return t
    return ""
