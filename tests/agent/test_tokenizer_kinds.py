"""The standard's tokenizer kinds, each loaded with PaddleNLP's own class from files derived from GPT-NeoX-20B.

`tiktoken` (LLaMA3's kind) reads a "base64(token bytes) rank" file, derived
here from the GPT-NeoX-20B merges: the 256 single bytes, then each merge's
bytes in merges.txt order. `bpe` reads the shipped vocab.json and merges.txt
with Qwen2Tokenizer and with GPTTokenizer. For each, LAMBADA target ids are
such that context ids + target ids == ids of the full passage.
"""

import base64
import copy
import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.runner.plan import verify_input_files
from agent.workloads.lambada import read_items, split_passage
from agent.workloads.tokenization import TokenizerFileError, load_tokenizer, read_tiktoken_ranks
from certification.records import decode_float, read_json, read_jsonl
from certification.rulepack import load_rule_pack, validate_rule_pack

REPO = Path(__file__).resolve().parents[2]
NEOX = REPO / "data" / "tokenizers" / "gpt-neox-20b"
LAMBADA = REPO / "data" / "lambada" / "lambada_test.jsonl"
SENTENCEPIECE = REPO / "data" / "tokenizers" / "llama2_tokenizer.model"


def byte_level_decoder() -> dict[str, int]:
    from paddlenlp.transformers.gpt.tokenizer import bytes_to_unicode

    return {symbol: byte for byte, symbol in bytes_to_unicode().items()}


def derive_tiktoken_file(path: Path) -> int:
    """Write GPT-NeoX-20B's byte-level BPE as a tiktoken file; return the number of ranks."""
    decoder = byte_level_decoder()
    ranks = {bytes([byte]): byte for byte in range(256)}
    for line in (NEOX / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]:
        if line:
            left, right = line.split(" ")
            token = bytes(decoder[symbol] for symbol in left + right)
            ranks.setdefault(token, len(ranks))
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items()))
    return len(ranks)


@pytest.fixture(scope="module")
def tiktoken_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama3") / "tokenizer.model"
    derive_tiktoken_file(path)
    return path


KINDS = {
    "tiktoken": lambda tiktoken_file: load_tokenizer(tiktoken_file, "tiktoken"),
    "bpe-qwen2": lambda _: load_tokenizer(NEOX / "vocab.json", "bpe", "Qwen2Tokenizer"),
    "bpe-gpt2": lambda _: load_tokenizer(NEOX / "vocab.json", "bpe", "GPTTokenizer"),
}


@pytest.fixture(scope="module", params=list(KINDS))
def tokenizer(request, tiktoken_file):
    return KINDS[request.param](tiktoken_file)


def pieces(tokenizer, ids):
    """Surface forms as text: tiktoken's raw bytes decoded, BPE's byte-level symbols as they are."""
    return [piece.decode("utf-8", errors="backslashreplace") if isinstance(piece, bytes) else piece
            for piece in map(tokenizer.piece, ids)]


def test_special_tokens(tiktoken_file):
    llama3 = load_tokenizer(tiktoken_file, "tiktoken")
    qwen2 = load_tokenizer(NEOX / "vocab.json", "bpe", "Qwen2Tokenizer")
    gpt2 = load_tokenizer(NEOX / "vocab.json", "bpe", "GPTTokenizer")
    ranks = read_tiktoken_ranks(tiktoken_file)

    # Llama3Tokenizer puts its 256 special tokens after the ranks: <|begin_of_text|>, then <|end_of_text|>.
    assert (llama3.bos_token_id, llama3.eos_token_id, llama3.pad_token_id) == (ranks, ranks + 1, ranks + 1)
    assert llama3.vocab_size == ranks + 256
    # Qwen2 has no BOS token, so its end-of-text token (id 0 in GPT-NeoX's vocab.json) separates documents.
    assert (qwen2.bos_token_id, qwen2.eos_token_id, qwen2.pad_token_id) == (0, 0, 0)
    assert (gpt2.bos_token_id, gpt2.eos_token_id) == (0, 0)
    assert qwen2.vocab_size == gpt2.vocab_size == 50277


