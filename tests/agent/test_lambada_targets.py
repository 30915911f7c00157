"""LAMBADA target ids with the LLaMA SentencePiece tokenizer: context ids + target ids == passage ids."""

import json
from pathlib import Path

import pytest

from agent.workloads.common import encode, load_tokenizer
from agent.workloads.lambada import common_prefix_length, read_items, split_passage

REPO = Path(__file__).resolve().parents[2]
LAMBADA = REPO / "data" / "lambada" / "lambada_test.jsonl"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(REPO / "data" / "tokenizers" / "llama2_tokenizer.model")


def pieces(tokenizer, ids):
    return [tokenizer.sp_model.id_to_piece(token) for token in ids]


# (passage index in lambada_test.jsonl, expected pieces of the last word)
REAL_PASSAGES = [
    (0, ["▁signs"]),
    (1, ["▁Sh", "ane"]),
    (2, ["▁ins", "urance"]),
    (70, ["▁\"", "N", "ad", "ia"]),  # an opening quote glued to the word
    (90, ["▁R", "ack", "enf", "au", "z"]),  # a rare name in five pieces
    (426, ["▁of", "<0x0A>", "<0x0A>", "Power"]),  # newlines: the split is at the last space
    (1198, ["▁‘", "pa", "id"]),
]


@pytest.mark.parametrize(("index", "expected"), REAL_PASSAGES)
def test_real_passage_target(tokenizer, index, expected):
    text = json.loads(LAMBADA.read_text(encoding="utf-8").splitlines()[index])["text"]

    item = split_passage(tokenizer, index, text)

    assert pieces(tokenizer, item.target) == expected
    assert item.ids == [tokenizer.bos_token_id, *encode(tokenizer, text)]
    assert item.ids[: item.context_length] == [tokenizer.bos_token_id, *encode(tokenizer, text.rsplit(" ", 1)[0])]
    assert not item.prefix_mismatch


CONSTRUCTED = [
    ('He paid with a credit card, not with "cash', ["▁\"", "c", "ash"]),
    ("The answer, of course, was 1984", ["▁", "1", "9", "8", "4"]),
    ("Dinner was at the café", ["▁c", "afé"]),
    ("He said   goodbye", ["▁good", "bye"]),  # runs of spaces stay in the context
]


@pytest.mark.parametrize(("text", "expected"), CONSTRUCTED)
def test_constructed_passage_target(tokenizer, text, expected):
    item = split_passage(tokenizer, 0, text)

    assert pieces(tokenizer, item.target) == expected
    assert item.ids[: item.context_length] + item.target == item.ids
    assert item.target[0] != tokenizer.bos_token_id


def test_every_passage_splits_as_prefix(tokenizer):
    items = read_items(tokenizer, LAMBADA, None)

    assert len(items) == 5153
    assert sum(item.prefix_mismatch for item in items) == 0
    assert all(len(item.target) >= 1 for item in items)


@pytest.mark.parametrize(
    ("full_ids", "context_ids", "expected"),
    [
        ([1, 5, 6, 7], [1, 5, 6], 3),  # the usual case: the context is a prefix
        ([1, 5, 9, 7], [1, 5, 6], 2),  # the last context id merged with the word
        ([1, 5, 6], [1, 5, 6], 2),  # the target keeps at least one id
    ],
)
def test_common_prefix_length(full_ids, context_ids, expected):
    assert common_prefix_length(full_ids, context_ids) == expected


# The same construction with a byte-level BPE tokenizer (GPT-NeoX-20B's, as the Qwen2 and GPT presets use).
# "Ġ" is the byte-level symbol of a space and "Ċ" of a newline.


@pytest.fixture(scope="module")
def bpe_tokenizer():
    return load_tokenizer(REPO / "data" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json", "byte-level-bpe")


def bpe_pieces(tokenizer, ids):
    return [tokenizer.piece(token) for token in ids]


BPE_REAL_PASSAGES = [
    (0, ["Ġsigns"]),
    (1, ["ĠShane"]),
    (70, ["Ġ\"", "N", "ad", "ia"]),
    (90, ["ĠR", "ack", "en", "f", "au", "z"]),
    (426, ["Ġof", "Ċ", "Ċ", "Power"]),
    (1198, ["ĠâĢĺ", "paid"]),  # the bytes of an opening quote, then the word
]


@pytest.mark.parametrize(("index", "expected"), BPE_REAL_PASSAGES)
def test_bpe_real_passage_target(bpe_tokenizer, index, expected):
    text = json.loads(LAMBADA.read_text(encoding="utf-8").splitlines()[index])["text"]

    item = split_passage(bpe_tokenizer, index, text)

    assert bpe_pieces(bpe_tokenizer, item.target) == expected
    assert item.ids == [bpe_tokenizer.bos_token_id, *bpe_tokenizer.encode(text)]
    assert item.ids[: item.context_length] == [bpe_tokenizer.bos_token_id, *bpe_tokenizer.encode(text.rsplit(" ", 1)[0])]
    assert not item.prefix_mismatch


BPE_CONSTRUCTED = [
    ('He paid with a credit card, not with "cash', ["Ġ\"", "cash"], False),
    ("The answer, of course, was 1984", ["Ġ1984"], False),
    ("Dinner was at the café", ["ĠcafÃ©"], False),
    ("她说 你好", ["Ġ", "ä½ł", "å¥½"], False),
    # The tokenizer has one token for a run of three spaces, so the context's
    # two trailing spaces merge with the word's space: the target takes them
    # and the item is flagged.
    ("He said   goodbye", ["   ", "good", "bye"], True),
]


@pytest.mark.parametrize(("text", "expected", "mismatch"), BPE_CONSTRUCTED)
def test_bpe_constructed_passage_target(bpe_tokenizer, text, expected, mismatch):
    item = split_passage(bpe_tokenizer, 0, text)

    assert bpe_pieces(bpe_tokenizer, item.target) == expected
    assert item.ids[: item.context_length] + item.target == item.ids
    assert item.prefix_mismatch is mismatch
    assert bpe_tokenizer.decode(item.target) == text[len(bpe_tokenizer.decode(item.ids[1:item.context_length])):]


def test_bpe_every_passage_splits_as_prefix(bpe_tokenizer):
    items = read_items(bpe_tokenizer, LAMBADA, None)

    assert len(items) == 5153
    assert sum(item.prefix_mismatch for item in items) == 0
    assert all(item.target[0] != bpe_tokenizer.bos_token_id for item in items)
