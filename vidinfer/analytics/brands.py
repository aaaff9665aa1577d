"""Brands and matching what was read or detected to them.

Recognised text is normalised (case, accents, punctuation, spacing) and compared with each brand's
name and aliases after folding characters OCR confuses (0/O, 1/I, 5/S, 8/B, 2/Z, 6/G). A read is
one of two strengths (docs/brand-impact.md, "Which text counts as a brand"):

* **full**: the read supports the whole name. Some run of the line's words, with or without the
  spaces between them, spells the name exactly; names of 10 letters or more may differ by one edit
  per 5 letters beyond 5, never in their first three letters or their last. A full read may start
  a brand's track.
* **partial**: the read is close to the name (rapidfuzz ratio at least ``min_score``) or is a
  fragment of it (at least half of the name, aligned inside it: "STREL", "NORDIC"). A partial read
  may only *continue* a track that a full read (or a logo) of the same mark started, never start
  one, so a look-alike word ("KESTRAL") or the first word of a two-word name ("NORDIC") shown on its
  own is never counted. Two pieces either side of an occluder that are the name's own two ends
  (its first and last letters legible, the gap between them as wide as the hidden letters) are a
  full read: the name, its middle hidden.

Logo classes map to brands by name or by a brand's ``logo_classes``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

__all__ = ["Brand", "BrandMatcher", "TextMatches", "normalise_text", "allowed_edits"]


@dataclass(frozen=True)
class Brand:
    """A sponsor: its name, other spellings it appears under, and the logo classes that show it."""

    name: str
    aliases: tuple[str, ...] = field(default=())
    logo_classes: tuple[str, ...] = field(default=())


class TextMatches(NamedTuple):
    """Per text: the brand index (-1: none), the match score in [0, 1], and whether it is full."""

    brand: np.ndarray  # int32
    score: np.ndarray  # float32
    full: np.ndarray  # bool: the read supports the whole name (may start a track)


def normalise_text(text: str) -> str:
    """Upper case, accents removed, anything but letters and digits turned to single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return " ".join("".join(c if c.isalnum() else " " for c in plain).split())


# Characters OCR confuses with each other, folded on both sides before comparing.
_CONFUSABLE = str.maketrans({"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G"})
_KEEP_PREFIX = 3  # a full read never differs from the name in its first letters (PESTREL is not KESTREL)


def allowed_edits(name_length: int) -> int:
    """Edits a full read may differ from a name of ``name_length`` letters by: none up to 9 letters,
    then one per 5 letters (10-14: 1, 15-19: 2). Short names are where look-alike words live."""
    return max(0, (name_length - 5) // 5)


def _full_score(read: str, name: str) -> float:
    """In (0, 1] when ``read`` (letters only) supports the whole ``name``; 0 otherwise."""
    if read == name:
        return 1.0
    k = allowed_edits(len(name))
    if not k or read[:_KEEP_PREFIX] != name[:_KEEP_PREFIX] or read[-1:] != name[-1:]:
        return 0.0
    d = Levenshtein.distance(read, name, score_cutoff=k)
    return 1.0 - d / len(name) if d <= k else 0.0


class BrandMatcher:
    """Maps recognised texts and logo classes to brand indices.

    Args:
        brands: the brands, in the order their indices take.
        min_score: rapidfuzz ratio (0-100) a partial read needs to continue a brand's track.
        min_length: shorter normalised texts are never matched (one or two letters match anything).
        fragment_score: rapidfuzz partial ratio a fragment needs inside the name.
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

    def match(self, texts: Sequence[str]) -> TextMatches:
        """Brand index or -1, score in [0, 1], and whether the read is full, per text."""
        out = [self._match_one(normalise_text(t).translate(_CONFUSABLE)) for t in texts]
        return TextMatches(np.fromiter((b for b, _, _ in out), np.int32, len(out)),
                           np.fromiter((s for _, s, _ in out), np.float32, len(out)),
                           np.fromiter((f for _, _, f in out), bool, len(out)))

    def _best(self, text: str) -> tuple[int, float, bool]:
        compact = text.replace(" ", "")
        if len(compact) < self.min_length:
            return -1, 0.0, False
        words = text.split()
        full_id, full = -1, 0.0
        best_id, best = -1, 0.0
        for alias, brand in self._aliases:
            n = len(alias.split())
            whole = alias.replace(" ", "")
            # Full: some run of the line's words spells the whole name, with or without spaces
            # (OCR drops and adds them); so "PULSE ENERGY DRINK" has PULSE ENERGY, "THE ORBIS CUP" ORBIS.
            for k in range(1, n + 2):
                for start in range(len(words) - k + 1):
                    s = _full_score("".join(words[start:start + k]), whole)
                    if s > full:
                        full_id, full = brand, s
            # Partial: close to the name, or a fragment of it (cut by the frame edge or hidden in
            # part by a player) of at least half its letters that aligns inside it.
            windows = [" ".join(words[k:k + n]) for k in range(max(1, len(words) - n + 1))]
            score = max(max(fuzz.ratio(alias, w) for w in windows), fuzz.ratio(whole, compact))
            if self.min_length <= len(compact) < len(whole) and 2 * len(compact) >= len(whole):
                fragment = fuzz.partial_ratio(compact, whole)
                if fragment >= self.fragment_score:
                    score = max(score, fragment * 0.99)
            if score > best:
                best_id, best = brand, score
        if full_id >= 0:
            return full_id, full, True
        return (best_id, best / 100, False) if best >= self.min_score else (-1, best / 100, False)

    def match_split(self, left: str, right: str) -> tuple[int, float, int]:
        """A name read as two pieces either side of something in front of it ("KES" | "REL").

        Both pieces must align inside the same name, in order, and together make at least half
        of it. Returns (brand index or -1, score, hidden): ``hidden`` is the number of letters
        between the pieces when they are the name's two ends (its first and last letters both
        legible: the name, with its middle hidden), else -1 (a fragment: a partial read).
        """
        a = normalise_text(left).translate(_CONFUSABLE).replace(" ", "")
        b = normalise_text(right).translate(_CONFUSABLE).replace(" ", "")
        if min(len(a), len(b)) < 2 or len(a) + len(b) < self.min_length:
            return -1, 0.0, -1
        best_id, best, hidden = -1, 0.0, -1
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
                ends = a == whole[:len(a)] and b == whole[len(whole) - len(b):]
                best_id, best, hidden = brand, score, (len(whole) - len(a) - len(b)) if ends else -1
        return best_id, best / 100, hidden

    def logo_map(self, class_names: Sequence[str]) -> np.ndarray:
        """Brand index (or -1) for each detector class, by brand name or a brand's logo_classes."""
        lookup: dict[str, int] = {}
        for i, b in enumerate(self.brands):
            for key in (b.name, *b.logo_classes):
                lookup.setdefault(normalise_text(key), i)
        return np.asarray([lookup.get(normalise_text(c), -1) for c in class_names], np.int32)
