"""Issue 24's training data and fine-tune on a tiny model: the "chat" windows (the train split's articles as chat
conversations) against a rendering built here by plain string formatting, `continue_from` against sae-lens's own
folding and saving, and a fine-tuned card (both stages, one curve) whose first fine-tune point reproduces the base.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from headscope.data import excerpt_articles
from headscope.errors import InputError
from headscope.features import saes
from headscope.features.collect import CHAT_ASKS, cache_folder, chat_order, collect, split_windows
from headscope.features.sites import site
from headscope.features.train import (
    TrainConfig,
    _training_sae,
    continue_from,
    inference_copy,
    train,
)
from headscope.localist.corpus import split_articles, split_of
from headscope.models import ModelHandle

pytestmark = pytest.mark.usefixtures("one_thread")
TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"


@pytest.fixture
def templated(tiny_llama: ModelHandle, monkeypatch: pytest.MonkeyPatch) -> ModelHandle:
    """The tiny model with a chat template (its byte tokenizer has none), for this test only."""
    monkeypatch.setattr(tiny_llama.tokenizer, "chat_template", TEMPLATE)
    return tiny_llama


def test_chat_windows_are_conversations_about_train_articles(templated: ModelHandle) -> None:
    ctx = 900  # longer than most excerpt articles: a window holds the next articles' turns too
    arts = chat_order(split_articles("train", excerpt_articles()))
    assert {split_of(a.title) for a in arts} == {"train"}
    expected = []
    for i in range(len(arts)):
        text = "".join(
            f"<|user|>{CHAT_ASKS[j % len(CHAT_ASKS)].format(a.title)}\n<|assistant|>{a.text}\n"
            for j, a in enumerate(arts)
            if j >= i
        )
        ids = templated.tokenizer(text).input_ids
        if len(ids) >= ctx:
            expected.append(ids[:ctx])
    windows = split_windows(templated, "train", ctx, corpus="excerpt", render="chat")
    assert 0 < len(expected) < len(arts) and windows.tolist() == expected
    assert split_windows(templated, "train", ctx, corpus="excerpt", render="chat", max_windows=3).shape == (
        3,
        ctx,
    )


def test_chat_rows_live_in_their_own_store(module_cache: Path, tiny_llama: ModelHandle) -> None:
    st = site("resid_post", 1)
    chat = collect(tiny_llama, [st], "train", ctx=64, max_tokens=600, corpus="excerpt", render="chat")
    plain = collect(tiny_llama, [st], "train", ctx=64, max_tokens=600, corpus="excerpt")
    assert chat.folder == cache_folder(tiny_llama, "train", 64, "excerpt", "chat") != plain.folder
    assert chat.meta["render"] == "chat" and chat.rows(st.hook) >= 600
    first = torch.from_numpy(chat.tokens[:1].copy()).long()
    _, acts = tiny_llama.run_with_cache(first, [st.hook])
    stored = torch.from_numpy(chat.array(st.hook)[:63].astype("float32"))
    assert torch.allclose(stored, acts[st.hook][0, 1:].float(), atol=2e-2, rtol=2e-3)  # fp16 store
    with pytest.raises(InputError, match="render must be one of"):
        collect(tiny_llama, [st], "train", ctx=64, render="html")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def base(module_cache: Path, tmp_path_factory: pytest.TempPathFactory, tiny_llama: ModelHandle) -> Path:
    folder = tmp_path_factory.mktemp("tune") / "b"
    cfg = TrainConfig("resid_post", 1, 48, "batchtopk", k=6, tokens=4096, batch_size=256, lr=2e-3, ctx=64,
                      eval_tokens=1024, corpus="excerpt", dtype="float32")  # fmt: skip
    train(tiny_llama, cfg, folder, name="b", curve=(2048,))
    return folder


def test_continue_from_saves_back_to_the_same_sae(
    tmp_path: Path, tiny_llama: ModelHandle, base: Path
) -> None:
    src = saes.load_folder(base)
    cfg = TrainConfig("resid_post", 1, 48, "batchtopk", k=6, ctx=64, corpus="excerpt")
    sae = _training_sae(cfg, 64, src.cfg.metadata.hook_name, "tiny-llama")
    scale = 3.7
    continue_from(sae, src, scale)
    # the training SAE's pre-activations on scaled inputs are `scale` × the saved SAE's on raw inputs
    x = torch.randn(32, 64)
    _, pre = sae.encode_with_hidden_pre(scale * x)
    pre_src = src.process_sae_in(x) @ src.W_enc + src.b_enc
    assert torch.allclose(pre, scale * pre_src, atol=1e-4, rtol=1e-4)
    back = inference_copy(sae, scale, tmp_path / "back")  # sae-lens's folding and saving
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert torch.allclose(getattr(back, name), getattr(src, name), atol=1e-5, rtol=1e-4), name
    topk = _training_sae(TrainConfig("resid_post", 1, 48, "topk", k=6), 64, "h", "tiny-llama")
    with pytest.raises(InputError, match="continues a BatchTopK SAE"):
        continue_from(topk, src, scale)


def test_fine_tune_card_has_both_stages_and_one_curve(
    tmp_path: Path, tiny_llama: ModelHandle, base: Path
) -> None:
    before = saes.read_card(base)
    folder = tmp_path / "t"
    folder.mkdir()
    for f in base.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = TrainConfig("resid_post", 1, 48, "batchtopk", k=6, tokens=3072, batch_size=256, lr=1e-3, ctx=64,
                      eval_tokens=1024, corpus="excerpt", dtype="float32", render="chat", rows=1024)  # fmt: skip
    card = train(tiny_llama, cfg, folder, name="t", curve=(0, 1024), init=saes.load(tiny_llama, folder)).card
    first = before["tokens_seen"]
    assert [s["data"]["render"] for s in card["stages"]] == ["plain", "chat"]
    assert [s["tokens_seen"] for s in card["stages"]] == [first, 3072]
    assert card["tokens_seen"] == first + 3072 and card["config"]["rows"] == 1024
    assert card["training_seconds"] == pytest.approx(
        before["training_seconds"] + card["stages"][1]["training_seconds"], abs=0.11
    )
    tokens = [p["tokens"] for p in card["curve"]]
    assert tokens == [2048, first, first, first + 1024, first + 3072]
    # the fine-tune's point at 0 is the base SAE through continue_from and back: the base's last point again
    for name, ev in before["curve"][-1]["explained_variance"].items():
        assert card["curve"][2]["explained_variance"][name] == pytest.approx(ev, abs=1e-4)
    assert set(card["heldout"]) == {"wiki-test", "chat"}
    assert saes.read_card(folder)["stages"] == card["stages"]


def test_a_fine_tune_must_read_the_same_hook(tiny_llama: ModelHandle, base: Path, tmp_path: Path) -> None:
    cfg = TrainConfig("resid_post", 0, 48, "batchtopk", k=6, tokens=512, batch_size=256, ctx=64,
                      corpus="excerpt", render="chat")  # fmt: skip
    with pytest.raises(InputError, match=r"reads blocks\.1\.hook_resid_post"):
        train(tiny_llama, cfg, tmp_path / "x", init=saes.load(tiny_llama, base))
    with pytest.raises(InputError, match="render must be one of"):
        TrainConfig("resid_post", 0, 48, render="markdown")
