import open_clip
import pytest
import torch
import torch.nn.functional as F

from dcpclip.model.config import TextConfig
from dcpclip.model.text_bank import TextBankCache, class_prompts, encode_vocabulary

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


def test_empty_vocabulary_is_refused(tiny_backbone):
    with pytest.raises(ValueError, match="empty"):
        encode_vocabulary(tiny_backbone, open_clip.get_tokenizer("dcpclip-tiny"), [], TextConfig())
