"""``sf``: the differentiable source-filter model of Schulze-Forster et al. (2023), unsupervised or supervised.

Unsupervised training compares the mixture with the *sum* of the synthesised
voices (training and validation alike), so it never needs, nor touches, an
isolated voice; supervised training compares each synthesised voice with the
true one. Outputs: ``synthesis`` (the synthesised voices) or ``masking``
(ratio masks |S_j| / sum_k |S_k| on a 2048/256 STFT applied to the mixture;
``mask_power`` 2 makes them power ratios).
Network: :mod:`choirbench.methods.sf_model`; synthesiser and loss:
:mod:`choirbench.methods.sf_dsp`; training: the shared loop in
:mod:`choirbench.training`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from choirbench import HOP, SAMPLE_RATE, ChoirbenchError
from choirbench.methods import sf_dsp
from choirbench.registry import Method, register
from choirbench.params import NON_NEGATIVE, POSITIVE, Limit
from choirbench.methods.sf_model import Architecture, SourceFilterNet
from choirbench.checkpoints import load_weights
from choirbench.training import (RUNTIME_PARAMS, TRAIN_DEFAULTS, TRAIN_LIMITS, TrainSettings, check_micro_batch,
                                 resolve_device, train)

log = logging.getLogger(__name__)

ARCH_KEYS = tuple(Architecture().to_dict())
OUTPUTS = ("masking", "synthesis")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
SEPARATION_NOISE_SEED = 0
"""Synthesis draws white noise; separation uses a fixed seed so that its output is reproducible."""
SYNTH_CHUNK_EXCERPTS = 4
"""Excerpts synthesised and masked together after the network has run on the whole batch (bounds memory)."""

PAPER_PARAMS: dict = {
    **Architecture().to_dict(),
    "loss_fft_sizes": [2048, 1024, 512, 256, 128, 64],
    "excerpt_s": 4.0,
    **TRAIN_DEFAULTS,
    "batch_size": 15, "lr": 1e-4, "weight_decay": 1e-5, "lr_decay": 0.98, "lr_decay_every": 200 * 20,
    "steps": 500_000, "valid_every": 200, "patience": 200, "checkpoint_every": 200,
    # CPU: micro-batches of 8 (the same training, gradients accumulated) hold a step under 2 GB peak;
    # config/paper.yaml adds bf16 autocast for under 3 s (README, Speed and memory)
    "micro_batch": 8,
}
"""The paper's configuration (for ``config/paper.yaml``): 5.6 M parameters, batch 15, 4-s excerpts."""


