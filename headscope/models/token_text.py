"""Each token as text on its own, as views and reports show it.

A token may hold part of a UTF-8 character: byte-level BPE (GPT-2, Llama 3, SmolLM2) splits "é" or "—" over
tokens, and SentencePiece's byte fallback (Gemma, Llama 2) has one token per byte ("<0xE2>"). Decoded alone such a
token is "�", so 314 different SmolLM2 tokens read alike. Here it reads as its bytes instead: the valid characters
kept, the rest escaped as Python writes them (b"\\xe2\\x80" → "\\xe2\\x80", b" \\xc3" → " \\xc3").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REPLACEMENT = "\ufffd"
BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte-fallback tokens


@functools.cache
def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (its vocabulary is written in them), inverted."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_bytes(tokenizer: Any, token_id: int) -> bytes | None:
    """The bytes a token stands for, read from its vocabulary entry (None when the entry is not written in
    bytes: neither a byte-fallback piece nor byte-level BPE)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if not isinstance(piece, str) or not piece:
        return None
    if m := BYTE_PIECE.fullmatch(piece):
        return bytes([int(m.group(1), 16)])
    alphabet = _byte_level_alphabet()
    if all(c in alphabet for c in piece):
        return bytes(alphabet[c] for c in piece)
    return None


def token_texts(tokenizer: Any, ids: Iterable[int]) -> list[str]:
    """Each token decoded alone; one that decodes to "�" because it is not whole UTF-8 reads as its bytes."""
    out = []
    for i in ids:
        text = str(tokenizer.decode([i]))
        if REPLACEMENT in text and (raw := token_bytes(tokenizer, i)) is not None:
            text = raw.decode("utf-8", errors="backslashreplace")
        out.append(text)
    return out
