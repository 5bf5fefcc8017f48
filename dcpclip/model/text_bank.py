"""Text banks: one L2-normalised CLIP embedding per class name of a vocabulary, cached on disk.

Prompting follows CAT-Seg by default ("A photo of a {} in the scene", first synonym of a name that lists
synonyms with ", "); SED's option averages the 80 ImageNet templates of CLIP over every synonym. A class
embedding is the normalised mean of its normalised prompt embeddings.

Cache entries are content-addressed (the file name is the digest of what the bank is a function of) and
verified on read (the stored sha256 of the tensor's bytes, its shape): a corrupt or truncated entry is
reported by name (`CorruptCacheWarning`), removed and recomputed.

Speed: CLIP's text tower is causal and pools at the end-of-text token, so each batch is encoded with its
context cut to its longest prompt; prompts are sorted by length first so batches are tight.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

from dcpclip.atomic import atomic_file
from dcpclip.errors import CorruptCacheWarning
from dcpclip.model.backbone import ClipBackbone
from dcpclip.model.config import TextConfig

CATSEG_TEMPLATES = ("A photo of a {} in the scene",)
IMAGENET80_TEMPLATES = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
TEMPLATE_SETS = {"catseg": CATSEG_TEMPLATES, "imagenet80": IMAGENET80_TEMPLATES}


def class_prompts(name: str, cfg: TextConfig) -> list[str]:
    """All prompts whose embeddings are averaged into one class embedding."""
    synonyms = [s.strip() for s in name.split(", ")] if ", " in name else [name.strip()]
    if cfg.synonyms == "first":
        synonyms = synonyms[:1]
    return [t.format(s) for s in synonyms for t in TEMPLATE_SETS[cfg.template_set]]


@dataclasses.dataclass(frozen=True)
class VocabularyTokens:
    """A vocabulary's prompts, tokenised once: a text tower that trains encodes them again every step,
    and tokenising is a tenth of a tiny CLIP's step (171 names: 18 ms)."""

    tokens: torch.Tensor  # [P, context] token ids, one row per prompt
    owner: torch.Tensor  # [P] the class of each prompt
    lengths: torch.Tensor  # [P] tokens up to and including end-of-text
    num_classes: int


def tokenize_vocabulary(tokenizer, names: list[str], cfg: TextConfig) -> VocabularyTokens:
    if not names:
        raise ValueError("vocabulary is empty")
    prompts, owner = [], []
    for index, name in enumerate(names):
        for prompt in class_prompts(name, cfg):
            prompts.append(prompt)
            owner.append(index)
    tokens = tokenizer(prompts)  # [P, context]
    lengths = tokens.argmax(dim=-1) + 1  # end-of-text token has the largest id
    return VocabularyTokens(tokens, torch.tensor(owner), lengths, len(names))


def encode_tokens(backbone: ClipBackbone, vocabulary: VocabularyTokens, batch_size: int) -> torch.Tensor:
    """-> [C, D] L2-normalised class embeddings. Differentiable when grad is enabled."""
    tokens, lengths = vocabulary.tokens, vocabulary.lengths
    order = torch.argsort(lengths)
    device = next(backbone.parameters()).device
    embeddings = [None] * len(tokens)
    for start in range(0, len(tokens), batch_size):
        idx = order[start : start + batch_size]
        cut = int(lengths[idx].max())
        batch = backbone.encode_text(tokens[idx, :cut].to(device))  # [b, D]
        for i, emb in zip(idx.tolist(), F.normalize(batch, dim=-1), strict=True):
            embeddings[i] = emb
    prompt_embeddings = torch.stack(embeddings)  # [P, D]
    sums = torch.zeros(vocabulary.num_classes, prompt_embeddings.shape[1], device=device,
                       dtype=prompt_embeddings.dtype)
    sums = sums.index_add(0, vocabulary.owner.to(device), prompt_embeddings)
    return F.normalize(sums, dim=-1)  # [C, D]


def encode_vocabulary(
    backbone: ClipBackbone, tokenizer, names: list[str], cfg: TextConfig
) -> torch.Tensor:
    """-> [C, D] L2-normalised class embeddings of `names`. Differentiable when grad is enabled."""
    return encode_tokens(backbone, tokenize_vocabulary(tokenizer, names, cfg), cfg.batch_size)


def text_weights_digest(backbone: ClipBackbone) -> str:
    """Identity of the text tower's current weights (changes when fine-tuning touches them)."""
    digest = hashlib.sha256()
    for param in backbone.text_parameters():
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def bank_digest(bank: torch.Tensor) -> str:
    return hashlib.sha256(bank.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()  # any dtype


def read_cached_bank(path: Path, num_classes: int) -> torch.Tensor | None:
    """The [C, D] bank stored at `path`, or None (after a warning naming it, and removing it) when the entry
    cannot be read or does not match its stored digest or the vocabulary size."""
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        bank = entry.get("bank") if isinstance(entry, dict) else None
        if not isinstance(bank, torch.Tensor) or not isinstance(entry.get("sha256"), str):
            problem = "not a verified cache entry (an older layout, or another file)"
        elif bank.ndim != 2 or bank.shape[0] != num_classes:
            problem = f"shape {list(bank.shape)}, expected [{num_classes}, D]"
        elif bank_digest(bank) != entry["sha256"]:
            problem = "its contents do not match their stored sha256"
        else:
            return bank
    except Exception as err:  # any unreadable entry: torch's zip reader, a cut pickle, another layout
        problem = f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:120]})"
    warnings.warn(CorruptCacheWarning(f"text bank cache {path}: {problem}; removed, recomputing"), stacklevel=2)
    path.unlink(missing_ok=True)
    return None


class TextBankCache:
    """Disk cache of text banks keyed by (architecture, text weights, templates, synonym rule, names)."""

    def __init__(self, root: str | os.PathLike, arch: str):
        self.root = Path(root)
        self.arch = arch
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.hits = 0
        self.misses = 0

    def key(self, weights_digest: str, names: list[str], cfg: TextConfig) -> str:
        identity = {
            "arch": self.arch,
            "weights": weights_digest,
            "templates": TEMPLATE_SETS[cfg.template_set],
            "synonyms": cfg.synonyms,
            "names": names,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]

    @torch.no_grad()
    def get(self, backbone: ClipBackbone, names: list[str], cfg: TextConfig) -> torch.Tensor:
        """-> [C, D] text bank, from disk when this exact (weights, prompts, names) was seen before."""
        path = self.root / f"{self.key(text_weights_digest(backbone), names, cfg)}.pt"
        bank = read_cached_bank(path, len(names)) if path.exists() else None
        if bank is not None:
            self.hits += 1
            return bank
        self.misses += 1
        was_training = backbone.training
        backbone.eval()
        bank = encode_vocabulary(backbone, self.tokenizer, names, cfg).cpu()
        backbone.train(was_training)
        with atomic_file(path) as out:
            torch.save({"bank": bank, "sha256": bank_digest(bank)}, out)
        return bank
