"""The one place that knows what to mask.

dbt masks `DBT_ENV_SECRET_*` values in its own output, but our log files, console,
reports and history see text dbt never touched (git errors, our own messages,
tracebacks), so every output path goes through a `SecretMasker`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "DBT_ENV_SECRET_"
MASK = "*****"
# Credentials embedded in a URL (https://user:token@host/…): git prints these in errors.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]*(:[^/@\s]*)?@")
# Values this short would mask ordinary words and digits all over the log.
_MIN_SECRET_LENGTH = 4


def is_secret_name(name: str) -> bool:
    return name.startswith(SECRET_PREFIX)


class SecretMasker:
    """Replaces every known secret value (and URL credentials) with `*****`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        # Longest first so a secret containing another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    @classmethod
    def from_env(cls, *envs: Mapping[str, str]) -> SecretMasker:
        """A masker for every `DBT_ENV_SECRET_*` value found in the given environments."""
        return cls(value for env in envs for name, value in env.items() if is_secret_name(name))

    def mask(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)

    def __call__(self, text: str) -> str:
        return self.mask(text)