# (passage index, {kind: pieces of the last word}); "Ġ" is a space, "Ċ" a newline in byte-level symbols.
REAL_PASSAGES = [
    (0, {"tiktoken": [" signs"], "bpe-qwen2": ["Ġsigns"], "bpe-gpt2": ["Ġsigns"]}),
    (70, {"tiktoken": [' "', "N", "ad", "ia"], "bpe-qwen2": ['Ġ"', "N", "ad", "ia"], "bpe-gpt2": ['Ġ"', "N", "ad", "ia"]}),
    (90, {"tiktoken": [" R", "ack", "en", "f", "au", "z"], "bpe-qwen2": ["ĠR", "ack", "en", "f", "au", "z"],
          "bpe-gpt2": ["ĠR", "ack", "en", "f", "au", "z"]}),
    # Qwen2's and LLaMA3's pre-tokenizers keep a run of newlines together; GPT-2's splits it.
    (426, {"tiktoken": [" of", "\n\n", "Power"], "bpe-qwen2": ["Ġof", "ĊĊ", "Power"], "bpe-gpt2": ["Ġof", "Ċ", "Ċ", "Power"]}),
    (1198, {"tiktoken": [" \u2018", "paid"], "bpe-qwen2": ["ĠâĢĺ", "paid"], "bpe-gpt2": ["ĠâĢĺ", "paid"]}),
]


@pytest.mark.parametrize(("index", "expected"), REAL_PASSAGES)
def test_real_passage_target(tokenizer, request, index, expected):
    kind = request.node.callspec.params["tokenizer"]
    text = json.loads(LAMBADA.read_text(encoding="utf-8").splitlines()[index])["text"]

    item = split_passage(tokenizer, index, text)

    assert pieces(tokenizer, item.target) == expected[kind]
    assert item.ids == [tokenizer.bos_token_id, *tokenizer.encode(text)]
    assert item.ids[: item.context_length] == [tokenizer.bos_token_id, *tokenizer.encode(text.rsplit(" ", 1)[0])]
    assert not item.prefix_mismatch


CONSTRUCTED = [
    ('He paid with a credit card, not with "cash', {"tiktoken": [' "', "cash"], "bpe-qwen2": ['Ġ"', "cash"], "bpe-gpt2": ['Ġ"', "cash"]}),
    # LLaMA3 groups digits by three, Qwen2 splits every digit, GPT-2 keeps the number whole.
    ("The answer, of course, was 1984", {"tiktoken": [" ", "198", "4"], "bpe-qwen2": ["Ġ", "1", "9", "8", "4"], "bpe-gpt2": ["Ġ1984"]}),
    ("Dinner was at the café", {"tiktoken": [" café"], "bpe-qwen2": ["ĠcafÃ©"], "bpe-gpt2": ["ĠcafÃ©"]}),
    ("她说 你好", {"tiktoken": [" ", "你", "好"], "bpe-qwen2": ["Ġ", "ä½ł", "å¥½"], "bpe-gpt2": ["Ġ", "ä½ł", "å¥½"]}),
    # Without GPT-NeoX's added tokens for runs of spaces, the last space stays with the word.
    ("He said   goodbye", {"tiktoken": [" goodbye"], "bpe-qwen2": ["Ġgoodbye"], "bpe-gpt2": ["Ġgoodbye"]}),
]


@pytest.mark.parametrize(("text", "expected"), CONSTRUCTED)
def test_constructed_passage_target(tokenizer, request, text, expected):
    kind = request.node.callspec.params["tokenizer"]

    item = split_passage(tokenizer, 0, text)

    assert pieces(tokenizer, item.target) == expected[kind]
    assert item.ids[: item.context_length] + item.target == item.ids
    assert not item.prefix_mismatch
    assert tokenizer.decode(item.ids[1:]) == text
    assert tokenizer.decode(item.target) == " " + text.rsplit(" ", 1)[1]


@pytest.mark.slow
def test_every_passage_splits_as_prefix(tokenizer):
    texts = [json.loads(line)["text"] for line in LAMBADA.read_text(encoding="utf-8").splitlines()]

    items = read_items(tokenizer, LAMBADA, None)

    assert len(items) == 5153
    assert sum(item.prefix_mismatch for item in items) == 0
    assert all(item.target and item.target[0] != tokenizer.bos_token_id for item in items)
    assert all(tokenizer.decode(item.ids[1:]) == text for item, text in zip(items, texts))


