"""URL helpers (kept here for imports of 0.2): see `vidinfer.redact`."""

from vidinfer.redact import MASK, SECRET_WORDS, UNPARSABLE, redact_url, scrub, url_scheme

__all__ = ["redact_url", "scrub", "url_scheme", "SECRET_WORDS", "MASK", "UNPARSABLE"]
