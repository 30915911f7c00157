"""Tokenizers of the rule packs' models behind one small interface.

A pack's `tokenizers.<name>.kind` is one of KINDS:

- `sentencepiece`: a SentencePiece model file (LLaMA1/2's `tokenizer.model`),
  loaded with PaddleNLP's LlamaTokenizer.
- `tiktoken`: a tiktoken BPE file (LLaMA3's `tokenizer.model`, one
  "base64(token bytes) rank" pair per line), loaded with PaddleNLP's
  Llama3Tokenizer, which builds a `tiktoken.Encoding` from it.
- `bpe`: a `vocab.json` with `merges.txt` in the same folder (Qwen2, GPT-2,
  CLIP), loaded with the PaddleNLP class that the entry's `class` names
  (one of BPE_CLASSES), since each of those models splits text differently
  before its merges.
- `byte-level-bpe`: a Hugging Face `tokenizer.json` (GPT-NeoX-20B's), loaded
  with the `tokenizers` package.

Each exposes `bos_token_id`, `eos_token_id`, `pad_token_id`, `vocab_size`,
`encode(text)` (ids without special tokens), `decode(ids,
skip_special_tokens)` and `piece(id)`. A tokenizer without a BOS token
(Qwen2, GPT-2) uses its end-of-text token as BOS, the document separator
of GPT-2 style pretraining.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

KINDS = ("sentencepiece", "tiktoken", "bpe", "byte-level-bpe")
BPE_CLASSES = ("Qwen2Tokenizer", "GPTTokenizer", "CLIPTokenizer")


class TokenizerFileError(ValueError):
    """A tokenizer file is missing or is not a file of the kind the rule pack names."""


def _require_file(path: Path, kind: str, expected: str) -> None:
    if not path.is_file():
        raise TokenizerFileError(
            f"tokenizer file {path} does not exist: a {kind!r} tokenizer needs {expected} there "
            "(check the rule pack's tokenizers path and --data-root)")


class SentencePieceTokenizer:
    """PaddleNLP's LlamaTokenizer on a SentencePiece file; BOS <s>, EOS </s>, padding with <unk>."""

    kind = "sentencepiece"

    def __init__(self, path: Path):
        from paddlenlp.transformers import LlamaTokenizer

        _require_file(path, self.kind, "a SentencePiece model file such as LLaMA's tokenizer.model")
        try:
            self.inner = LlamaTokenizer(vocab_file=str(path))
        except (RuntimeError, OSError) as error:
            raise TokenizerFileError(
                f"{path} is not a SentencePiece model ({error}); a LLaMA3 tokenizer.model is kind 'tiktoken', "
                "a vocab.json is kind 'bpe'") from error
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


class PaddleNLPTokenizer:
    """A PaddleNLP tokenizer class, encoding through its own `tokenize` and `convert_tokens_to_ids`."""

    def __init__(self, inner, kind: str):
        self.inner = inner
        self.kind = kind
        named = inner.special_tokens_map
        if "eos_token" not in named or inner.eos_token_id is None:
            raise TokenizerFileError(f"{type(inner).__name__} found no end-of-text token in its vocabulary")
        self.eos_token_id = inner.eos_token_id
        self.bos_token_id = inner.bos_token_id if "bos_token" in named else self.eos_token_id
        self.pad_token_id = inner.pad_token_id if "pad_token" in named else self.eos_token_id
        self.vocab_size = len(inner)

    def encode(self, text: str) -> list[int]:
        return self.inner.convert_tokens_to_ids(self.inner.tokenize(text))

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        # No clean-up of spaces before punctuation, so that decoding gives the encoded text back.
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)

    def piece(self, token_id: int):
        """Return the token's surface form: a byte-level string for `bpe`, the raw bytes for `tiktoken`."""
        return self.inner.convert_ids_to_tokens(token_id)