def test_gpt2_class_matches_tokenizer_json():
    """GPTTokenizer on vocab.json + merges.txt gives the ids of GPT-NeoX's own tokenizer.json.

    GPT-NeoX's tokenizer.json adds NFC normalization and one token per run of
    spaces, which a GPT-2 style vocab.json does not have, so passages with
    either are left out.
    """
    import unicodedata

    gpt2 = load_tokenizer(NEOX / "vocab.json", "bpe", "GPTTokenizer")
    reference = load_tokenizer(NEOX / "tokenizer.json", "byte-level-bpe")
    texts = [json.loads(line)["text"] for line in LAMBADA.read_text(encoding="utf-8").splitlines()[:300]]
    plain = [text for text in texts if "  " not in text and unicodedata.normalize("NFC", text) == text]

    assert len(plain) > 250
    assert [gpt2.encode(text) for text in plain] == [reference.encode(text) for text in plain]


def test_tiktoken_ranks_are_the_merge_order(tiktoken_file):
    """A token of the derived file is its bytes' rank: single bytes first, then the merges in order."""
    llama3 = load_tokenizer(tiktoken_file, "tiktoken")

    assert llama3.encode("A") == [ord("A")]
    assert llama3.piece(256) == b"  "  # the first merge of GPT-NeoX, "Ġ Ġ"
    assert llama3.piece(257) == b" t"  # the second, "Ġ t"


# Errors: a wrong path or a file of another kind names the file and what to do.


def test_missing_file(tmp_path):
    with pytest.raises(TokenizerFileError, match="does not exist.*--data-root"):
        load_tokenizer(tmp_path / "tokenizer.model", "tiktoken")


def test_sentencepiece_model_as_tiktoken():
    with pytest.raises(TokenizerFileError, match=r"line \d+ is not 'base64\(token\) rank'.*kind 'sentencepiece'"):
        load_tokenizer(SENTENCEPIECE, "tiktoken")


def test_tiktoken_file_as_sentencepiece(tiktoken_file):
    with pytest.raises(TokenizerFileError, match="is not a SentencePiece model.*kind 'tiktoken'"):
        load_tokenizer(tiktoken_file, "sentencepiece")


def test_tiktoken_ranks_with_a_gap(tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_text("QQ== 0\nQg== 2\n")

    with pytest.raises(TokenizerFileError, match="not 0..1 without gaps"):
        load_tokenizer(path, "tiktoken")


def test_tiktoken_token_twice(tmp_path):
    path = tmp_path / "tokenizer.model"
    path.write_text("QQ== 0\nQg== 1\nQQ== 2\n")

    with pytest.raises(TokenizerFileError, match=r"line 3: token b'A' appears twice"):
        load_tokenizer(path, "tiktoken")


def test_bpe_without_class():
    with pytest.raises(TokenizerFileError, match="needs 'class' set to one of Qwen2Tokenizer, GPTTokenizer, CLIPTokenizer"):
        load_tokenizer(NEOX / "vocab.json", "bpe")


def test_bpe_path_is_a_tokenizer_json():
    with pytest.raises(TokenizerFileError, match="is not a vocab.json: expected a JSON object from each token to its integer id"):
        load_tokenizer(NEOX / "tokenizer.json", "bpe", "Qwen2Tokenizer")


def test_bpe_path_is_a_sentencepiece_model():
    with pytest.raises(TokenizerFileError, match="is not a vocab.json"):
        load_tokenizer(SENTENCEPIECE, "bpe", "GPTTokenizer")


def test_bpe_without_merges(tmp_path):
    shutil.copy(NEOX / "vocab.json", tmp_path / "vocab.json")

    with pytest.raises(TokenizerFileError, match="merges.txt.*does not exist"):
        load_tokenizer(tmp_path / "vocab.json", "bpe", "Qwen2Tokenizer")


def test_unknown_kind():
    with pytest.raises(TokenizerFileError, match="kind 'wordpiece' is not supported: use one of sentencepiece, tiktoken, bpe, byte-level-bpe"):
        load_tokenizer(NEOX / "vocab.json", "wordpiece")


def test_pack_needs_class_for_bpe():
    data = copy.deepcopy(load_rule_pack("standard-2024.1").data)
    del data["tokenizers"]["qwen2"]["class"]
    data["tokenizers"]["llama3"]["kind"] = "tiktoken-bpe"

    issues = {issue.path: issue.message for issue in validate_rule_pack(data)}

    assert "'class' is a required property" in issues["tokenizers/qwen2"]
    assert "tokenizers/llama3/kind" in issues


# A tiny model trains with each kind, and its LAMBADA records use the kind's split.

TRAIN_STEPS = 4
# (kind id, tokenizer entry, model preset of rule pack tiny-2026.1, vocab_size at least the tokenizer's)
TRAINING = [
    ("tiktoken", {"kind": "tiktoken"}, "llama-tiny", 50560),
    ("bpe-qwen2", {"kind": "bpe", "class": "Qwen2Tokenizer", "path": str(NEOX / "vocab.json")}, "qwen2-tiny", 50304),
    ("bpe-gpt2", {"kind": "bpe", "class": "GPTTokenizer", "path": str(NEOX / "vocab.json")}, "gpt-tiny", 50304),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "entry", "model", "vocab_size"), TRAINING, ids=[row[0] for row in TRAINING])
