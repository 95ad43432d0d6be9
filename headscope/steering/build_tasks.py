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

from headscope import ioi

# The IOI vocabulary lives in one place (headscope.ioi), shared with the circuit task.
NAMES = list(ioi.NAMES)
PLACES = list(ioi.PLACES)
OBJECTS = list(ioi.OBJECTS)
TEMPLATES = (
    ioi.BABA_PROMPTS
)  # [B] = subject, [A] = indirect object (the answer); ABBA swaps the first two names
ANTONYMS = (
    "hot cold,big small,up down,fast slow,happy sad,light dark,old young,rich poor,hard soft,open closed,"
    "early late,strong weak,good bad,high low,long short,full empty,wet dry,loud quiet,clean dirty,"
    "thick thin,cheap expensive,true false,love hate,win lose,push pull,buy sell,inside outside,before after,"
    "first last,front back,left right,north south,east west,day night,black white,top bottom,near far,"
    "safe dangerous,sweet sour,alive dead,begin end,friend enemy,give take,question answer,remember forget,"
    "accept reject,arrive leave,increase decrease,above below,always never,easy difficult,wide narrow,"
    "deep shallow,polite rude,smooth rough,asleep awake,public private,major minor,war peace,same different,"
    "add subtract,agree disagree,allow forbid,ancient modern,angry calm,attack defend,beautiful ugly,"
    "borrow lend,brave cowardly,bright dim,careful careless,catch throw,certain uncertain,child adult,"
    "clever stupid,come go,complex simple,cool warm,correct wrong,create destroy,cruel kind,dawn dusk,"
    "dull sharp,entrance exit,even odd,inhale exhale,expand shrink,export import,fail succeed,fancy plain,"
    "female male,few many,float sink,foolish wise,forward backward,fresh stale,frequent rare,gain loss,"
    "generous stingy,gentle harsh,giant tiny,guilty innocent,healthy sick,heaven hell,hello goodbye,"
    "here there,hero villain,hide reveal,hire fire,hollow solid,honest dishonest,horizontal vertical,"
    "humble proud,include exclude,inner outer,input output,joy sorrow,junior senior,laugh cry,"
    "lazy hardworking,leader follower,legal illegal,less more,like dislike,loose tight,majority minority,"
    "man woman,marry divorce,maximum minimum,mean nice,melt freeze,messy neat,minus plus,morning evening,"
    "mother father,natural artificial,negative positive,normal strange,obey defy,on off,optimist pessimist,"
    "order chaos,over under,past future,patient impatient,permanent temporary,plural singular,poverty wealth,"
    "present absent,receive send,rise fall,rural urban,sane insane,save spend,serious funny,sit stand,"
    "sober drunk,start finish,straight crooked,strict lenient,student teacher,summer winter,"
    "superior inferior,tame wild,timid bold,together apart,transparent opaque,unite divide,"
    "upstairs downstairs,vacant occupied,visible invisible,whisper shout,worse better,yes no,admit deny,"
    "advance retreat,ally foe,asset liability,boring exciting,captive free,ceiling floor,cheerful gloomy,"
    "comedy tragedy,compliment insult,condemn praise,debit credit,dense sparse,descend ascend,despair hope,"
    "domestic foreign,eager reluctant,employer employee,encourage discourage,equal unequal,expert novice,"
    "external internal,fact fiction,famous obscure,feast famine,fertile barren,flexible rigid,lucky unlucky,"
    "friendly hostile,frown smile,gather scatter,guest host,harmony discord,hinder help,humid arid,"
    "knowledge ignorance,landlord tenant,lengthen shorten,lock unlock,loyal treacherous,mobile stationary,"
    "modest arrogant,indoor outdoor,partial complete,abundant scarce,predator prey,ripe unripe,"
    "sacred profane,seldom often,spacious cramped,spring autumn,stop continue,sunrise sunset,teach learn,"
    "thrifty wasteful,vague precise,wax wane,yesterday tomorrow,victory defeat"
)
ANTONYM_PROMPT = "{word} ->"
HELDOUT_ITEMS = 200  # ≥ 200 held-out items per task keep a binomial CI near ±0.07 (papers.md §10.5)
ANTONYM_HELDOUT_PAIRS = HELDOUT_ITEMS // 2  # each word pair is asked both ways
INSTRUCTIONS = {  # the prompting baseline: what a user would write to ask for the behaviour
    "ioi": "Finish each sentence with the name of the person who receives the item.",
    "antonyms": "Give the opposite of each word.",
}


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
        "instruction": INSTRUCTIONS["ioi"],
        "license": "templates and names from the IOI dataset code (MIT); generated by headscope.steering.build_tasks",
        "train": ioi_pairs(names[:half], train_t, 96, rng),
        "heldout": ioi_pairs(names[half:], held_t, HELDOUT_ITEMS, rng),
    }


def build_antonyms(seed: int = 0) -> dict:
    pairs = [tuple(p.split()) for p in ANTONYMS.split(",")]
    random.Random(seed).shuffle(pairs)
    n_held = ANTONYM_HELDOUT_PAIRS

    def both_ways(ps: list) -> list[dict[str, str]]:
        return [
            {"prompt": ANTONYM_PROMPT.format(word=x), "target": " " + y}
            for a, b in ps
            for x, y in ((a, b), (b, a))
        ]

    return {
        "name": "antonyms",
        "description": "Zero-shot opposites: 'hot ->' should continue ' cold'. Held-out word pairs are unseen.",
        "instruction": INSTRUCTIONS["antonyms"],
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
