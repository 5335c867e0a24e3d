"""lib/secrets.py: every form a secret can take in what we write is masked."""

from __future__ import annotations

import json

import pytest

from lib.secrets import MASK, SecretMasker

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)
METACHARACTERS = r"p@ss.w*rd+(x)?[a-z]{2}|\d$^"


def test_a_multi_line_secret_is_masked_whole_and_line_by_line() -> None:
    mask = SecretMasker([PEM])
    assert mask(f"key={PEM}!") == f"key={MASK}!"
    for line in PEM.splitlines():
        assert mask(f"  {line}  ") == f"  {MASK}  "  # as a line of output, however indented
    assert mask("KEY-----") == "KEY-----"  # not every substring: only the lines


def test_a_secret_is_masked_in_its_json_escaped_form() -> None:
    """dbt's artifacts hold a node message as JSON: newlines and quotes are escaped there."""
    secret = 'pa"ss\\wörd\nline2-xyz'
    mask = SecretMasker([secret])
    for ensure_ascii in (True, False):
        text = json.dumps({"message": f"failed: {secret}"}, ensure_ascii=ensure_ascii)
        masked = mask(text)
        assert json.loads(masked)["message"] == f"failed: {MASK}"


@pytest.mark.parametrize("secret", [METACHARACTERS, "a.b", "x" * 3])
def test_regex_metacharacters_are_literal_and_short_values_are_left_alone(secret: str) -> None:
    text = f"before {secret} after; and 'aXb' stays"
    masked = SecretMasker([secret])(text)
    if len(secret) >= 4:
        assert secret not in masked and masked == f"before {MASK} after; and 'aXb' stays"
    else:
        assert masked == text


def test_url_credentials_are_masked_and_long_words_stay_cheap() -> None:
    mask = SecretMasker()
    assert mask("clone https://user:tok3n@git.example.com/x.git failed") == (
        f"clone https://{MASK}@git.example.com/x.git failed"
    )
    assert mask("x" * 50 + "git+ssh://me:pw@host/repo") == "x" * 50 + f"git+ssh://{MASK}@host/repo"
    assert mask("ssh://git@host/repo") == "ssh://git@host/repo"  # a user name, not a secret
    long_line = "r" * 200_000 + " https://a:b@h/"  # quadratic before: minutes for this line
    assert mask(long_line).endswith(f"https://{MASK}@h/")


# URLs for the one definition of a credential in a URL, with whether each carries one.
URLS = [
    ("https://ghp_T0ken@github.com/acme/shop.git", True),
    ("https://user:pw@gitlab.example.com/shop.git", True),
    ("HTTP://x@host/repo", True),
    ("ssh://git@github.com/acme/shop.git", False),
    ("ssh://git:secret@host/repo", True),
    ("git@github.com:acme/shop.git", False),
    ("https://github.com/acme/shop.git", False),
    ("file:///srv/git/shop.git", False),
    ("git+https://a@b/c", True),
]


def test_the_config_check_the_masker_and_run_commands_sh_share_one_definition() -> None:
    import subprocess
    from pathlib import Path

    from lib.config.checks import git_url_credential as _git_url_credential
    from lib.secrets import url_credential

    script = Path(__file__).resolve().parents[1] / "docker" / "run_commands.sh"
    harness = (
        "source <(sed -n '/^display_url()/,/^}/p' \"$1\"); shift\n"
        'for url in "$@"; do display_url "$url"; printf \'\\0\'; done'
    )
    shown = subprocess.run(
        ["bash", "-c", harness, "harness", str(script), *(url for url, _ in URLS)],
        capture_output=True, text=True, check=True,
    ).stdout.split("\0")[:-1]  # fmt: skip
    mask = SecretMasker()
    for (url, carries), printed in zip(URLS, shown, strict=True):
        assert (url_credential(url) is not None) is carries, url
        assert (_git_url_credential(url) is not None) is carries, url
        assert (mask(url) != url) is carries, url
        assert (printed != url) is carries, (url, printed)  # the script strips exactly those
        if carries:
            assert "@" in url and url_credential(url) not in printed
