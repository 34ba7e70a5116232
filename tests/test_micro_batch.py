"""Micro-batching with gradient accumulation (issue 16): the same training with a lower peak memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from choirbench import ChoirbenchError
from choirbench.data_prep.prepared import ExcerptSampler, load_excerpt
from choirbench.harness import build
from choirbench.methods.sf import SourceFilter
from choirbench.methods.sf_model import SourceFilterNet
from choirbench.methods.unet import UNet
from choirbench.training import accumulate_gradients, micro_batches
import test_sf
from conftest import Killed, KillableSampler

TINY = {**test_sf.TINY, "batch_size": 5}  # the tiny sf of test_sf.py, with a batch micro-batches can split unevenly


pytestmark = pytest.mark.usefixtures("one_thread")


def test_micro_batches_cover_the_batch_once_with_their_shares():
    batch = (torch.arange(15.0), None, torch.arange(30.0).reshape(15, 2))
    for size, lengths in [(5, [5, 5, 5]), (4, [4, 4, 4, 3]), (1, [1] * 15), (0, [15]), (15, [15])]:
        pieces = micro_batches(batch, size)
        assert [len(p[0]) for p, _ in pieces] == lengths
        assert [share for _, share in pieces] == [n / 15 for n in lengths]
        assert all(p[1] is None for p, _ in pieces)
        assert torch.equal(torch.cat([p[2] for p, _ in pieces]), batch[2])
    assert micro_batches(batch, 0)[0][0] is batch  # the whole batch is passed as it is


def _float64(batch: tuple) -> tuple:
    return tuple(None if t is None else t.to(torch.complex128 if t.is_complex() else torch.float64) for t in batch)


def _gradients(method: SourceFilter, batch, micro: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = SourceFilterNet(method.architecture()).to(dtype)
    loss = accumulate_gradients(model, method.loss, batch, micro, 0)
    return {"loss": loss.detach(), **{name: p.grad.clone() for name, p in model.named_parameters()}}


@pytest.mark.parametrize("supervised", [False, True])
def test_accumulated_gradient_equals_the_whole_batch_gradient(tiny_dataset, supervised):
    """Micro-batches of 2, 2, 1 (and 1 x 5) of a batch of 5 give the batch's loss and gradient.

    In float64, to 1e-10 of the largest gradient (measured: 6e-13; the summation order differs). Not
    in float32: the paper's loss is ill-conditioned there (its log term's gradient is
    1 / (|X| + 1e-7) on near-silent bins), so a change of 1e-7 in the input moves the float32
    gradient by up to 4 %, and micro-batches, whose matrix products round differently from the whole
    batch's, by up to 3 %: float32 rounding, not a different gradient (:func:`test_no_coupling_...`
    shows in float32 that an excerpt's result does not depend on the rest of its batch).
    """
    method = SourceFilter({**TINY, "supervised": supervised})
    mix, voices, f0 = ExcerptSampler(tiny_dataset, "train", seed=0, excerpt_s=1.0, with_voices=True).batch(5)
    batch = _float64(method.make_batch(mix, voices, f0, generator=torch.Generator().manual_seed(0)))
    whole = _gradients(method, batch, 0)
    assert whole["loss"].dtype == torch.float64
    for micro in (2, 1):
        pieces = _gradients(method, batch, micro)
        assert torch.isclose(pieces["loss"], whole["loss"], rtol=1e-12, atol=0)
        for name, grad in whole.items():
            scale = grad.abs().max()
            assert scale > 0, name  # a gradient of zero would compare trivially
            assert torch.allclose(pieces[name], grad, rtol=0, atol=1e-10 * scale), (name, micro)
    # the check can fail: an unweighted sum of the micro-batch losses is not the batch's gradient
    torch.manual_seed(0)
    model = SourceFilterNet(method.architecture()).double()
    for piece, _ in micro_batches(batch, 2):
        method.loss(model, piece).backward()
    assert not all(torch.allclose(p.grad, whole[n], rtol=0, atol=1e-10 * whole[n].abs().max())
                   for n, p in model.named_parameters())


def test_no_coupling_across_the_batch(tiny_dataset):
    """float32, bit for bit: an excerpt's voices, loss and gradient do not depend on its batch-mates.

    What micro-batching needs of the network: nothing normalised across the batch (the sf model has
    LayerNorm per frame and ExcerptNorm per excerpt, no BatchNorm). The U-Net's BatchNorm fails the
    same check (which is why it refuses micro_batch).
    """
    method = SourceFilter({**TINY, "supervised": True})
    mix, voices, f0 = ExcerptSampler(tiny_dataset, "train", seed=0, excerpt_s=1.0, with_voices=True).batch(3)
    batch = method.make_batch(mix, voices, f0, generator=torch.Generator().manual_seed(0))
    first_with = {}
    for mate in (1, 2):
        pair = tuple(None if t is None else t[[0, mate]] for t in batch)
        torch.manual_seed(0)
        model = SourceFilterNet(method.architecture())
        out = model(pair[0], pair[2], pair[3], pair[4])
        loss = method.loss(model, tuple(None if t is None else t[:1] for t in pair))  # excerpt 0's own loss
        grads = torch.autograd.grad(out[0].square().sum(), list(model.parameters()))
        first_with[mate] = (out[0].detach(), loss.detach(), grads)
    (out_a, loss_a, grads_a), (out_b, loss_b, grads_b) = first_with[1], first_with[2]
    assert torch.equal(out_a, out_b) and torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))

    unet = UNet({"batch_size": 2, "channels": [2, 4, 4, 8, 8, 8], "cond_channels": [4, 4, 4], "dropout": 0.0})
    net = unet.build(0).train()
    mags = torch.rand(3, 513, 32)
    f0_grid = torch.full((3, 32), 220.0)
    first = [net(mags[[0, m]], f0_grid[[0, m]])[0] for m in (1, 2)]
    assert not torch.equal(first[0], first[1])


def _train(tiny_dataset, out, micro: int, kill_at=None, steps: int = 4):
    params = {**TINY, "supervised": True, "steps": steps, "valid_every": 2, "checkpoint_every": 2,
              "micro_batch": micro}
    valid = [load_excerpt(tiny_dataset, "song4", ("S", "A", "T", "B"), ("1",) * 4, 0, 16000) for _ in range(3)]
    sampler = KillableSampler(tiny_dataset, kill_at, seed=1, excerpt_s=1.0, with_voices=True)
    path = SourceFilter(params).fit(sampler, valid, out, seed=3)
    log = np.genfromtxt(out / "train_log.csv", delimiter=",", names=True, dtype=None, encoding=None)
    return torch.load(path, weights_only=True), log, sampler


def test_changing_micro_batch_does_not_make_a_resume_stale(tiny_dataset, tmp_path):
    """A run killed at step 3 (last.pt at step 2) restarts with micro_batch 3 and resumes from step 2."""
    whole, log_whole, _ = _train(tiny_dataset, tmp_path / "whole", 0)
    with pytest.raises(Killed):
        _train(tiny_dataset, tmp_path / "cut", 0, kill_at=3)
    resumed, log_resumed, sampler = _train(tiny_dataset, tmp_path / "cut", 3)
    assert sampler.batches == 2  # steps 3 and 4 only
    assert not list((tmp_path / "cut").glob("*.stale.pt"))
    assert resumed["step"] == whole["step"] == 4
    assert list(log_resumed["split"]) == list(log_whole["split"])
    head = [i for i, step in enumerate(log_whole["step"]) if step <= 2]  # from the checkpoint: the same run
    assert np.array_equal(log_resumed["loss"][head], log_whole["loss"][head])
    # and a finished model loads under an entry that micro-batches differently
    SourceFilter({**TINY, "supervised": True, "steps": 4, "valid_every": 2, "checkpoint_every": 2,
                  "micro_batch": 1}).load(tmp_path / "cut" / "model.pt")


@pytest.mark.parametrize("micro, message", [(-1, "micro_batch"), (6, "micro_batch must be 0 .* at most "
                                                                      r"batch_size \(5\)"), (2.5, "micro_batch")])
def test_micro_batch_out_of_range_is_refused_at_load(micro, message):
    with pytest.raises(ChoirbenchError, match=message):
        SourceFilter({**TINY, "micro_batch": micro})
    with pytest.raises(ChoirbenchError, match=r"methods\.sf-us\.params\.micro_batch" if micro != 6 else message):
        build({"id": "sf-us", "model": "sf", "params": {**TINY, "micro_batch": micro}})


def test_unet_refuses_micro_batches_because_of_batch_norm():
    assert UNet({"batch_size": 4, "micro_batch": 4}).params["micro_batch"] == 4  # the whole batch: fine
    with pytest.raises(ChoirbenchError, match="micro_batch must be 0.*batch normalisation"):
        UNet({"batch_size": 4, "micro_batch": 2})
