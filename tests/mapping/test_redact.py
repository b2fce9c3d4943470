"""Token-shaped secrets in free text are found and replaced by their fingerprints."""

from __future__ import annotations

import random
import re

import pytest

from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.redact import SECRET_RE, redact, secrets_in

fingerprint = Fingerprinter(bytes(range(32)))

# One real-looking secret of every shape the README names under "Secrets and fingerprints"
# (and the other shipped patterns).
SECRETS = {
    "github classic": "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8",
    "github oauth": "gho_" + "Z9y8X7w6V5" * 3 + "u4T3s2",
    "github fine-grained": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "gitlab": "glpat-AbCdEfGhIjKlMnOpQrSt",
    "slack bot": "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
    "slack user": "xoxp-1234567890-0987654321-AbCdEfGhIjKl",
    "stripe": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "vault": "hvs.CAESIJ0123456789abcdefghijklmnop",
    "npm": "npm_" + "a1B2c3D4e5" * 3 + "F6g7H8",
    "openai": "sk-proj-" + "abcdEFGH1234" * 3,
    "google": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "tokenotel": "tko_0a1b2c3d_" + "Zq-9_xYw" * 5 + "AbC",
}


@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_each_secret_shape_is_replaced_by_its_fingerprint(secret: str) -> None:
    text = f"user pasted {secret} into the chat"
    redacted, first = redact(text, fingerprint)
    assert secret not in redacted
    assert redacted == f"user pasted {fingerprint(secret)} into the chat"
    assert first == fingerprint(secret)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "Basic"])
def test_authorization_schemes_keep_the_scheme_and_fingerprint_the_credential(
    scheme: str,
) -> None:
    credential = "opaque-Token_value.42~x"  # no known prefix: the scheme is what gives it away
    redacted, first = redact(f"{scheme} {credential}", fingerprint)
    assert redacted == f"{scheme} {fingerprint(credential)}"
    assert first == fingerprint(credential)


def test_every_secret_in_a_text_is_replaced_and_the_first_is_reported() -> None:
    gitlab, stripe = SECRETS["gitlab"], SECRETS["stripe"]
    redacted, first = redact(f'{{"a": "{gitlab}", "b": "{stripe}"}}', fingerprint)
    assert redacted == f'{{"a": "{fingerprint(gitlab)}", "b": "{fingerprint(stripe)}"}}'
    assert first == fingerprint(gitlab)


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/repos/42 200",
        "ghp_short",
        "token tok_0123456789 created by alice@example.com",
        "AKIA-not-a-key",
        "Bearer",
        "2001:db8:85a3::8a2e:370:7334",
        "déploiement ключ 🚀",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text, fingerprint) == (text, None)


def test_secrets_are_found_where_the_whole_pattern_finds_them() -> None:
    # secrets_in tries the pattern only where a secret's fixed start is (fast on long texts
    # such as a vendor's whole record): it must find exactly what a search of every position
    # finds, secrets next to each other, overlapping starts and word boundaries included.
    rng = random.Random(14)
    pieces = [
        *SECRETS.values(),
        "Bearer abcdefgh12345678",
        "BASIC dXNlcjpwYXNz",
        "sk_live_",
        "rk_test_" + "a" * 16,
        "eyJ-eyJ-eyJ",
        "xAKIAABCDEFGHIJKLMNOP",
        "AKIAABCDEFGHIJKLMNO",
        '{"accessKeyId":"',
        " ",
        "-",
        "_",
        '"',
        "hvs.",
        "tko_",
        "word",
        # Letters that are others to str.lower(): the long s is an "s" to (?i), and the dotted
        # capital i lowers to two characters.
        "ba\u017fic dXNlcjpwYXNz",
        "\u0130",
        "\u0131",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        expected = [(m.start(), m.end()) for m in SECRET_RE.finditer(text)]
        assert [(m.start(), m.end()) for m in secrets_in(text)] == expected, text


@pytest.mark.parametrize("word", ["Bearer", "Basic"])
def test_an_authorization_is_found_in_every_spelling_the_pattern_takes(word: str) -> None:
    # Each letter of the scheme in every form the pattern's (?i) matches: ASCII cases, and
    # the other letters Unicode folds onto them.
    for at, letter in enumerate(word):
        same = [chr(c) for c in range(0x2000) if re.fullmatch(f"(?i:{letter})", chr(c))]
        for other in same:
            text = f"x {word[:at]}{other}{word[at + 1 :]} abcdefgh12345678"
            expected = [(m.start(), m.end()) for m in SECRET_RE.finditer(text)]
            assert expected, text
            assert [(m.start(), m.end()) for m in secrets_in(text)] == expected, text
            assert redact(text, fingerprint)[0] == f"x {word[:at]}{other}{word[at + 1 :]} " + (
                fingerprint("abcdefgh12345678")
            )
