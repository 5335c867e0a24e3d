"""The one place that knows what to mask.

dbt masks `DBT_ENV_SECRET_*` values in its own output, but our log files, console,
reports and history see text dbt never touched (git errors, our own messages,
tracebacks), so every output path goes through a `SecretMasker`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_PREFIX = "DBT_ENV_SECRET_"
MASK = "*****"
# What a credential in a URL is — the one definition: jobs.yaml's git.url check refuses it,
# the masker hides it, and docker/run_commands.sh's display_url strips it (a test runs the
# script's function on the same URLs and compares). A URL's userinfo (`scheme://USERINFO@`)
# is a credential when the scheme is http(s) — a token alone, `https://TOKEN@host`, is how
# GitHub and GitLab take one — or when it holds a password (`user:pw@`), for any scheme;
# `ssh://git@host/…` names a user, not a secret.
# The lookbehind starts a scheme only where a word starts: without it a long run of letters
# is tried from every position (quadratic: 10,000 letters took 0.2 s a line).
URL_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def is_url_credential(scheme: str, userinfo: str) -> bool:
    """Whether the userinfo of a `scheme://userinfo@…` URL is a credential (see URL_USERINFO)."""
    transport = scheme.lower().removesuffix("://").rsplit("+", 1)[-1]  # git+https → https
    return transport in ("http", "https") or ":" in userinfo


def url_credential(url: str) -> str | None:
    """The credential a URL carries (its userinfo), or None."""
    match = URL_USERINFO.match(url)
    if match and is_url_credential(match["scheme"], match["userinfo"]):
        return match["userinfo"]
    return None


def has_url_credential(text: str) -> bool:
    """Whether any URL in `text` carries a credential (see URL_USERINFO)."""
    return any(is_url_credential(m["scheme"], m["userinfo"]) for m in URL_USERINFO.finditer(text))


def _mask_url(match: re.Match[str]) -> str:
    if is_url_credential(match["scheme"], match["userinfo"]):
        return f"{match['scheme']}{MASK}@"
    return match.group(0)


# Values this short would mask ordinary words and digits all over the log.
_MIN_SECRET_LENGTH = 4


def is_secret_name(name: str) -> bool:
    return name.startswith(SECRET_PREFIX)


def _forms(secret: str) -> set[str]:
    """The texts a secret can appear as in what we write.

    Output is read and masked line by line (run.log, the console, the CloudWatch tail),
    so a multi-line value — a PEM private key for Snowflake key-pair auth — never shows
    whole: each of its lines is masked on its own. JSON (dbt's artifacts, a node message
    in run_results.json) writes a value with `\\n`, `\\"` and `\\\\` escapes, so the
    escaped form is masked too.
    """
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    if "\n" in secret or "\r" in secret:
        forms.update(line.strip() for line in secret.replace("\r", "\n").split("\n"))
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


class SecretMasker:
    """Replaces every known secret value (and URL credentials) with `*****`.

    A value is masked as written, JSON-escaped, and, when it spans lines, line by line;
    a value shorter than 4 characters is never masked (it would hide ordinary words).
    Values are matched literally: regex metacharacters in a password are just characters.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {form for secret in secrets if secret for form in _forms(secret)}
        # Longest first so a secret containing another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    @classmethod
    def from_env(cls, *envs: Mapping[str, str], also: Iterable[str] = ()) -> SecretMasker:
        """A masker for every `DBT_ENV_SECRET_*` value found in the given environments,
        and the values in `also` (secrets that do not come by name)."""
        found = [value for env in envs for name, value in env.items() if is_secret_name(name)]
        return cls([*found, *also])

    def mask(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        if "://" not in text:  # most lines: no URL, no regex
            return text
        return URL_USERINFO.sub(_mask_url, text)

    def __call__(self, text: str) -> str:
        return self.mask(text)


# dbt's artifacts as run_commands.sh keeps them in a run folder (and uploads them from an
# ECS task): node messages and compiled code can carry what a run printed.
ARTIFACT_PATTERNS = (
    "run_results.json",
    "run_results.*.json",
    "sources.json",
    "sources.*.json",
    "manifest.json",
)


# What dbt leaves in a run's `work/` folder, kept with a failed run for debugging (see
# retention's keep_failed_work): its log and its target/ artifacts, compiled and run SQL.
# dbt masks a DBT_ENV_SECRET_* value only whole, so the lines of a multi-line one (a PEM
# key a Python model printed) reach logs/dbt.log and run_results.json as they are.
# partial_parse.msgpack, graph.gpickle and the DuckDB file are binary and left alone:
# dbt refuses DBT_ENV_SECRET_* in models, so they hold no secret dbt was given by name.
WORK_PATTERNS = (
    "logs/*.log",
    "target/*.json",
    "target/compiled/**/*",
    "target/run/**/*",
)


def mask_artifacts(
    directory: Path, mask: SecretMasker, patterns: Iterable[str] = ARTIFACT_PATTERNS
) -> list[Path]:
    """Rewrite the dbt artifacts in `directory` (the files matching `patterns`) with every
    secret masked; returns those changed.

    Masking the JSON text keeps it valid JSON: `*****` replaces characters inside a
    string (the escaped form of a secret is what JSON holds, see `_forms`). A file is
    replaced atomically (write beside, rename), so a reader never sees half of it.
    Files that cannot be read or written are left as they are (the caller logs).
    """
    changed = []
    for pattern in patterns:
        for path in sorted(directory.glob(pattern)):
            if not path.is_file() or path.name.endswith(".masking"):
                continue
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            masked = mask(text)
            if masked != text:
                partial = path.with_name(f".{path.name}.masking")
                partial.write_text(masked, encoding="utf-8", errors="surrogateescape")
                os.replace(partial, path)
                changed.append(path)
    return changed
