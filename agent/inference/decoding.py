"""Greedy decoding of a changing set of sequences with one shared key/value cache (continuous batching).

`RunningBatch` contains the sequences that decode together. A new sequence is
prefilled on its own (batch of one, no padding, so its first token is
exactly the one it gets when decoded alone), and its cache then joins the
batch's cache. The batch's cache is left-padded to the longest sequence:
each row has an attention mask of 1 for its real tokens and 0 for padding,
and explicit position ids that count only its real tokens, so padding
never changes a row's result in exact arithmetic. Each `step` feeds every row its last token
and returns each row's next token. `remove` drops finished rows at once
and trims the padding columns no remaining row needs.

The model is any PaddleNLP causal LM whose forward takes `position_ids`,
a 2-D `attention_mask`, `past_key_values` and `use_cache`, and returns
per layer a (key, value) pair of shape [batch, length, heads, head_dim]:
LlamaForCausalLM, Qwen2ForCausalLM and GPTForCausalLM in PaddleNLP 3.0.0b4.

NOTE: a batched matrix product may round differently from a one-row one, so
a near tie between two tokens could resolve differently than when decoded
alone. The tests found equal tokens for the tiny LLaMA and Qwen2 on the CPU.
NOTE: only the CPU path without flash attention has run. With
`use_flash_attention` on a GPU, the padded decode mask goes to PaddleNLP's
flash attention call as an explicit mask, a path not yet run here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Prefilled:
    """One prompt after its prefill: its first generated token and its key/value cache."""

    token: int
    cache: tuple
    length: int


class RunningBatch:
    """Sequences decoded together, one token each per step, over a left-padded shared key/value cache."""

    def __init__(self, model):
        self.model = model
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

    def prefill(self, prompt_ids: list[int]) -> Prefilled:
        """Run the prompt alone through the model and return its greedy first token and its cache."""
        import paddle

        count = len(prompt_ids)
        outputs = self._forward(paddle.to_tensor([prompt_ids], dtype="int64"), paddle.arange(count, dtype="int64").unsqueeze(0),
                                paddle.ones([1, count], dtype="int64"), None)
        return Prefilled(self._greedy(outputs.logits)[0], outputs.past_key_values, count)

    def add(self, owner: Any, prefilled: Prefilled) -> None:
        """Join a prefilled sequence to the batch, so that the next step feeds it `prefilled.token`."""
        import paddle

        new_mask = paddle.ones([1, prefilled.length], dtype="int64")
        if self.cache is None:
            self.cache, self.mask = prefilled.cache, new_mask
        else:
            # Both are built before either is assigned, so a failed concat leaves the batch as it was.
            width = max(self.width, prefilled.length)
            cache = tuple(tuple(paddle.concat([_left_pad(old, width), _left_pad(new, width)], axis=0) for old, new in zip(layer, added))
                          for layer, added in zip(self.cache, prefilled.cache))
            mask = paddle.concat([_left_pad(self.mask, width), _left_pad(new_mask, width)], axis=0)
            self.cache, self.mask = cache, mask
        self.owners.append(owner)
        self.lengths.append(prefilled.length)
        self.last_tokens.append(prefilled.token)

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
        import paddle

        if all(keep):
            return
        rows = [index for index, kept in enumerate(keep) if kept]
        self.owners = [self.owners[index] for index in rows]
        self.lengths = [self.lengths[index] for index in rows]
        self.last_tokens = [self.last_tokens[index] for index in rows]
        if not rows:
            self.cache = self.mask = None
            return
        index = paddle.to_tensor(rows, dtype="int64")
        start = self.width - max(self.lengths)
        self.cache = tuple(tuple(paddle.gather(tensor, index, axis=0)[:, start:] for tensor in layer) for layer in self.cache)
        self.mask = paddle.gather(self.mask, index, axis=0)[:, start:]

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
