"""What a URL is, and how one is shown: below the sources that open them (storage.opening picks
the source, storage.remote reads it)."""
from __future__ import annotations

import re

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(source) -> bool:
    """Whether `source` is a URL string for fsspec (file:// excepted: that is a local path)."""
    return isinstance(source, str) and bool(URL.match(source)) and not source.lower().startswith("file://")


def redacted(url: str) -> str:
    """The URL with the password of its user information (https://alice:PASSWORD@host/...) as ****,
    in each part of a chained URL (zip://a.sinr::https://...): a URL is shown in every message and
    by `sinr info`, and stored as a source's label by concat."""
    parts = []
    for part in url.split("::"):
        scheme, sep, rest = part.partition("://")
        host, slash, path = rest.partition("/")
        user, at, place = host.rpartition("@")
        if sep and at and ":" in user:
            part = f"{scheme}://{user.split(':', 1)[0]}:****@{place}{slash}{path}"
        parts.append(part)
    return "::".join(parts)
