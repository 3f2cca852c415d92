"""Transformer encoder-decoder for translation, with incremental decoding.

Read top to bottom: positions, attention, feed-forward, layers, the model. Shapes in the
comments use B (batch), S (source length), T (target length), d (d_model), H (heads),
Dh (head size), V (vocabulary).

Token ids are fixed across the toolkit (nmt.vocab): pad 0, unk 1, bos 2, eos 3. Source and
target share one (joint SentencePiece) vocabulary, so one embedding matrix serves the encoder,
the decoder and the output projection when `tie_embeddings` is set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.config import ModelConfig, check
from nmt.vocab import PAD

# The longest sequence a model may be built for. The positional table is computed when the
# model is built, never stored, so no weights file bounds it: a config could otherwise ask a
# 5 MB file for a table of gigabytes (max_positions x d_model float32s). At this cap it
# takes 256 KiB per unit of d_model (64 MiB at d_model 256); the models here use 1024.
MAX_POSITIONS = 65_536


def sinusoidal_positions(num_positions: int, dim: int) -> Tensor:
    """Positions 0..N-1 as [sin | cos] halves, timescales 1..10000 (fairseq/tensor2tensor)."""
    half = dim // 2
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (N, d)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout whose mask compares 16 random bits a value with `p` (so `p` is taken
    to the nearest 1/65,536, and the kept values scaled by the exact inverse of what is
    kept). The bits come four to a 64-bit draw: on CPU the mask costs ~6 ms per 4M values
    against ~14 ms for `torch.rand` (a float a draw) and ~30 ms for `F.dropout`'s Bernoulli
    sampling; training the small model ~1.15x faster in float32 (docs/training.md)."""
    if not training or p == 0.0:
        return x
    drop = round(p * 65536)  # of 65,536 values of 16 bits, those below -32768 + drop go
    n = x.numel()
    draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    keep = draws.view(torch.int16)[:n].view(x.shape) >= drop - 32768
    scale = 65536 / (65536 - drop)
    if x.dtype != torch.float32:  # a scale rounded to bf16/fp16 would bias the expectation
        return x * keep * scale
    # One product with a float mask that holds the scale: its backward is one product too
    # (4.1 ms forward and backward for a (240, 17, 1024) tensor against 6.5-9.7 ms).
    return x * keep.to(x.dtype).mul_(scale)


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, p: float
) -> Tensor:
    """Scaled dot-product attention, (B, H, T, Dh) x (B, H, S, Dh) -> (B, H, T, Dh).

    `mask` (broadcastable to (B, H, T, S)) is True where attention is allowed. Written out
    rather than `F.scaled_dot_product_attention`: for translation-sized sequences on CPU the
    fused kernels measured ~5x slower in bf16 training on this project's machines.
    """
    scores = (q @ k.transpose(-1, -2)) * (q.size(-1) ** -0.5)  # (B, H, T, S)
    if causal:
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(S - T + 1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = dropout(scores.float().softmax(dim=-1).to(v.dtype), p, True)
    return weights @ v


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused [Wq; Wk; Wv] input projection."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.in_proj(x).view(B, T, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        if cache is not None:  # incremental decoding: append this step's keys and values
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = attention(q, k, v, mask, causal, self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, d))


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder to the encoder output; Wq, then fused [Wk; Wv]."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj = nn.Linear(d, d)
        self.kv_proj = nn.Linear(d, 2 * d)
        self.out_proj = nn.Linear(d, d)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        B, S, d = memory.shape
        k, v = self.kv_proj(memory).view(B, S, 2, self.heads, d // self.heads).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)  # (B, H, S, Dh) each

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        B, T, d = x.shape
        q = self.q_proj(x).view(B, T, self.heads, d // self.heads).transpose(1, 2)
        y = attention(q, kv[0], kv[1], mask, False, self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, d))


class FeedForward(nn.Module):
    def __init__(self, d: int, ffn: int, activation: str, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.act = F.relu if activation == "relu" else F.gelu
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class Sublayer(nn.Module):
    """Residual wrapper: pre-norm `x + f(LN(x))` or post-norm `LN(x + f(x))`."""

    def __init__(self, d: int, pre_norm: bool, eps: float, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d, eps=eps)
        self.pre_norm = pre_norm
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, fn) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(fn(self.norm(x)))
        return self.norm(x + self.dropout(fn(x)))


class EncoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(c.d_model, c.heads, c.attn_dropout)
        self.ffn = FeedForward(c.d_model, c.ffn, c.activation, c.dropout)
        self.sub_attn = Sublayer(c.d_model, c.pre_norm, c.layer_norm_eps, c.dropout)
        self.sub_ffn = Sublayer(c.d_model, c.pre_norm, c.layer_norm_eps, c.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.sub_attn(x, lambda h: self.self_attn(h, mask=mask))
        return self.sub_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(c.d_model, c.heads, c.attn_dropout)
        self.cross_attn = CrossAttention(c.d_model, c.heads, c.attn_dropout)
        self.ffn = FeedForward(c.d_model, c.ffn, c.activation, c.dropout)
        self.sub_self = Sublayer(c.d_model, c.pre_norm, c.layer_norm_eps, c.dropout)
        self.sub_cross = Sublayer(c.d_model, c.pre_norm, c.layer_norm_eps, c.dropout)
        self.sub_ffn = Sublayer(c.d_model, c.pre_norm, c.layer_norm_eps, c.dropout)

    def forward(
        self,
        x: Tensor,
        memory_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor,
        cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        # With a cache, x holds only the newest position, which may attend to every cached
        # one: no mask needed. Without, a causal mask; right padding needs no extra mask
        # because a real position never sits after a padded one.
        x = self.sub_self(x, lambda h: self.self_attn(h, causal=cache is None, cache=cache))
        x = self.sub_cross(x, lambda h: self.cross_attn(h, memory_kv, memory_mask))
        return self.sub_ffn(x, self.ffn)


class Transformer(nn.Module):
    """Encoder-decoder Transformer with tied embeddings and sinusoidal positions."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        check(
            c.max_positions <= MAX_POSITIONS,
            "model.max_positions",
            f"must be at most {MAX_POSITIONS:,} (its positional table would take "
            f"{c.max_positions * c.d_model * 4 / 2**20:,.0f} MiB), got {c.max_positions:,}",
        )
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=PAD)
        self.tgt_embed = (
            self.embed
            if c.tie_embeddings
            else nn.Embedding(c.vocab_size, c.d_model, padding_idx=PAD)
        )
        self.register_buffer(
            "positions", sinusoidal_positions(c.max_positions, c.d_model), persistent=False
        )
        self.embed_scale = math.sqrt(c.d_model)
        self.dropout = Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.dec_layers))
        # A final LayerNorm belongs to pre-norm stacks only (post-norm layers end normalised).
        self.enc_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.pre_norm else None
        self.dec_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.pre_norm else None
        self.output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()
        if c.tie_embeddings:
            self.output.weight = self.embed.weight

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        for emb in (self.embed, self.tgt_embed):
            nn.init.normal_(emb.weight, mean=0.0, std=self.config.d_model**-0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def build_bytes(config: ModelConfig) -> int:
        """Bytes that building the model of `config` allocates: its parameters (tied ones
        once) and its buffers, the positional table included, which no file stores. Counted
        on the meta device, so counting allocates nothing."""
        with torch.device("meta"):
            model = Transformer(config)
        return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))

    def _embed(self, emb: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        T = tokens.size(1)
        if offset + T > self.config.max_positions:
            raise ValueError(
                f"sequence of length {offset + T} exceeds model.max_positions "
                f"({self.config.max_positions})"
            )
        x = emb(tokens) * self.embed_scale + self.positions[offset : offset + T]
        return self.dropout(x)

    @staticmethod
    def padding_mask(src: Tensor) -> Tensor:
        """(B, S) tokens -> (B, 1, 1, S) boolean mask, True where attention is allowed."""
        return (src != PAD)[:, None, None, :]

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S) source ids -> encoder output (B, S, d) and its attention mask (B, 1, 1, S)."""
        mask = self.padding_mask(src)
        x = self._embed(self.embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        if self.enc_norm is not None:
            x = self.enc_norm(x)
        return x, mask

    def memory_kv(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Cross-attention keys and values of every decoder layer, computed once per source."""
        return [layer.cross_attn.memory_kv(memory) for layer in self.decoder]

    def decode(
        self,
        tgt_in: Tensor,
        memory_kv: list[tuple[Tensor, Tensor]],
        memory_mask: Tensor,
        caches: list[dict[str, Tensor]] | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Decoder states (B, T, d) for target inputs (B, T) starting at position `offset`."""
        x = self._embed(self.tgt_embed, tgt_in, offset)
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory_kv[i], memory_mask, None if caches is None else caches[i])
        if self.dec_norm is not None:
            x = self.dec_norm(x)
        return x

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for source (B, S) and shifted target (B, T)."""
        memory, mask = self.encode(src)
        return self.output(self.decode(tgt_in, self.memory_kv(memory), mask))

    def init_state(self, src: Tensor) -> DecoderState:
        memory, mask = self.encode(src)
        return DecoderState(self.memory_kv(memory), mask, [{} for _ in self.decoder], 0)

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Log-probabilities (B, V) of the next token after `tokens` (B,), updating `state`."""
        return F.log_softmax(self.decode_logits(tokens, state), dim=-1)

    def decode_logits(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """The raw logits (B, V), float32, of the next token after `tokens` (B,), updating
        `state` (what a repetition penalty acts on, as CTranslate2's does)."""
        x = self.decode(
            tokens[:, None], state.memory_kv, state.memory_mask, state.caches, state.step
        )
        state.step += 1
        return self.output(x[:, -1]).float()


class DecoderState:
    """What incremental decoding carries between steps: cross-attention K/V, masks, caches."""

    def __init__(
        self,
        memory_kv: list[tuple[Tensor, Tensor]],
        memory_mask: Tensor,
        caches: list[dict[str, Tensor]],
        step: int,
    ):
        self.memory_kv, self.memory_mask, self.caches, self.step = (
            memory_kv,
            memory_mask,
            caches,
            step,
        )

    def select(self, index: Tensor) -> None:
        """Keep (and reorder) batch rows `index`: for beam search and finished sentences."""
        self.memory_kv = [
            (k.index_select(0, index), v.index_select(0, index)) for k, v in self.memory_kv
        ]
        self.memory_mask = self.memory_mask.index_select(0, index)
        for cache in self.caches:
            for key in cache:
                cache[key] = cache[key].index_select(0, index)
