"""URL helpers: the form of a stream URL that is safe to log, publish and put in errors.

Redaction fails closed:

* the user info (``rtsp://user:password@host``) becomes ``***@host``;
* in the path, the query and the fragment, the value of every ``name=value`` parameter whose
  name (percent-decoded, any case) contains one of `SECRET_WORDS` becomes ``***``
  (``?password=``, ``?token=``, ``?access_token=``, ``?api_key=``, ``?X-Amz-Signature=``,
  ``?sig=``, ``?auth=``, ``;pwd=``, ``/user=admin&password=x`` ...); a name that *contains* a word
  is enough, so a harmless parameter is sometimes masked too (``keyframes=1``): by design;
* a URL that ``urlsplit`` rejects (``rtsp://[bad``) is not shown at all: it becomes
  ``rtsp://<unparsable url>`` (the scheme, when it can be read, then a placeholder).

A local file path (no ``scheme://``) is returned as it is. `scrub` applies the same to any text
(an FFmpeg error message) that may quote the URL or its secrets.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["redact_url", "scrub", "url_scheme", "SECRET_WORDS", "MASK", "UNPARSABLE"]

MASK = "***"
UNPARSABLE = "<unparsable url>"
# A parameter whose name contains one of these is a secret ("pass" covers password and passwd).
SECRET_WORDS = ("pass", "pwd", "token", "secret", "key", "auth", "sig", "cred", "session")

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_SEPARATORS = re.compile(r"([&;])")


def url_scheme(url: str) -> str:
    """The scheme of ``scheme://...`` in lower case, read without parsing the rest ('' if none)."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else ""


def _is_secret(name: str) -> bool:
    lowered = unquote_plus(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def _mask_params(text: str) -> str:
    """``name=value`` pairs separated by ``&`` or ``;``: secret names get their value masked."""
    if "=" not in text:
        return text
    out = []
    for part in _SEPARATORS.split(text):
        name, eq, _value = part.partition("=")
        out.append(f"{name}={MASK}" if eq and _is_secret(name) else part)
    return "".join(out)


def _mask_path(path: str) -> str:
    return "/".join(_mask_params(segment) for segment in path.split("/")) if "=" in path else path


def redact_url(url: str) -> str:
    """The URL with its user info and secret parameters replaced by ``***``, safe to log and
    publish; an unparsable URL becomes ``scheme://<unparsable url>``."""
    if "://" not in url:
        return url  # a local file
    try:
        parts = urlsplit(url)
    except ValueError:
        scheme = url_scheme(url)
        return f"{scheme}://{UNPARSABLE}" if scheme else UNPARSABLE
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    redacted = parts._replace(netloc=netloc, path=_mask_path(parts.path), query=_mask_params(parts.query),
                              fragment=_mask_params(parts.fragment))
    return urlunsplit(redacted) if redacted != parts else url


def _secrets(url: str) -> list[str]:
    """The secret values a URL holds (user info, secret parameters), longest first."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.add(userinfo)
        found.update(userinfo.split(":", 1))
    texts = [parts.query, parts.fragment, *parts.path.split("/")]
    for text in texts:
        for part in _SEPARATORS.split(text):
            name, eq, value = part.partition("=")
            if eq and value and _is_secret(name):
                found.update((value, unquote_plus(value)))
    # Very short values ("1") would mask unrelated text; the URL itself is replaced whole anyway.
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. an FFmpeg error quoting the URL) with the URL redacted and each of its
    secrets masked wherever it appears; an unparsable URL is replaced whole."""
    if "://" not in url:
        return text
    text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, MASK)
    return text
