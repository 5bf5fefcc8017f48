import re

import open_clip
import pytest
import torch
import torch.nn.functional as F

from dcpclip.errors import CorruptCacheWarning
from dcpclip.model.config import TextConfig
from dcpclip.model.text_bank import TextBankCache, bank_digest, class_prompts, encode_vocabulary

NAMES = ["wall, brick wall", "sky", "person", "traffic light", "potted plant"] * 7


def test_prompts_follow_catseg_and_sed_rules():
    assert class_prompts("wall, brick wall", TextConfig()) == ["A photo of a wall in the scene"]
    ensemble = class_prompts("wall, brick wall", TextConfig(template_set="imagenet80", synonyms="all"))
    assert len(ensemble) == 160 and "a photo of a brick wall." in ensemble


@torch.no_grad()
def test_cut_context_equals_full_context(tiny_backbone):
    tokenizer = open_clip.get_tokenizer("dcpclip-tiny")
    prompts = [p for n in NAMES for p in class_prompts(n, TextConfig())]
    full = F.normalize(tiny_backbone.clip.encode_text(tokenizer(prompts)), dim=-1)  # 77 tokens
    bank = encode_vocabulary(tiny_backbone, tokenizer, NAMES, TextConfig(batch_size=4))
    assert bank.shape == (len(NAMES), tiny_backbone.embed_dim)
    torch.testing.assert_close(bank, full, rtol=0, atol=1e-5)


@torch.no_grad()
def test_ensemble_bank_is_the_normalised_mean_over_prompts(tiny_backbone):
    tokenizer = open_clip.get_tokenizer("dcpclip-tiny")
    cfg = TextConfig(template_set="imagenet80", synonyms="all", batch_size=64)
    bank = encode_vocabulary(tiny_backbone, tokenizer, ["wall, brick wall"], cfg)
    prompts = class_prompts("wall, brick wall", cfg)
    each = F.normalize(tiny_backbone.clip.encode_text(tokenizer(prompts)), dim=-1)
    torch.testing.assert_close(bank[0], F.normalize(each.mean(0), dim=-1), rtol=0, atol=1e-5)


def test_cache_returns_identical_tensors_and_hits_the_second_time(tmp_path, tiny_backbone):
    cache = TextBankCache(tmp_path, "dcpclip-tiny")
    first = cache.get(tiny_backbone, NAMES, TextConfig())
    second = TextBankCache(tmp_path, "dcpclip-tiny").get(tiny_backbone, NAMES, TextConfig())
    again = cache.get(tiny_backbone, NAMES, TextConfig())
    assert torch.equal(first, second) and torch.equal(first, again)
    assert (cache.misses, cache.hits) == (1, 1)
    assert len(list(tmp_path.glob("*.pt"))) == 1


def test_a_bank_computed_into_two_caches_is_the_same_file(tmp_path, tiny_backbone):
    for name in ("a", "b"):
        TextBankCache(tmp_path / name, "dcpclip-tiny").get(tiny_backbone, NAMES, TextConfig())
    (first,), (second,) = (sorted((tmp_path / name).glob("*.pt")) for name in ("a", "b"))
    assert first.name == second.name and first.read_bytes() == second.read_bytes()


def test_cache_key_changes_with_weights_names_and_templates(tmp_path, tiny_backbone):
    cache = TextBankCache(tmp_path, "dcpclip-tiny")
    cache.get(tiny_backbone, NAMES, TextConfig())
    cache.get(tiny_backbone, NAMES[:3], TextConfig())
    cache.get(tiny_backbone, NAMES, TextConfig(template_set="imagenet80"))
    with torch.no_grad():
        tiny_backbone.clip.text_projection.add_(1.0)
    try:
        cache.get(tiny_backbone, NAMES, TextConfig())
    finally:
        with torch.no_grad():
            tiny_backbone.clip.text_projection.sub_(1.0)
    assert (cache.misses, cache.hits) == (4, 0)


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:64]), "unreadable (RuntimeError"),
    (lambda path: torch.save(torch.load(path)["bank"], path), "not a verified cache entry (an older layout"),
    (lambda path: torch.save({**torch.load(path), "sha256": "0" * 64}, path),
     "its contents do not match their stored sha256"),
    (lambda path: torch.save({"bank": torch.zeros(2, 64), "sha256": bank_digest(torch.zeros(2, 64))}, path),
     "shape [2, 64], expected [35, D]"),
])
def test_a_damaged_cache_entry_is_named_removed_and_recomputed(tmp_path, tiny_backbone, damage, problem):
    bank = TextBankCache(tmp_path, "dcpclip-tiny").get(tiny_backbone, NAMES, TextConfig())
    (path,) = tmp_path.glob("*.pt")
    damage(path)
    cache = TextBankCache(tmp_path, "dcpclip-tiny")
    with pytest.warns(CorruptCacheWarning, match=re.escape(f"text bank cache {path}: {problem}")):
        healed = cache.get(tiny_backbone, NAMES, TextConfig())
    assert cache.misses == 1 and torch.equal(healed, bank)
    assert torch.equal(TextBankCache(tmp_path, "dcpclip-tiny").get(tiny_backbone, NAMES, TextConfig()), bank)


def test_empty_vocabulary_is_refused(tiny_backbone):
    with pytest.raises(ValueError, match="empty"):
        encode_vocabulary(tiny_backbone, open_clip.get_tokenizer("dcpclip-tiny"), [], TextConfig())
