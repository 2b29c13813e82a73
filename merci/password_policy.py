"""How strong a new password must be: zxcvbn's estimate (Dropbox's), score 3 of 4 or more.

zxcvbn guesses like an attacker does: dictionaries, names, keyboard walks, repeats,
dates, l33t, and the words given as `user_inputs` (the account's email, handle and
display name), so `aaaaaaaaaa` and the email itself score 0. It is pure Python and its
time grows with the length (about 70 ms at 64 characters on this machine's cores), so it
judges the first JUDGED characters only (a password strong in its first 64 is strong)
and runs in the password threads, off the event loop (merci.accounts.check_strength).
"""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

MIN_SCORE = 3  # "safely unguessable: moderate protection from offline slow-hash scenario" (< 10^10 guesses)
JUDGED = 64


def user_inputs(*values: str) -> list[str]:
    """The account's own words, and their parts (`ada.lovelace@example.org`: ada, lovelace, example)."""
    found: list[str] = []
    for value in values:
        value = value.strip().lower()
        if value:
            found.append(value)
            found += [part for part in re.split(r"[^a-z0-9]+", value) if len(part) >= 3]
    return list(dict.fromkeys(found))


def judge(password: str, inputs: list[str]) -> tuple[int, str]:
    """(score 0-4, what zxcvbn says to do better). CPU-bound: call it off the event loop."""
    result = zxcvbn(password[:JUDGED], user_inputs=[i[:JUDGED] for i in inputs])
    feedback = result.get("feedback") or {}
    words = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
    advice = " ".join(w.strip() for w in words if w and w.strip())
    return int(result["score"]), advice or "Add another word or two. Uncommon words are better."
