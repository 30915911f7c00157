"""Tokenizers of the rule packs' models behind one small interface.

Two kinds are supported: `sentencepiece` (a SentencePiece model file, such as
LLaMA's, loaded through PaddleNLP's LlamaTokenizer) and `byte-level-bpe` (a
Hugging Face `tokenizer.json`, such as GPT-NeoX-20B's, loaded with the
`tokenizers` package). Both expose `bos_token_id`, `eos_token_id`,
`pad_token_id`, `vocab_size`, `encode(text)` (ids without special tokens)
and `decode(ids, skip_special_tokens)`.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("sentencepiece", "byte-level-bpe")


class SentencePieceTokenizer:
    """PaddleNLP's LlamaTokenizer on a SentencePiece file; BOS <s>, EOS </s>, padding with <unk>."""

    kind = "sentencepiece"

    def __init__(self, path: Path):
        from paddlenlp.transformers import LlamaTokenizer

        self.inner = LlamaTokenizer(vocab_file=str(path))
        self.inner.pad_token = self.inner.unk_token
        self.sp_model = self.inner.sp_model
        self.bos_token_id = self.inner.bos_token_id
        self.eos_token_id = self.inner.eos_token_id
        self.pad_token_id = self.inner.pad_token_id
        self.vocab_size = self.sp_model.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp_model.encode(text)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)

    def piece(self, token_id: int) -> str:
        return self.sp_model.id_to_piece(token_id)


class ByteLevelBPETokenizer:
    """A byte-level BPE `tokenizer.json`; its end-of-text token is both BOS and EOS, as in GPT-2 and GPT-NeoX."""

    kind = "byte-level-bpe"
    END_OF_TEXT = "<|endoftext|>"
    PADDING = "<|padding|>"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.inner = Tokenizer.from_file(str(path))
        end_of_text = self.inner.token_to_id(self.END_OF_TEXT)
        if end_of_text is None:
            raise ValueError(f"byte-level BPE tokenizer {path} has no {self.END_OF_TEXT} token")
        padding = self.inner.token_to_id(self.PADDING)
        self.bos_token_id = self.eos_token_id = end_of_text
        self.pad_token_id = end_of_text if padding is None else padding
        self.vocab_size = self.inner.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.inner.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)

    def piece(self, token_id: int) -> str:
        return self.inner.id_to_token(token_id)


def load_tokenizer(path: Path, kind: str = "sentencepiece"):
    """Load the tokenizer file at `path` as `kind` (one of KINDS)."""
    if kind == "sentencepiece":
        return SentencePieceTokenizer(path)
    if kind == "byte-level-bpe":
        return ByteLevelBPETokenizer(path)
    raise ValueError(f"tokenizer kind {kind!r} is not supported: use one of {', '.join(KINDS)}")