def test_tiny_model_trains(tmp_path, tiktoken_file, kind, entry, model, vocab_size):
    from agent.workloads import pretrain
    from agent.workloads.common import WorkloadContext

    pack = copy.deepcopy(load_rule_pack("tiny-2026.1"))
    pack.data["tokenizers"][kind] = {"path": str(tiktoken_file), "sha256": None, **entry}
    pack.data["models"][model]["tokenizer"] = kind
    pack.data["models"][model]["config"]["vocab_size"] = vocab_size
    workload_id = next(name for name, spec in pack.data["workloads"].items() if spec["kind"] == "pretrain" and spec.get("model") == model)
    spec = pack.data["workloads"][workload_id]
    spec["hyperparameters"]["fixed"].update(max_steps=TRAIN_STEPS, warmup_steps=1)
    spec["hyperparameters"]["fixed"].pop("checkpoint_steps", None)
    spec["criteria"] = pack.workload("pretrain-llama")["criteria"]
    context = WorkloadContext(workload_id=workload_id, spec=spec, pack=pack, data_root=REPO, run_dir=tmp_path, device="cpu")
    context.out_dir.mkdir(parents=True)

    pretrain.run(context)

    folder = tmp_path / "workloads" / workload_id
    losses = [decode_float(record["loss"]) for record in read_jsonl(folder / "steps.jsonl")]
    assert len(losses) == TRAIN_STEPS and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert read_json(folder / "config.json")["tokenizer"] == {"name": kind, "path": pack.data["tokenizers"][kind]["path"], "sha256": None, **entry}
    tokenizer = context.load_tokenizer()
    expected = [item.target for item in read_items(tokenizer, LAMBADA, pack.data["settings"]["lambada"]["items"])]
    assert [record["target_tokens"] for record in read_jsonl(folder / "lambada.jsonl")] == expected
    assert math.isfinite(read_json(folder / "validation.json")["loss"])


def test_model_vocabulary_smaller_than_tokenizer(tmp_path, tiktoken_file):
    from agent.workloads.common import WorkloadContext

    pack = copy.deepcopy(load_rule_pack("tiny-2026.1"))
    pack.data["tokenizers"]["llama3"] = {"kind": "tiktoken", "path": str(tiktoken_file), "sha256": None}
    pack.data["models"]["llama-tiny"]["tokenizer"] = "llama3"
    context = WorkloadContext(workload_id="pretrain-llama", spec=pack.workload("pretrain-llama"), pack=pack,
                              data_root=REPO, run_dir=tmp_path, device="cpu")

    with pytest.raises(ValueError, match="tokenizer llama3 has 50521 ids but model llama-tiny has vocab_size 32000"):
        context.load_tokenizer()


