"""How to train a transcoder set: :class:`TranscoderTrainConfig` (one frozen dataclass for
:func:`scrying.transcoders.train.train_transcoders`) and its named :data:`PRESETS`, each with
its measured cost on this machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scrying.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TranscoderTrainConfig:
    """How to train a transcoder set (see :data:`PRESETS`)."""

    n_features: int = 4096
    activation: Literal["relu", "topk"] = "topk"
    k: int | None = 32
    skip: bool = True
    l1: float = 0.0  # relu only: weight of the activation x decoder-norm penalty
    lr: float = 1e-3
    batch_size: int = 1024  # activation rows per Adam step
    seq_len: int = 128
    chunk_tokens: int = 32_768  # harvested per chunk (all layers kept in memory)
    total_tokens: int = 1_000_000
    eval_tokens: int = 8_192
    harvest_batch: int = 16  # windows per forward pass
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"  # of the weights and Adam state
    epochs: int = 1  # passes over each harvested chunk
    warmup_steps: int = 0  # 0 with final_lr_fraction 1: a constant learning rate
    final_lr_fraction: float = 1.0
    aux_coef: float = 0.0  # AuxK (Gao et al. 2024: 1/32); 0 turns it off
    k_aux: int = 256
    dead_after: int = 1_000_000  # rows without firing before a feature counts as dead
    bf16: bool = False  # harvest and train under bfloat16 autocast, chunk stored in bfloat16
    splice_tokens: int = 0  # held-out tokens for the spliced-in loss in the report (0: none)
    rare_every: int = 1000  # rare: fired, but less than once per this many held-out tokens
    # Initialisation (first chunk): centre_encoder starts b_enc at -W_enc x_mean; encoder_init
    # "data" points the encoder rows at seeded draws of the inputs minus their mean ("random":
    # Gaussian directions). Measured on Gemma 3 270M's layer 4, whose mean input holds 66% of its
    # mean square (160 single-layer steps of the recipe, held-out): random 55% dead features,
    # FVU 0.323; centred 19%, 0.306; centred + data 5%, 0.350; centred + data with the decoder
    # matched to the outputs' spread (match_decoder) 6%, 0.327 (AuxK starting 4x earlier: no change).
    centre_encoder: bool = False
    encoder_init: Literal["random", "data"] = "random"
    match_decoder: bool = False  # with "data": W_dec scaled so the first reconstructions match the outputs' spread
    # Layers that start from random rows even with encoder_init "data" (and no decoder matching):
    # on Gemma 3 270M after 5 recipe chunks, data-drawn rows left more features never firing on
    # 8,128 held-out tokens than random ones at layers 12-17 (26.5-45% against 14.5-28%) and fewer at
    # layers 0-11 (11-24% against 28-70%); on layer 16 alone (160 steps, 16,256 held-out tokens)
    # centred random rows 6.2% dead, FVU 0.348, data-drawn 36.9%, 0.385 (earlier AuxK: the same;
    # half and half: 62.5%, the random half dying). With layers 12-17 random, the recipe's run after
    # 5 chunks: 7.5-23% there, layers 0-11 unchanged (results/transcoders/five-chunks/).
    random_init_layers: tuple[int, ...] = ()
    # After the n_chunks of the schedule: this many chunks more at its final learning rate, each
    # starting by reviving, at every layer, the features that fire on none of the chunk's rows
    # (their encoder bias raised so each reaches the top k on revive_rate of them:
    # scrying.transcoders.revive); with revive_rare, every feature that fires on fewer than
    # revive_rate of them is lifted so. TopK only. A checkpoint that has not begun them resumes
    # into them whatever these settings were when it was written.
    revive_chunks: int = 0
    revive_rate: float = 1 / 500
    revive_rare: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ("relu", "topk"):
            raise ConfigError(f"TranscoderTrainConfig.activation must be 'relu' or 'topk' (JumpReLU sets are read, not trained), got {self.activation!r}")
        if (self.activation == "topk") != (self.k is not None):
            raise ConfigError(f"TranscoderTrainConfig.k is required for 'topk' and only for it, got k={self.k}")
        for name in ("n_features", "batch_size", "chunk_tokens", "total_tokens", "eval_tokens", "harvest_batch", "epochs", "k_aux",
                     "dead_after", "rare_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TranscoderTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ConfigError(f"TranscoderTrainConfig.seq_len must be >= 2, got {self.seq_len}")
        if self.chunk_tokens < self.seq_len:
            raise ConfigError(f"TranscoderTrainConfig.chunk_tokens ({self.chunk_tokens}) must hold one window of seq_len {self.seq_len}")
        if self.lr <= 0 or self.l1 < 0 or self.aux_coef < 0:
            raise ConfigError(f"TranscoderTrainConfig.lr must be > 0, l1 and aux_coef >= 0, got {self.lr}, {self.l1}, {self.aux_coef}")
        if self.warmup_steps < 0 or not 0 <= self.final_lr_fraction <= 1:
            raise ConfigError(f"TranscoderTrainConfig.warmup_steps must be >= 0 and final_lr_fraction in [0, 1], got {self.warmup_steps}, {self.final_lr_fraction}")
        if self.encoder_init not in ("random", "data"):
            raise ConfigError(f"TranscoderTrainConfig.encoder_init must be 'random' or 'data', got {self.encoder_init!r}")
        if self.match_decoder and self.encoder_init != "data":
            raise ConfigError("TranscoderTrainConfig.match_decoder applies to encoder_init='data' only")
        if self.random_init_layers and (self.encoder_init != "data" or min(self.random_init_layers) < 0):
            raise ConfigError(f"TranscoderTrainConfig.random_init_layers are layer indices (>= 0) for encoder_init='data', "
                              f"got {self.random_init_layers} with {self.encoder_init!r}")
        if self.revive_chunks < 0 or not 0 < self.revive_rate <= 1:
            raise ConfigError(f"TranscoderTrainConfig.revive_chunks must be >= 0 and revive_rate in (0, 1], got {self.revive_chunks}, {self.revive_rate}")
        if self.revive_chunks and self.activation != "topk":
            raise ConfigError("TranscoderTrainConfig.revive_chunks applies to activation 'topk' only")
        if self.splice_tokens < 0 or self.splice_tokens > self.eval_tokens:
            raise ConfigError(f"TranscoderTrainConfig.splice_tokens must be in 0..eval_tokens ({self.eval_tokens}), got {self.splice_tokens}")

    @classmethod
    def from_json(cls, stored: dict) -> TranscoderTrainConfig:
        """The config a checkpoint stored (``asdict``, through JSON: tuples come back as lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})

    @property
    def windows_per_chunk(self) -> int:
        return self.chunk_tokens // self.seq_len

    @property
    def n_chunks(self) -> int:
        return max(1, self.total_tokens // (self.windows_per_chunk * self.seq_len))

    @property
    def n_eval_windows(self) -> int:
        return max(1, self.eval_tokens // self.seq_len)

    @property
    def all_chunks(self) -> int:
        """The schedule's chunks and the revival chunks after them."""
        return self.n_chunks + self.revive_chunks

    @property
    def steps_per_chunk(self) -> int:
        rows = self.windows_per_chunk * (self.seq_len - 1)
        return self.epochs * -(-rows // self.batch_size)

    @property
    def total_steps(self) -> int:
        """The schedule's steps (the learning rate's span); the revival chunks' come after."""
        return self.n_chunks * self.steps_per_chunk

    @property
    def all_steps(self) -> int:
        """The schedule's steps and the revival chunks' (``all_chunks``)."""
        return self.all_chunks * self.steps_per_chunk


#: Gemma 3 270M (18 layers, d_model 640). Activations held per chunk: tokens x 18 x 2 x 640 x 4
#: bytes in float32 (quick 1.5 GB, default 3 GB, large 12 GB), half that with ``bf16``.
#: ``quick``: a smoke-level set, 4 chunks (measured 12 min a chunk on this 2-core machine under a
#: load average of 7; ~3 min a chunk idle); ``default``: 9 chunks of 32,768 tokens (295k tokens,
#: 4,096 TopK-32 features per layer): on the idle machine a chunk takes ~3 min (harvest 882
#: tok/s, 137 s of Adam steps: measured on the first chunk), ~27 min in all; ``recipe``: the
#: recipe of issue 21 for the mixed corpus (``scrying transcoders corpus --mix``): 8,192 TopK-64
#: features with a skip connection, 2.03M tokens in 31 chunks of 65,536 (992 Adam steps of 2,048
#: rows), AuxK (1/32, k_aux 256, dead after 262,144 rows), warmup 100 steps then cosine decay to
#: 10% of 3.2e-3 (first 8e-4; raised after benchmarks/transcoder_schedule.py), one pass per chunk
#: and float32 (on this CPU bf16 autocast made a step 3x slower, and a second pass over a chunk
#: costs the same steps as fresh text); held-out report on 32,768
#: tokens, spliced-in loss on 4,096; encoder rows drawn from the centred inputs and centred, the
#: decoder matched to the outputs' spread (``centre_encoder``, ``encoder_init="data"``,
#: ``match_decoder``: without them, 67% of layer 4's features were dead after 5 chunks), except
#: layers 12-17, which start from centred random rows (``random_init_layers``: there the data
#: start left more features dead); time: see the README (measured on the full run); ``large``:
#: ~10M tokens and 16k features, for a machine with a GPU and >= 32 GB of memory.
PRESETS: dict[str, TranscoderTrainConfig] = {
    "quick": TranscoderTrainConfig(n_features=2048, k=32, total_tokens=65_536, chunk_tokens=16_384, seq_len=64, eval_tokens=4_096),
    "default": TranscoderTrainConfig(n_features=4096, k=32, total_tokens=294_912, chunk_tokens=32_768, seq_len=128),
    "recipe": TranscoderTrainConfig(
        n_features=8192, k=64, total_tokens=2_031_616, chunk_tokens=65_536, seq_len=128, batch_size=2048, lr=3.2e-3, epochs=1,
        warmup_steps=100, final_lr_fraction=0.1, aux_coef=1 / 32, k_aux=256, dead_after=262_144, bf16=False,
        eval_tokens=32_768, splice_tokens=4_096, rare_every=1000, harvest_batch=8, centre_encoder=True, encoder_init="data",
        match_decoder=True, random_init_layers=(12, 13, 14, 15, 16, 17), revive_chunks=4, revive_rate=1 / 500,
        revive_rare=True,
    ),
    "large": TranscoderTrainConfig(n_features=16_384, k=64, total_tokens=10_000_000, chunk_tokens=131_072, seq_len=256, batch_size=4096),
}