def read_tiktoken_ranks(path: Path) -> int:
    """Check a tiktoken BPE file line by line and return its number of ranks.

    Every non-empty line must be "base64(token bytes) rank", no token may
    appear twice, and the ranks must be 0..n-1 with no gap or repeat, which is
    what tiktoken's Encoding needs.
    """
    _require_file(path, "tiktoken", "a tiktoken BPE file such as LLaMA3's tokenizer.model")
    ranks: set[int] = set()
    tokens: set[bytes] = set()
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 2:
                    raise ValueError("expected two fields")
                token = base64.b64decode(fields[0], validate=True)
                rank = int(fields[1])
            except (ValueError, binascii.Error) as error:
                raise TokenizerFileError(
                    f"{path} line {number} is not 'base64(token) rank' ({error}), so it is not a tiktoken BPE file; "
                    "a SentencePiece tokenizer.model (LLaMA1/2) is kind 'sentencepiece'") from error
            if rank in ranks:
                raise TokenizerFileError(f"{path} line {number}: rank {rank} appears twice")
            if token in tokens:
                raise TokenizerFileError(f"{path} line {number}: token {token!r} appears twice")
            ranks.add(rank)
            tokens.add(token)
    if not ranks:
        raise TokenizerFileError(f"{path} contains no tokens, so it is not a tiktoken BPE file")
    if max(ranks) != len(ranks) - 1:
        raise TokenizerFileError(f"{path}: the ranks are not 0..{len(ranks) - 1} without gaps")
    return len(ranks)


def load_tiktoken(path: Path) -> PaddleNLPTokenizer:
    from paddlenlp.transformers import Llama3Tokenizer

    read_tiktoken_ranks(path)
    return PaddleNLPTokenizer(Llama3Tokenizer(vocab_file=str(path)), "tiktoken")


def check_bpe_files(path: Path) -> Path:
    """Check that `path` is a vocab.json (token -> id) with a merges.txt beside it; return the merges path."""
    _require_file(path, "bpe", "a vocab.json with merges.txt beside it")
    try:
        vocabulary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerFileError(f"{path} is not a vocab.json ({error}): a 'bpe' tokenizer's path names its vocab.json") from error
    if not isinstance(vocabulary, dict) or not vocabulary or not all(isinstance(value, int) for value in vocabulary.values()):
        raise TokenizerFileError(f"{path} is not a vocab.json: expected a JSON object from each token to its integer id")
    merges = path.with_name("merges.txt")
    _require_file(merges, "bpe", f"its merges.txt beside {path.name}")
    with merges.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith("#version"):
                continue
            if line.strip() and len(line.split()) != 2:
                raise TokenizerFileError(f"{merges} line {number} is not a pair of symbols, so it is not a BPE merges file")
    return merges


def load_bpe(path: Path, tokenizer_class: str | None) -> PaddleNLPTokenizer:
    import paddlenlp.transformers as transformers

    if tokenizer_class not in BPE_CLASSES:
        raise TokenizerFileError(
            f"a 'bpe' tokenizer needs 'class' set to one of {', '.join(BPE_CLASSES)} in the rule pack, "
            f"not {tokenizer_class!r}: Qwen2, GPT-2 and CLIP split text differently before their merges")
    merges = check_bpe_files(path)
    return PaddleNLPTokenizer(getattr(transformers, tokenizer_class)(vocab_file=str(path), merges_file=str(merges)), "bpe")


class ByteLevelBPETokenizer:
    """A byte-level BPE `tokenizer.json`; its end-of-text token is both BOS and EOS, as in GPT-2 and GPT-NeoX."""

    kind = "byte-level-bpe"
    END_OF_TEXT = "<|endoftext|>"
    PADDING = "<|padding|>"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        _require_file(path, self.kind, "a Hugging Face tokenizer.json")
        try:
            self.inner = Tokenizer.from_file(str(path))
        except Exception as error:  # the tokenizers package raises a bare Exception for unreadable files
            raise TokenizerFileError(f"{path} is not a Hugging Face tokenizer.json ({error})") from error
        end_of_text = self.inner.token_to_id(self.END_OF_TEXT)
        if end_of_text is None:
            raise TokenizerFileError(f"byte-level BPE tokenizer {path} has no {self.END_OF_TEXT} token")
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


def load_tokenizer(path: Path, kind: str = "sentencepiece", tokenizer_class: str | None = None):
    """Load the tokenizer file at `path` as `kind` (one of KINDS); `tokenizer_class` is the `bpe` kind's class."""
    path = Path(path)
    if kind == "sentencepiece":
        return SentencePieceTokenizer(path)
    if kind == "tiktoken":
        return load_tiktoken(path)
    if kind == "bpe":
        return load_bpe(path, tokenizer_class)
    if kind == "byte-level-bpe":
        return ByteLevelBPETokenizer(path)
    raise TokenizerFileError(f"tokenizer kind {kind!r} is not supported: use one of {', '.join(KINDS)}")
