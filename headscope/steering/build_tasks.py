"""Rebuild the built-in LoFiT task files in assets/steering (deterministic): `python -m headscope.steering.build_tasks`.

- ioi.json: indirect-object completion on the IOI templates and names (Wang et al. 2022, as listed in
  reference/papers.md §3.4), names kept only if they are one token with a leading space for the default model.
  Train and held-out pairs use disjoint names and disjoint templates, so held-out accuracy measures transfer.
- antonyms.json: an attribute task designed here: "word → opposite" with no demonstrations, so the unsteered
  model mostly does not know what is asked. Held-out word pairs never appear in training (in either direction).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

NAMES = [
    "Michael",
    "Christopher",
    "Jessica",
    "Matthew",
    "Ashley",
    "Jennifer",
    "Joshua",
    "Amanda",
    "Daniel",
    "David",
    "James",
    "Robert",
    "John",
    "Joseph",
    "Andrew",
    "Ryan",
    "Brandon",
    "Jason",
    "Justin",
    "Sarah",
    "William",
    "Jonathan",
    "Stephanie",
    "Brian",
    "Nicole",
    "Nicholas",
    "Anthony",
    "Heather",
    "Eric",
    "Elizabeth",
    "Adam",
    "Megan",
    "Melissa",
    "Kevin",
    "Steven",
    "Thomas",
    "Timothy",
    "Christina",
    "Kyle",
    "Rachel",
    "Laura",
    "Lauren",
    "Amber",
    "Brittany",
    "Danielle",
    "Richard",
    "Kimberly",
    "Jeffrey",
    "Amy",
    "Crystal",
    "Michelle",
    "Tiffany",
    "Jeremy",
    "Benjamin",
    "Mark",
    "Emily",
    "Aaron",
    "Charles",
    "Rebecca",
    "Jacob",
    "Stephen",
    "Patrick",
    "Sean",
    "Erin",
    "Jamie",
    "Kelly",
    "Samantha",
    "Nathan",
    "Sara",
    "Dustin",
    "Paul",
    "Angela",
    "Tyler",
    "Scott",
    "Katherine",
    "Andrea",
    "Gregory",
    "Erica",
    "Mary",
    "Travis",
    "Lisa",
    "Kenneth",
    "Bryan",
    "Lindsey",
    "Kristen",
    "Jose",
    "Alexander",
    "Jesse",
    "Katie",
    "Lindsay",
    "Shannon",
    "Vanessa",
    "Courtney",
    "Christine",
    "Alicia",
    "Cody",
    "Allison",
    "Bradley",
    "Samuel",
]
PLACES = ["store", "garden", "restaurant", "school", "hospital", "office", "house", "station"]
OBJECTS = ["ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"]
# [B] = subject, [A] = indirect object (the answer); BABA order. ABBA swaps the first two names.
TEMPLATES = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
)
ANTONYMS = (
    "hot cold,big small,up down,fast slow,happy sad,light dark,old young,rich poor,hard soft,open closed,"
    "early late,strong weak,good bad,high low,long short,full empty,wet dry,loud quiet,clean dirty,thick thin,"
    "cheap expensive,true false,love hate,win lose,push pull,buy sell,inside outside,before after,first last,"
    "front back,left right,north south,east west,day night,black white,top bottom,near far,safe dangerous,"
    "sweet sour,alive dead,begin end,friend enemy,give take,question answer,remember forget,accept reject,"
    "arrive leave,increase decrease,above below,always never,easy difficult,wide narrow,deep shallow,"
    "polite rude,smooth rough,asleep awake,public private,major minor,war peace,same different"
)
ANTONYM_PROMPT = "{word} ->"


def single_token_names(tokenizer) -> list[str]:
    return [n for n in NAMES if len(tokenizer(" " + n, add_special_tokens=False).input_ids) == 1]


def ioi_pairs(
    names: Sequence[str], templates: Sequence[str], n: int, rng: random.Random
) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        a, b = rng.sample(names, 2)
        text = templates[i % len(templates)]
        if i % 2:  # ABBA: the indirect object is named first
            text = text.replace("[B] and [A]", "[A] and [B]", 1)
        text = text.replace("[A]", a).replace("[B]", b)
        text = text.replace("[PLACE]", rng.choice(PLACES)).replace("[OBJECT]", rng.choice(OBJECTS))
        out.append({"prompt": text, "target": " " + a})
    return out


def build_ioi(tokenizer, seed: int = 0) -> dict:
    rng = random.Random(seed)
    names = single_token_names(tokenizer)
    rng.shuffle(names)
    half = len(names) // 2
    train_t, held_t = list(TEMPLATES[:10]), list(TEMPLATES[10:])
    return {
        "name": "ioi",
        "description": "Indirect-object completion (IOI templates, BABA and ABBA); held-out pairs use unseen "
        "names and unseen templates.",
        "license": "templates and names from the IOI dataset code (MIT); generated by headscope.steering.build_tasks",
        "train": ioi_pairs(names[:half], train_t, 96, rng),
        "heldout": ioi_pairs(names[half:], held_t, 48, rng),
    }


def build_antonyms(seed: int = 0) -> dict:
    pairs = [tuple(p.split()) for p in ANTONYMS.split(",")]
    random.Random(seed).shuffle(pairs)
    n_held = len(pairs) // 3

    def both_ways(ps: list) -> list[dict[str, str]]:
        return [
            {"prompt": ANTONYM_PROMPT.format(word=x), "target": " " + y}
            for a, b in ps
            for x, y in ((a, b), (b, a))
        ]

    return {
        "name": "antonyms",
        "description": "Zero-shot opposites: 'hot ->' should continue ' cold'. Held-out word pairs are unseen.",
        "license": "word list written for headscope (Apache-2.0)",
        "train": both_ways(pairs[n_held:]),
        "heldout": both_ways(pairs[:n_held]),
    }


def main() -> None:
    from headscope import assets
    from headscope.models import ModelHandle

    tokenizer = ModelHandle.load("smollm2-135m", device="cpu").tokenizer
    out = assets.path("steering")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("ioi", build_ioi(tokenizer)), ("antonyms", build_antonyms())):
        Path(out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(name, len(data["train"]), "train,", len(data["heldout"]), "held out")


if __name__ == "__main__":
    main()
