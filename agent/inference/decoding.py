"""Greedy decoding of a changing set of sequences with one shared key/value cache (continuous batching).

`RunningBatch` contains the sequences that decode together. The prompts that
arrive together are prefilled in one forward pass, left-padded to the
longest of them, and their caches then join the batch's cache. The batch's
cache is left-padded to the longest sequence too. In the prefill and in every
decode step, each row has an attention mask of 1 for its real tokens and 0
for padding, and explicit position ids that count only its real tokens, so
padding never changes a row's result in exact arithmetic. Each `step` feeds
every row its last token and returns each row's next token. `remove` drops
finished rows at once and trims the padding columns no remaining row needs.

The model is any PaddleNLP causal LM whose forward takes `position_ids`,
a 2-D `attention_mask`, `past_key_values` and `use_cache`, and returns
per layer a (key, value) pair of shape [batch, length, heads, head_dim]:
LlamaForCausalLM, Qwen2ForCausalLM and GPTForCausalLM in PaddleNLP 3.0.0b4.

NOTE: a batched matrix product may round differently from a one-row one, so
a near tie between two tokens could resolve differently than when decoded
alone. The tests found equal tokens for the tiny LLaMA and Qwen2 on the CPU,
for prompts of different lengths prefilled together.
NOTE: only the CPU path without flash attention has run. With
`use_flash_attention` on a GPU, the padded masks go to PaddleNLP's flash
attention call as explicit masks, a path not yet run here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Prefilled:
    """Prompts after one batched prefill: each one's first greedy token and real length, and their left-padded cache."""

    tokens: list[int]
    lengths: list[int]
    cache: tuple  # per layer (key, value), [rows, width, heads, head_dim]
    mask: Any  # int64 [rows, width]: 1 for a real token, 0 for left padding

    def __len__(self) -> int:
        return len(self.tokens)

    def select(self, keep: list[bool]) -> Prefilled | None:
        """Return the rows marked True without the padding columns that none of them needs, or None when no row is kept."""
        if all(keep):
            return self
        rows = [index for index, kept in enumerate(keep) if kept]
        if not rows:
            return None
        lengths = [self.lengths[index] for index in rows]
        cache, mask = _keep_rows(self.cache, self.mask, rows, max(lengths))
        return Prefilled([self.tokens[index] for index in rows], lengths, cache, mask)