@register
class SourceFilter(Method):
    """Differentiable source-filter separation (harmonic + noise source, LSF all-pole vocal tract)."""

    name = "sf"
    trainable = True
    # long recordings: blocks of the paper's 4-s training excerpt (each block is normalised and run through the
    # GRUs as one excerpt, as in training), equal-length blocks batched through the network
    block_s = 4.0
    overlap_s = 0.5
    defaults = {
        "supervised": False,
        "output": "masking",
        "device": "auto",
        "precision": "fp32",        # network in fp32, or bf16 mixed precision (autocast)
        # CPU default sizes (config/paper.yaml restores the paper's: see PAPER_PARAMS)
        "encoder_hidden": 64, "encoder_layers": 3, "embedding": 64, "decoder_hidden": 128, "mlp_layers": 3,
        "n_harmonics": 101, "filter_order": 20, "noise_bands": 40,
        "lsf_min_gap_hz": 0.0,        # minimum LSF spacing (0: none, as published)
        "noise_gain_max": 1.0,        # noise-gain ceiling (published: 1)
        "slope_corner_hz": 200.0, "slope_db_per_octave": 6.0,   # source slope: flat below, -6 dB/oct above
        "encoder_fft": 512, "sample_rate": SAMPLE_RATE,
        "loss_fft_sizes": [2048, 1024, 512, 256, 128, 64],
        "mask_fft": 2048, "mask_hop": 256,
        "mask_power": 1.0,           # masks |S_j|^p / sum_k |S_k|^p: 1 = the paper's magnitude ratio, 2 = Wiener-like
        "excerpt_s": 2.0,            # training excerpt length (cut from the sampler's excerpts)
        "max_valid_examples": 32,    # validation subset (fixed, first examples) to bound validation time
        **TRAIN_DEFAULTS,
        "steps": 400, "batch_size": 8, "lr": 1e-3, "weight_decay": 1e-5, "lr_decay": 0.98,
        "lr_decay_every": 100, "valid_every": 100, "patience": 10, "checkpoint_every": 100, "grad_clip": 1.0,
    }
    limits = {**TRAIN_LIMITS, "output": Limit(choices=OUTPUTS), "precision": Limit(choices=tuple(PRECISIONS)),
              "mask_power": POSITIVE, "excerpt_s": POSITIVE, "max_valid_examples": NON_NEGATIVE,
              "n_harmonics": POSITIVE, "filter_order": POSITIVE, "noise_bands": POSITIVE,
              "lsf_min_gap_hz": NON_NEGATIVE, "sample_rate": POSITIVE, "mask_fft": POSITIVE, "mask_hop": POSITIVE}

    smoke_params = {"encoder_hidden": 16, "embedding": 16, "decoder_hidden": 16, "steps": 2, "batch_size": 2,
                    "valid_every": 1, "checkpoint_every": 1, "excerpt_s": 1.0, "max_valid_examples": 1}

    # how a trained model separates and where it runs: a checkpoint loads under an entry differing only in these
    inference_params = frozenset({"output", "mask_power", "mask_fft", "mask_hop", "device"}) | RUNTIME_PARAMS

    def __init__(self, params: dict | None = None, *, device: str | None = None):
        super().__init__(params, device=device or "cpu")
        p = self.params
        if p["output"] not in OUTPUTS:
            raise ChoirbenchError(f"methods.sf.params.output must be one of {OUTPUTS}, got {p['output']!r}")
        if p["precision"] not in PRECISIONS:
            raise ChoirbenchError(f"methods.sf.params.precision must be one of {sorted(PRECISIONS)}, "
                                  f"got {p['precision']!r}")
        # micro-batches are exact here: the loss is a mean over equal-length excerpts (and voices), and the
        # network has no coupling across the batch (LayerNorm per frame, ExcerptNorm per excerpt)
        check_micro_batch(p, "methods.sf.params")
        if p["filter_order"] % 2:
            raise ChoirbenchError(f"methods.sf.params.filter_order must be even, got {p['filter_order']}")
        if not p["mask_power"] > 0:
            raise ChoirbenchError(f"methods.sf.params.mask_power must be positive, got {p['mask_power']}")
        for key in ("noise_gain_max", "slope_corner_hz"):
            if not p[key] > 0:
                raise ChoirbenchError(f"methods.sf.params.{key} must be positive, got {p[key]}")
        if not p["slope_db_per_octave"] >= 0:
            raise ChoirbenchError(f"methods.sf.params.slope_db_per_octave must be >= 0, got {p['slope_db_per_octave']}")
        widest = p["sample_rate"] / 2 / (p["filter_order"] + 1)
        if not 0 <= p["lsf_min_gap_hz"] < widest:
            raise ChoirbenchError(f"methods.sf.params.lsf_min_gap_hz must be in [0, {widest:g}) Hz for "
                                  f"filter_order {p['filter_order']}, got {p['lsf_min_gap_hz']}")
        self.torch_device = resolve_device(device or p["device"])
        self.model: SourceFilterNet | None = None

    @property
    def uses_isolated_voices(self) -> bool:
        return bool(self.params["supervised"])

    # ------------------------------------------------------------------ building blocks
    def architecture(self) -> Architecture:
        return Architecture(**{k: self.params[k] for k in ARCH_KEYS})

    def _autocast(self):
        return PRECISIONS[self.params["precision"]]

    def make_batch(self, mixtures: np.ndarray, voices: np.ndarray | None, f0: np.ndarray,
                   generator: torch.Generator | None = None, n_samples: int | None = None,
                   with_references: bool | None = None) -> tuple:
        """Tensors on the device plus the parameter-free excitation spectra (computed without autograd).

        ``n_samples`` crops to the training excerpt length. Unsupervised batches
        carry no voices even if given.
        """
        n = mixtures.shape[-1] if n_samples is None else min(n_samples, mixtures.shape[-1])
        dev = self.torch_device
        mix = torch.as_tensor(mixtures[..., :n], dtype=torch.float32, device=dev)
        f0_t = torch.as_tensor(f0[..., : n // HOP], dtype=torch.float32, device=dev)
        refs = None
        if self.params["supervised"] if with_references is None else with_references:
            if voices is None:
                raise ChoirbenchError("supervised sf training needs isolated voices (sampler with_voices=True)")
            refs = torch.as_tensor(voices[..., :n], dtype=torch.float32, device=dev)
        harm, noise = self._excitation(f0_t, n, generator=generator)
        return mix, refs, f0_t, harm, noise

    def _excitation(self, f0: torch.Tensor, n_samples: int, **noise) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`sf_dsp.excitation_spectra` with this model's rate, harmonics and source slope; ``noise``:
        its ``generator`` or ``generators``."""
        p = self.params
        return sf_dsp.excitation_spectra(f0, n_samples, p["sample_rate"], p["n_harmonics"],
                                         slope_corner_hz=p["slope_corner_hz"],
                                         slope_db_per_octave=p["slope_db_per_octave"], **noise)

    def loss(self, model: SourceFilterNet, batch: tuple) -> torch.Tensor:
        """Multi-scale spectral loss: mixture vs sum of voices (unsupervised) or voice vs voice (supervised)."""
        mix, refs, f0, harm, noise = batch
        voices = model(mix, f0, harm, noise, self._autocast())
        sizes = tuple(self.params["loss_fft_sizes"])
        if refs is None:
            return sf_dsp.multiscale_spectral_loss(mix, voices.sum(1), sizes)
        return sf_dsp.multiscale_spectral_loss(refs, voices, sizes)

    # ------------------------------------------------------------------ training
    def fit(self, train_sampler, valid, out_dir: Path, seed: int, provenance: dict | None = None) -> Path:
        p = self.params
        supervised = bool(p["supervised"])
        if p["sample_rate"] != SAMPLE_RATE:
            raise ChoirbenchError(f"methods.sf.params.sample_rate must be {SAMPLE_RATE}")
        torch.manual_seed(seed)
        model = SourceFilterNet(self.architecture()).to(self.torch_device)
        log.info("sf (%s): %d parameters on %s", "supervised" if supervised else "unsupervised",
                 sum(t.numel() for t in model.parameters()), self.torch_device)
        valid_batches = self._valid_batches(valid, supervised)
        n_train = int(round(p["excerpt_s"] * SAMPLE_RATE)) // HOP * HOP

        def to_batch(raw):
            if len(raw) == 4:  # validation: fixed noise so validation losses compare
                gen = torch.Generator(device=self.torch_device).manual_seed(raw[3])
                return self.make_batch(raw[0], raw[1], raw[2], generator=gen)
            return self.make_batch(raw[0], raw[1] if supervised else None, raw[2], n_samples=n_train)

        settings = TrainSettings.from_params(p)
        path = train(model, self.loss, train_sampler, valid_batches, out_dir, settings, seed, method=self,
                     provenance=provenance, to_batch=to_batch)
        self.load(path)
        return path

    def _valid_batches(self, valid, supervised: bool) -> list:
        """Fixed validation batches (mixtures, voices | None, f0, noise seed), grouped by shape."""
        examples = list(valid or [])[: self.params["max_valid_examples"]]
        groups: dict[tuple, list] = {}
        for e in examples:
            groups.setdefault((len(e.f0), len(e.mixture)), []).append(e)
        batches = []
        size = self.params["batch_size"]
        for group in groups.values():
            for i in range(0, len(group), size):
                chunk = group[i:i + size]
                voices = np.stack([e.voices for e in chunk]).astype(np.float32) if supervised else None
                batches.append((np.stack([e.mixture for e in chunk]).astype(np.float32), voices,
                                np.stack([e.f0 for e in chunk]).astype(np.float32), 1000 + len(batches)))
        return batches

    def load_state(self, state: dict, path: Path) -> None:
        """The network from a checked checkpoint: its architecture params equal this entry's (Method.load)."""
        model = SourceFilterNet(self.architecture())
        load_weights(model, state["model"], path)
        self.model = model.to(self.torch_device).eval()

    # ------------------------------------------------------------------ inference
    def _require_model(self) -> SourceFilterNet:
        if self.model is None:
            raise RuntimeError("sf: call fit() or load() before separating")
        return self.model

    def _check_input(self, mixture, sr, f0) -> tuple[np.ndarray, np.ndarray]:
        if sr != self.params["sample_rate"]:
            raise ChoirbenchError(f"sf works at {self.params['sample_rate']} Hz, got a {sr} Hz mixture")
        f0 = np.atleast_2d(np.asarray(f0, dtype=np.float32))
        return np.asarray(mixture, dtype=np.float32), f0

    @torch.inference_mode()
    def _infer(self, mixtures: np.ndarray, sr: int, f0s: np.ndarray, output: str
               ) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """(voices [B, J, N] in ``output`` mode, the controls [B, ...] they came from).

        The network runs on the whole batch (its matrix products are more efficient on more rows); the
        synthesis and masking, whose temporaries grow by tens of MB per excerpt, on
        :data:`SYNTH_CHUNK_EXCERPTS` excerpts at a time. Each excerpt's noise is drawn from its own
        generator seeded :data:`SEPARATION_NOISE_SEED`, so an excerpt separates the same alone or in a batch.
        """
        model = self._require_model()
        p = self.params
        if sr != p["sample_rate"]:
            raise ChoirbenchError(f"sf works at {p['sample_rate']} Hz, got a {sr} Hz mixture")
        dev = self.torch_device
        mix = torch.as_tensor(np.asarray(mixtures, dtype=np.float32), device=dev)
        B, N = mix.shape
        f0_t = torch.as_tensor(np.asarray(f0s, dtype=np.float32)[..., : N // HOP], device=dev)
        controls = model.controls(mix, f0_t, self._autocast())
        out = np.empty((B, f0_t.shape[1], N), dtype=np.float32)
        for a in range(0, B, SYNTH_CHUNK_EXCERPTS):
            b = min(B, a + SYNTH_CHUNK_EXCERPTS)
            gens = [torch.Generator(device=dev).manual_seed(SEPARATION_NOISE_SEED) for _ in range(a, b)]
            harm, noise = self._excitation(f0_t[a:b], N, generators=gens)
            voices = model.synthesize({k: v[a:b] for k, v in controls.items()}, harm, noise, N)
            del harm, noise
            if output == "masking":
                voices = self._mask(mix[a:b], voices)
            out[a:b] = voices.cpu().numpy()
        return out, controls

    def separate(self, mixture, sr, f0, notes=None, *, output: str | None = None, **kwargs) -> np.ndarray:
        mixture, f0 = self._check_input(mixture, sr, f0)
        return self._separate(mixture[None], sr, f0[None], output)[0][0]

    def separate_with_parameters(self, mixture, sr, f0, notes=None, *, output: str | None = None, **kwargs
                                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The separated voices and :meth:`export_parameters`' arrays, from one pass of the network."""
        mixture, f0 = self._check_input(mixture, sr, f0)
        voices, controls = self._separate(mixture[None], sr, f0[None], output)
        return voices[0], self._parameter_list(controls, sr)[0]

    def separate_batch(self, mixtures, sr, f0s, notes=None, *, parameters: bool = True, output: str | None = None,
                       **kwargs) -> tuple[np.ndarray, list[dict[str, np.ndarray] | None]]:
        """B excerpts through the network at once: voices [B, J, N] and each excerpt's parameters (or None)."""
        voices, controls = self._separate(mixtures, sr, f0s, output)
        return voices, self._parameter_list(controls, sr) if parameters else [None] * len(voices)

    def _separate(self, mixtures, sr, f0s, output: str | None) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """(voices [B, J, N] in the output mode asked for, the controls they came from)."""
        output = output or self.params["output"]
        if output not in OUTPUTS:
            raise ChoirbenchError(f"sf output must be one of {OUTPUTS}, got {output!r}")
        return self._infer(mixtures, sr, f0s, output)

    @torch.inference_mode()
    def _mask(self, mix: torch.Tensor, voices: torch.Tensor) -> torch.Tensor:
        """M_j = |S_j|^p / sum_k |S_k|^p applied to the mixture's STFT: mix [B, N], voices [B, J, N] -> [B, J, N].

        One torch STFT of all B (J + 1) signals and one inverse of all B J masked spectra (the fastest here);
        |S|^p from the squared magnitude (no complex abs).
        """
        n_fft, hop = self.params["mask_fft"], self.params["mask_hop"]
        B, J, N = voices.shape
        window = sf_dsp.hann(n_fft, mix.device)
        specs = torch.stft(torch.cat([mix[:, None], voices], 1).reshape(B * (J + 1), N), n_fft, hop, window=window,
                           return_complex=True).reshape(B, J + 1, n_fft // 2 + 1, -1)
        voice = specs[:, 1:]
        power = voice.real.square().add_(voice.imag.square())  # 4x faster than a sum over a last axis of 2
        p = self.params["mask_power"]
        mags = power if p == 2 else power.pow_(p / 2)
        total = mags.sum(1, keepdim=True)
        masks = torch.where(total > 1e-12, mags.div_(total.clamp_min(1e-12)), 1.0 / J)
        out = torch.istft((masks * specs[:, :1]).reshape(B * J, *specs.shape[-2:]), n_fft, hop, window=window,
                          length=N)
        return out.reshape(B, J, N)

    @torch.inference_mode()
    def export_parameters(self, mixture, sr, f0) -> dict[str, np.ndarray]:
        """What the model 'believes' per voice: F0 used, amplitudes, noise, LSFs and vocal-tract envelope.

        Arrays: f0_hz [J, L], harmonic_amplitude [J, L], noise_gain [J, L],
        lsf_hz [J, L, P], noise_bands [J, n_bands], envelope_db [J, 257, L]
        (20 log10 |1/A| on a 512-point grid), freqs_hz [257], times_s [L].
        """
        model = self._require_model()
        mixture, f0 = self._check_input(mixture, sr, f0)
        mix = torch.as_tensor(mixture[None], device=self.torch_device)
        controls = model.controls(mix, torch.as_tensor(f0[None], device=self.torch_device), self._autocast())
        return self._parameter_list(controls, sr)[0]

    @staticmethod
    @torch.inference_mode()
    def _parameter_list(c: dict[str, torch.Tensor], sr: int) -> list[dict[str, np.ndarray]]:
        """The arrays of :meth:`export_parameters` for every excerpt of a batch of controls.

        The envelopes of the whole batch in one call, then each excerpt's arrays as copies of its rows.
        """
        env = sf_dsp.envelope_db(c["lsf"], 512).transpose(-1, -2).cpu().numpy()   # [B, J, 257, L]
        L = c["f0"].shape[-1]
        batch = {"f0_hz": c["f0"], "harmonic_amplitude": c["amplitude"], "noise_gain": c["noise_gain"],
                 "lsf_hz": c["lsf"] * sr / (2 * np.pi), "noise_bands": c["noise_bands"]}
        batch = {k: v.cpu().numpy() for k, v in batch.items()}
        freqs = (np.arange(257) * sr / 512).astype(np.float32)
        times = (np.arange(L) * HOP / sr).astype(np.float32)
        return [{**{k: v[b].astype(np.float32) for k, v in batch.items()},
                 "envelope_db": env[b].astype(np.float32), "freqs_hz": freqs.copy(), "times_s": times.copy(),
                 "sr": np.array(sr)} for b in range(len(env))]