def test_clip_class_on_a_constructed_vocabulary(tmp_path):
    """CLIPTokenizer marks word ends with </w> and lower-cases, so it gets a small vocabulary of that form."""
    from paddlenlp.transformers.gpt.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("w", "o"), ("wo", "r"), ("l", "d</w>"), ("wor", "ld</w>")]
    vocabulary = [*symbols, *(symbol + "</w>" for symbol in symbols), *("".join(merge) for merge in merges),
                  "<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocabulary)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges))

    clip = load_tokenizer(tmp_path / "vocab.json", "bpe", "CLIPTokenizer")
    ids = clip.encode("Hello World")

    assert [clip.piece(token) for token in ids] == ["hello</w>", "world</w>"]
    assert clip.encode("hello world") == ids
    assert clip.decode(ids) == "hello world"
    assert (clip.bos_token_id, clip.eos_token_id, clip.pad_token_id) == (520, 521, 521)
    assert clip.vocab_size == len(vocabulary)


# The digest of a `bpe` tokenizer covers vocab.json and merges.txt.


def bpe_digest(folder: Path) -> str:
    """The digest staff compute, as docs/training.md shows: sha256sum of both files in byte order, hashed again."""
    command = ["sh", "-c", "sha256sum merges.txt vocab.json | sha256sum"]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True).stdout.split()[0]


def bpe_pack(folder: Path, sha256: str | None):
    """tiny-2026.1 with qwen2-tiny reading the `bpe` tokenizer in `folder`."""
    pack = copy.deepcopy(load_rule_pack("tiny-2026.1"))
    pack.data["tokenizers"]["qwen2-bpe"] = {"kind": "bpe", "class": "Qwen2Tokenizer", "path": str(folder / "vocab.json"), "sha256": sha256}
    pack.data["models"]["qwen2-tiny"]["tokenizer"] = "qwen2-bpe"
    return pack


@pytest.fixture
def bpe_folder(tmp_path):
    folder = tmp_path / "qwen2"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(NEOX / name, folder / name)
    return folder


def test_bpe_digest_covers_both_files(bpe_folder):
    pinned = bpe_digest(bpe_folder)

    record = verify_input_files(bpe_pack(bpe_folder, pinned), ["pretrain-qwen2"], REPO)["tokenizer qwen2-bpe"]

    assert record["sha256"] == pinned
    assert record["pinned"] is True
    assert record["path"] == str(bpe_folder / "vocab.json")
    assert [entry["path"] for entry in record["files"]] == ["merges.txt", "vocab.json"]
    assert record["sha256"] != hashlib.sha256((bpe_folder / "vocab.json").read_bytes()).hexdigest()


def test_bpe_changed_merges_rejected(bpe_folder):
    pack = bpe_pack(bpe_folder, bpe_digest(bpe_folder))
    lines = (bpe_folder / "merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    # Swap two merges: the vocabulary is unchanged, but text splits differently.
    lines[1], lines[2] = lines[2], lines[1]
    (bpe_folder / "merges.txt").write_text("".join(lines), encoding="utf-8")

    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["pretrain-qwen2"], REPO)

    assert error.value.code == "data_checksum_mismatch"
    assert "merges.txt" in error.value.message
    assert "tokenizer qwen2-bpe" in error.value.message


def test_bpe_missing_merges_rejected(bpe_folder):
    (bpe_folder / "merges.txt").unlink()

    with pytest.raises(AgentError) as error:
        verify_input_files(bpe_pack(bpe_folder, None), ["pretrain-qwen2"], REPO)

    assert error.value.code == "data_missing"
    assert str(bpe_folder / "merges.txt") in error.value.message


def test_frozen_pack_has_no_bpe_tokenizer():
    """demo-2026.1 was published while a `bpe` digest covered vocab.json only; a bpe entry there could not be fixed."""
    published = json.loads((REPO / "certification" / "rulepacks" / "published.json").read_text())["packs"]
    tokenizers = load_rule_pack("demo-2026.1").data["tokenizers"]

    assert "demo-2026.1" in published
    assert [name for name, entry in tokenizers.items() if entry["kind"] == "bpe"] == []