class RunningBatch:
    """Sequences decoded together, one token each per step, over a left-padded shared key/value cache."""

    def __init__(self, model, pad_token_id: int = 0):
        self.model = model
        self.pad_token_id = pad_token_id  # the id of a prefill's left padding, which the mask hides, so any valid id works
        self.owners: list[Any] = []
        self.lengths: list[int] = []  # real tokens of each row in the cache
        self.last_tokens: list[int] = []  # tokens generated but not yet fed to the model
        self.cache: tuple | None = None  # per layer (key, value), [rows, width, heads, head_dim]
        self.mask = None  # int64 [rows, width]: 1 for a real token, 0 for left padding

    def __len__(self) -> int:
        return len(self.owners)

    @property
    def width(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def prefill(self, prompts: list[list[int]]) -> Prefilled:
        """Run the prompts through the model in one left-padded batch and return their greedy first tokens and cache."""
        import paddle

        if not prompts or not all(prompts):
            raise ValueError(f"prefill needs at least one prompt and a token in each, got lengths {[len(ids) for ids in prompts]}")
        lengths = [len(ids) for ids in prompts]
        width = max(lengths)
        input_ids = [[self.pad_token_id] * (width - length) + list(ids) for ids, length in zip(prompts, lengths)]
        # Positions count real tokens only, so each row gets the positions it has when decoded alone. Padding gets 0.
        position_ids = [[0] * (width - length) + list(range(length)) for length in lengths]
        mask = paddle.to_tensor([[0] * (width - length) + [1] * length for length in lengths], dtype="int64")
        outputs = self._forward(paddle.to_tensor(input_ids, dtype="int64"), paddle.to_tensor(position_ids, dtype="int64"), mask, None)
        return Prefilled(self._greedy(outputs.logits), lengths, outputs.past_key_values, mask)

    def add(self, owners: list[Any], prefilled: Prefilled) -> None:
        """Join prefilled sequences to the batch, one owner per row, so that the next step feeds each row its first token."""
        import paddle

        if len(owners) != len(prefilled):
            raise ValueError(f"{len(owners)} owners for {len(prefilled)} prefilled rows: pass one owner per row")
        if self.cache is None:
            self.cache, self.mask = prefilled.cache, prefilled.mask
        else:
            # Both are built before either is assigned, so a failed concat leaves the batch as it was.
            width = max(self.width, int(prefilled.mask.shape[1]))
            cache = tuple(tuple(paddle.concat([_left_pad(old, width), _left_pad(new, width)], axis=0) for old, new in zip(layer, added))
                          for layer, added in zip(self.cache, prefilled.cache))
            mask = paddle.concat([_left_pad(self.mask, width), _left_pad(prefilled.mask, width)], axis=0)
            self.cache, self.mask = cache, mask
        self.owners.extend(owners)
        self.lengths.extend(prefilled.lengths)
        self.last_tokens.extend(prefilled.tokens)

    def step(self) -> list[int]:
        """Feed every row its last token and return each row's next greedy token, in row order."""
        import paddle

        rows = len(self.owners)
        input_ids = paddle.to_tensor([[token] for token in self.last_tokens], dtype="int64")
        position_ids = paddle.to_tensor([[length] for length in self.lengths], dtype="int64")
        mask = paddle.concat([self.mask, paddle.ones([rows, 1], dtype="int64")], axis=1)
        outputs = self._forward(input_ids, position_ids, mask, self.cache)
        self.cache, self.mask = outputs.past_key_values, mask
        self.lengths = [length + 1 for length in self.lengths]
        self.last_tokens = self._greedy(outputs.logits)
        return list(self.last_tokens)

    def remove(self, keep: list[bool]) -> None:
        """Keep only the rows marked True, then drop the left padding columns that no kept row needs."""
        if all(keep):
            return
        rows = [index for index, kept in enumerate(keep) if kept]
        self.owners = [self.owners[index] for index in rows]
        self.lengths = [self.lengths[index] for index in rows]
        self.last_tokens = [self.last_tokens[index] for index in rows]
        if not rows:
            self.cache = self.mask = None
            return
        self.cache, self.mask = _keep_rows(self.cache, self.mask, rows, max(self.lengths))

    def clear(self) -> None:
        self.remove([False] * len(self.owners))

    def _forward(self, input_ids, position_ids, attention_mask, cache):
        import paddle

        with paddle.no_grad():
            return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                              past_key_values=cache, use_cache=True, return_dict=True)

    @staticmethod
    def _greedy(logits) -> list[int]:
        import paddle

        return paddle.argmax(logits[:, -1, :], axis=-1).numpy().reshape(-1).tolist()


def _left_pad(tensor, width: int):
    """Pad axis 1 of `tensor` with zeros on the left to `width`."""
    import paddle

    missing = width - int(tensor.shape[1])
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[1] = missing
    return paddle.concat([paddle.zeros(shape, dtype=tensor.dtype), tensor], axis=1)


def _keep_rows(cache: tuple, mask, rows: list[int], longest: int):
    """Return the cache and mask of `rows` only, cut to the last `longest` columns."""
    import paddle

    index = paddle.to_tensor(rows, dtype="int64")
    start = int(mask.shape[1]) - longest
    kept_cache = tuple(tuple(paddle.gather(tensor, index, axis=0)[:, start:] for tensor in layer) for layer in cache)
    return kept_cache, paddle.gather(mask, index, axis=0)[:, start:]
