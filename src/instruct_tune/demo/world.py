"""The demo's small world: the words and facts shared by the pretraining corpus and the tasks.

Everything a task asks about is stated in the corpus (capitals, opposites, sums) and every word a
task input uses appears there in lower case, Capitalized and UPPER CASE, so the base model already
"knows" the material. Instruction tuning only has to teach it the format: follow, answer, stop.
"""

from __future__ import annotations

NOUNS = (
    "apple", "pear", "plum", "ball", "boat", "bird", "book", "box", "cake", "car", "cat", "cow",
    "cup", "dog", "door", "duck", "egg", "fish", "flower", "frog", "hat", "horse", "house", "kite",
    "lamp", "moon", "pen", "pig", "ring", "rock", "sheep", "shoe", "star", "sun", "table", "tree",
    "train", "truck", "hill", "river", "bell", "bread", "coat", "milk",
)

ADJECTIVES = (
    "red", "blue", "green", "yellow", "big", "small", "old", "new", "happy", "sad", "fast", "slow",
    "soft", "loud", "little", "pink", "brown", "round",
)

NAMES = ("Lily", "Tom", "Anna", "Ben", "Mia", "Sam", "Zoe", "Max", "Ella", "Leo", "Ivy", "Jack")

# Verbs in the third person, for story sentences and find-the-number inputs.
VERBS = ("sees", "likes", "has", "finds", "wants", "draws", "buys", "keeps", "holds", "picks")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen")

CAPITALS = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "Japan": "Tokyo",
    "China": "Beijing", "Egypt": "Cairo", "Peru": "Lima", "Chile": "Santiago",
    "Russia": "Moscow", "Greece": "Athens", "Norway": "Oslo", "Sweden": "Stockholm",
    "Kenya": "Nairobi", "Canada": "Ottawa", "Cuba": "Havana", "Ireland": "Dublin",
    "Poland": "Warsaw", "Austria": "Vienna", "Portugal": "Lisbon", "Hungary": "Budapest",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Turkey": "Ankara", "Thailand": "Bangkok",
    "Brazil": "Brasilia", "Iran": "Tehran", "Ghana": "Accra", "Nepal": "Kathmandu",
    "Belgium": "Brussels", "Iceland": "Reykjavik", "Vietnam": "Hanoi", "Australia": "Canberra",
    "Morocco": "Rabat", "Colombia": "Bogota", "Ukraine": "Kyiv", "Romania": "Bucharest",
    "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
}

# Symmetric pairs with one answer each way (no word appears in two pairs).
OPPOSITE_PAIRS = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("old", "new"),
    ("up", "down"), ("day", "night"), ("light", "dark"), ("open", "closed"), ("full", "empty"),
    ("wet", "dry"), ("loud", "quiet"), ("soft", "hard"), ("early", "late"), ("near", "far"),
    ("rich", "poor"), ("clean", "dirty"), ("black", "white"), ("left", "right"),
    ("high", "low"), ("good", "bad"), ("thick", "thin"), ("strong", "weak"), ("in", "out"),
    ("first", "last"),
)
OPPOSITES = {**dict(OPPOSITE_PAIRS), **{b: a for a, b in OPPOSITE_PAIRS}}

# Sums the corpus states and the add task asks about: 0..9 plus 0..9.
SUMS = {(a, b): a + b for a in range(10) for b in range(10)}


def plural(noun: str) -> str:
    if noun in ("sheep", "fish"):
        return noun
    return noun + ("es" if noun.endswith(("x", "sh", "ch")) else "s")


def with_article(word: str) -> str:
    """The word with its indefinite article: 'an apple', 'a pear'."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def words() -> tuple[str, ...]:
    """The lower-case words task inputs are built from (nouns and adjectives)."""
    return NOUNS + ADJECTIVES
