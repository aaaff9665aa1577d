"""Brands and matching what was read or detected to them.

Recognised text is normalised (case, accents, punctuation, spacing) and fuzzy-matched against each
brand's name and aliases with rapidfuzz: whole text, each run of as many words as the alias has
(so "PULSE ENERGY DRINK" matches "PULSE ENERGY"), and with spaces removed (OCR often drops or adds
one), after folding characters OCR confuses (0/O, 1/I, 5/S, 8/B). A fragment of a name (cut by the
frame edge or partly hidden) matches when at least half of the name is legible and aligns inside
it ("STREL", "NORDIC"), the same rule as ground truth's "at least half visible". Logo classes map to
brands by name.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
from rapidfuzz import fuzz

__all__ = ["Brand", "BrandMatcher", "normalise_text"]


@dataclass(frozen=True)
class Brand:
    """A sponsor: its name, other spellings it appears under, and the logo classes that show it."""

    name: str
    aliases: tuple[str, ...] = field(default=())
    logo_classes: tuple[str, ...] = field(default=())


def normalise_text(text: str) -> str:
    """Upper case, accents removed, anything but letters and digits turned to single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join("".join(c if c.isalnum() else " " for c in plain).split())


# Characters OCR confuses with each other, folded on both sides before comparing.
_CONFUSABLE = str.maketrans({"0": "O", "1": "I", "5": "S", "8": "B"})


class BrandMatcher:
    """Maps recognised texts and logo classes to brand indices.

    Args:
        brands: the brands, in the order their indices take.
        min_score: rapidfuzz ratio (0-100) a text needs to count as a brand.
        min_length: shorter normalised texts are never matched (one or two letters match anything).
    """

    def __init__(self, brands: Sequence[Brand], min_score: float = 85.0, min_length: int = 3,
                 fragment_score: float = 90.0):
        if not brands:
            raise ValueError("at least one brand is needed")
        self.brands = list(brands)
        self.names = [b.name for b in self.brands]
        self.min_score = min_score
        self.min_length = min_length
        self.fragment_score = fragment_score
        self._aliases = [(normalise_text(a).translate(_CONFUSABLE), i)
                         for i, b in enumerate(self.brands) for a in (b.name, *b.aliases)]
        self._match_one = lru_cache(maxsize=4096)(self._best)  # boards repeat their text every frame

    def match(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(brand index or -1, score in [0, 1]) per text."""
        out = [self._match_one(normalise_text(t).translate(_CONFUSABLE)) for t in texts]
        ids = np.fromiter((i for i, _ in out), np.int32, len(out))
        scores = np.fromiter((s for _, s in out), np.float32, len(out))
        return ids, scores

    def _best(self, text: str) -> tuple[int, float]:
        if len(text.replace(" ", "")) < self.min_length:
            return -1, 0.0
        words = text.split()
        compact = text.replace(" ", "")
        best_id, best = -1, 0.0
        for alias, brand in self._aliases:
            n = len(alias.split())
            windows = [" ".join(words[k:k + n]) for k in range(max(1, len(words) - n + 1))]
            score = max(fuzz.ratio(alias, w) for w in windows)
            whole = alias.replace(" ", "")
            score = max(score, fuzz.ratio(whole, compact))
            # A fragment: the name cut by the frame edge or hidden in part by a player. It counts
            # when at least half of the name is legible and it aligns inside the name.
            if self.min_length <= len(compact) < len(whole) and 2 * len(compact) >= len(whole):
                fragment = fuzz.partial_ratio(compact, whole)
                if fragment >= self.fragment_score:
                    score = max(score, fragment * 0.99)  # a whole-name read of the same quality ranks first
            if score > best:
                best_id, best = brand, score
        return (best_id, best / 100) if best >= self.min_score else (-1, best / 100)

    def match_split(self, left: str, right: str) -> tuple[int, float]:
        """A name read as two pieces either side of something in front of it ("KES" | "REL").

        Both pieces must align inside the same name, in order, and together make at least half
        of it. Returns (brand index or -1, score).
        """
        a = normalise_text(left).translate(_CONFUSABLE).replace(" ", "")
        b = normalise_text(right).translate(_CONFUSABLE).replace(" ", "")
        if min(len(a), len(b)) < 2 or len(a) + len(b) < self.min_length:
            return -1, 0.0
        best_id, best = -1, 0.0
        for alias, brand in self._aliases:
            whole = alias.replace(" ", "")
            if 2 * (len(a) + len(b)) < len(whole) or len(a) + len(b) >= len(whole):
                continue
            la = fuzz.partial_ratio_alignment(a, whole)
            lb = fuzz.partial_ratio_alignment(b, whole)
            if la is None or lb is None or la.dest_end > lb.dest_start:
                continue
            score = min(la.score, lb.score) * 0.98
            if score >= self.fragment_score and score > best:
                best_id, best = brand, score
        return best_id, best / 100

    def logo_map(self, class_names: Sequence[str]) -> np.ndarray:
        """Brand index (or -1) for each detector class, by brand name or a brand's logo_classes."""
        lookup: dict[str, int] = {}
        for i, b in enumerate(self.brands):
            for key in (b.name, *b.logo_classes):
                lookup.setdefault(normalise_text(key), i)
        return np.asarray([lookup.get(normalise_text(c), -1) for c in class_names], np.int32)
