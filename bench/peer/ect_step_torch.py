#!/usr/bin/env python3
"""The benchmark's PyTorch peer: times one unit of work on the CPU and prints one JSON line.

mode "train" (default) is the ECT training step bench/ect-step.ts times on our backends: the student pass
D(x_t, t) with its backward, the target pass D(x_r, r) without gradient and with the student's dropout mask,
and an Adam update, on a UNet of the family docs/method.md section 3 describes, with EDM's preconditioning
(section 2). The other modes are bench/workloads.ts's: "1step" and "2step" consistency sampling (eval-mode
preconditioning, intermediate time 0.821), "heun" (EDM's deterministic sampler, 18 steps = 35 evaluations,
training-mode preconditioning) and "features" (the Fashion-MNIST classifier's feature layers, Float64 mean and
covariance, Fréchet distance to a fixed reference). "precision": "bf16" runs the network under
torch.autocast(bfloat16), PyTorch's own mixed precision on the CPU. "memory_format": "channels_last" keeps the
network's weights and the inputs in NHWC (PyTorch's own advice for convolutions on the CPU; NCHW, its default, is
what the benchmark's peer uses unless asked). Usage:

    python3 bench/peer/ect_step_torch.py '{"res": 28, "in_ch": 1, "ch": 32, "mult": [1, 2, 2], "blocks": 1,
                                          "attn": [7], "batch": 64, "steps": 3, "threads": 2, "mode": "train"}'

Output keys: torch (version), mode, precision, params, fwd_gflop (per image, convolutions, linear layers and
attention matmuls), sec_per_step (per unit of work), img_per_s, gflops (achieved: 4 forward passes per image
for a training step, one per network evaluation for the samplers, the classifier's for "features").
"""
import contextlib
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

SIGMA_DATA = 0.5
WARMUP_STEPS = 2   # untimed steps first (bench/train-step.ts counts on this number)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm in float32 whatever its input: under bf16 autocast the convolutions hand it bfloat16, which this
    PyTorch's CPU group_norm does not mix with float32 weights (our side keeps normalisation in float32 too)."""

    def forward(self, x):
        return super().forward(x.float())


def group_norm(channels):
    return GroupNorm32(min(32, channels // 4), channels, eps=1e-6)


class NoiseEmbedding(nn.Module):
    """c_noise -> sinusoidal features -> two linear layers with SiLU."""

    def __init__(self, ch, width):
        super().__init__()
        self.ch = ch
        self.fc1 = nn.Linear(ch, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, c_noise):
        half = self.ch // 2
        freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32) / (half - 1))
        angles = c_noise[:, None] * freqs[None, :]
        features = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        return F.silu(self.fc2(F.silu(self.fc1(features))))


class ResBlock(nn.Module):
    """GN-SiLU-conv, add the embedding, GN-SiLU-dropout-conv, skip; optional resampling and attention."""

    def __init__(self, cin, cout, width, dropout, resample=None, attention=False):
        super().__init__()
        self.resample = resample
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(width, cout)
        self.norm2, self.conv2 = group_norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout or resample else None
        self.attention = attention
        if attention:
            self.norm_attn, self.qkv, self.proj = group_norm(cout), nn.Conv2d(cout, 3 * cout, 1), nn.Conv2d(cout, cout, 1)

    def _resample(self, x):
        if self.resample == 'down':
            return F.avg_pool2d(x, 2)
        if self.resample == 'up':
            return F.interpolate(x, scale_factor=2, mode='nearest')
        return x

    def forward(self, x, emb):
        h = self.conv1(self._resample(F.silu(self.norm1(x))))
        h = F.silu(self.norm2(h + self.emb(emb)[:, :, None, None]))
        h = self.conv2(self.dropout(h))
        x = self._resample(x)
        out = (h + (self.skip(x) if self.skip is not None else x)) * math.sqrt(0.5)
        if self.attention:
            b, c, hh, ww = out.shape
            q, k, v = self.qkv(self.norm_attn(out)).reshape(b, 3, c, hh * ww).unbind(1)
            weights = torch.softmax(torch.einsum('bci,bcj->bij', q, k) / math.sqrt(c), dim=2)
            attended = torch.einsum('bij,bcj->bci', weights, v).reshape(b, c, hh, ww)
            out = (out + self.proj(attended)) * math.sqrt(0.5)
        return out


class UNet(nn.Module):
    """Encoder blocks kept for skips, a two-block middle, decoder blocks that each take one skip."""

    def __init__(self, res, in_ch, ch, mult, blocks, attn, dropout=0.2):
        super().__init__()
        width = 4 * ch
        self.embedding = NoiseEmbedding(ch, width)
        self.stem = nn.Conv2d(in_ch, ch, 3, padding=1)
        self.encoder, skips, cur, size = nn.ModuleList(), [ch], ch, res
        for level, m in enumerate(mult):
            if level > 0:
                size //= 2
                self.encoder.append(ResBlock(cur, cur, width, dropout, resample='down'))
                skips.append(cur)
            for _ in range(blocks):
                self.encoder.append(ResBlock(cur, ch * m, width, dropout, attention=size in attn))
                cur = ch * m
                skips.append(cur)
        self.middle = nn.ModuleList([ResBlock(cur, cur, width, dropout, attention=True), ResBlock(cur, cur, width, dropout)])
        self.decoder = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for _ in range(blocks + 1):
                self.decoder.append(ResBlock(cur + skips.pop(), ch * m, width, dropout, attention=size in attn))
                cur = ch * m
            if level > 0:
                size *= 2
                self.decoder.append(ResBlock(cur, cur, width, dropout, resample='up'))
        self.head_norm, self.head = group_norm(cur), nn.Conv2d(cur, in_ch, 3, padding=1)

    def forward(self, x, c_noise):
        emb = self.embedding(c_noise)
        h = self.stem(x)
        stored = [h]
        for block in self.encoder:
            h = block(h, emb)
            stored.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block in self.decoder:
            if block.resample != 'up':
                h = torch.cat([h, stored.pop()], dim=1)
            h = block(h, emb)
        return self.head(F.silu(self.head_norm(h)))


def denoise(net, x, sigma):
    """EDM's preconditioning in training mode (docs/method.md section 2)."""
    s = sigma[:, None, None, None]
    c_skip = SIGMA_DATA ** 2 / (s ** 2 + SIGMA_DATA ** 2)
    c_out = s * SIGMA_DATA / (s ** 2 + SIGMA_DATA ** 2).sqrt()
    c_in = 1 / (s ** 2 + SIGMA_DATA ** 2).sqrt()
    return c_skip * x + c_out * net(c_in * x, sigma.clamp_min(1e-20).log() / 4)


def forward_flops(net, shape):
    """FLOPs of one forward pass per image: 2 x multiply-adds of convolutions, linear layers and attention."""
    total = 0

    def conv_hook(module, inputs, output):
        nonlocal total
        total += 2 * output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups

    def linear_hook(module, inputs, output):
        nonlocal total
        total += 2 * output.numel() * module.in_features

    def attention_hook(module, inputs, output):
        nonlocal total
        c, n = output.shape[1], output.shape[2] * output.shape[3]
        total += 2 * 2 * c * n * n   # q^T k and v a^T, c n^2 multiply-adds each

    hooks = [m.register_forward_hook(conv_hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in net.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(attention_hook) for m in net.modules() if isinstance(m, ResBlock) and m.attention]
    with torch.no_grad():
        net(torch.zeros(1, *shape), torch.ones(1))
    for h in hooks:
        h.remove()
    return total


def ect_step(net, optimizer, images, generator):
    """One ECT step: t ~ logN(-1.1, 2.0), r = t (1 - n(t)/4) (sigmoid mapping, q = 4), shared noise, inv_dt weight."""
    batch = images.shape[0]
    t = torch.exp(-1.1 + 2.0 * torch.randn(batch, generator=generator))
    r = (t * (1 - (1 + 8 * torch.sigmoid(-t)) / 4)).clamp_min(0)
    noise = torch.randn(images.shape, generator=generator)
    rng = torch.get_rng_state()          # the dropout masks of the student pass, replayed for the target
    with torch.no_grad():
        target = denoise(net, images + r[:, None, None, None] * noise, r)
        target = torch.where(r[:, None, None, None] > 0, target, images)
    torch.set_rng_state(rng)
    student = denoise(net, images + t[:, None, None, None] * noise, t)
    distance = (student - target).flatten(1).pow(2).sum(1).sqrt()
    loss = (distance / (t - r)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


SIGMA_MAX, SIGMA_MIN, RHO, HEUN_STEPS = 80.0, 0.002, 7.0, 18   # EDM's sampler (lib/config/defaults.ts)
EVAL_SIGMA_MIN, MID_T = 0.003, 0.821                             # eval-mode boundary and 2-step time


def denoise_eval(net, x, sigma):
    """EDM's preconditioning in eval mode (consistency sampling): D(x, sigma_min) = x, lib/edm/precond.ts."""
    s = torch.full((x.shape[0],), sigma)
    shifted = sigma - EVAL_SIGMA_MIN
    c_skip = SIGMA_DATA ** 2 / (shifted ** 2 + SIGMA_DATA ** 2)
    c_out = shifted * SIGMA_DATA / math.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
    c_in = 1 / math.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
    return c_skip * x + c_out * net(c_in * x, s.log() / 4).float()


def heun_times():
    """t_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0 (lib/sample.ts heunTimeSteps)."""
    a, b = SIGMA_MAX ** (1 / RHO), SIGMA_MIN ** (1 / RHO)
    return [(a + i / (HEUN_STEPS - 1) * (b - a)) ** RHO for i in range(HEUN_STEPS)] + [0.0]


def sample(net, z, mode, generator):
    """1-step or 2-step consistency sampling, or Heun, from noise z (lib/sample.ts)."""
    if mode == 'heun':
        times = heun_times()
        x = z * times[0]
        for t_cur, t_next in zip(times[:-1], times[1:]):
            slope = (x - denoise(net, x, torch.full((x.shape[0],), t_cur)).float()) / t_cur
            euler = x + slope * (t_next - t_cur)
            if t_next == 0:
                x = euler
                break
            slope_next = (euler - denoise(net, euler, torch.full((x.shape[0],), t_next)).float()) / t_next
            x = x + (slope + slope_next) * (0.5 * (t_next - t_cur))
        return x
    x = denoise_eval(net, z * SIGMA_MAX, SIGMA_MAX)
    if mode == '2step':
        x = denoise_eval(net, x + MID_T * torch.randn(x.shape, generator=generator), MID_T)
    return x


class Classifier(nn.Module):
    """The Fashion-MNIST classifier's feature layers (lib/metrics/fmnist-classifier.ts): two 3x3 conv + ReLU +
    2x2 max-pool stages (16 and 32 channels) and a 128-wide dense layer with ReLU."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(7 * 7 * 32, 128)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))


def feature_stats(features):
    f = features.double()
    mean = f.mean(0)
    centred = f - mean
    return mean, centred.T @ centred / (f.shape[0] - 1)


def frechet(stats_a, stats_b):
    """|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr sqrt(sqrt(A) B sqrt(A)), by symmetric eigendecompositions."""
    (mu_a, cov_a), (mu_b, cov_b) = stats_a, stats_b
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    inner = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * inner)


def main():
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    torch.set_num_threads(int(cfg.get('threads', 2)))
    torch.manual_seed(0)
    mode, precision = cfg.get('mode', 'train'), cfg.get('precision', 'fp32')
    if mode not in ('train', '1step', '2step', 'heun', 'features') or precision not in ('fp32', 'bf16'):
        raise SystemExit(f'unknown mode {mode!r} or precision {precision!r}')
    autocast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if precision == 'bf16' else contextlib.nullcontext
    shape = (cfg.get('in_ch', 1), cfg.get('res', 28), cfg.get('res', 28))
    net = UNet(cfg.get('res', 28), cfg.get('in_ch', 1), cfg.get('ch', 32), cfg.get('mult', [1, 2, 2]),
               cfg.get('blocks', 1), cfg.get('attn', [7]))
    memory_format = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}.get(cfg.get('memory_format', 'contiguous'))
    if memory_format is None:
        raise SystemExit(f"unknown memory_format {cfg.get('memory_format')!r} (contiguous or channels_last)")
    net = net.to(memory_format=memory_format)
    generator = torch.Generator().manual_seed(1)
    batch, steps = cfg.get('batch', 64), cfg.get('steps', 3)
    flops = forward_flops(net, shape)
    if mode == 'train':
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        images = (torch.rand((batch, *shape), generator=generator) * 2 - 1).contiguous(memory_format=memory_format)
        net.train()

        def work():
            with autocast():
                ect_step(net, optimizer, images, generator)
        flops_per_image = 4 * flops
    elif mode == 'features':
        classifier = Classifier().eval()
        images = torch.rand((batch, 1, 28, 28), generator=generator) * 2 - 1
        dim = 128
        index = torch.arange(4 * dim * dim, dtype=torch.float64)
        reference = feature_stats((torch.sin(index * 12.9898) * 0.5 + (index % dim) / dim).reshape(4 * dim, dim))

        def work():
            with torch.inference_mode(), autocast():
                features = classifier(images).float()
            frechet(feature_stats(features), reference)
        flops_per_image = 2 * (28 * 28 * 16 * 9 + 14 * 14 * 32 * 9 * 16 + 7 * 7 * 32 * 128)
    else:
        net.eval()
        z = torch.randn((batch, *shape), generator=generator).contiguous(memory_format=memory_format)

        def work():
            with torch.inference_mode(), autocast():
                sample(net, z, mode, generator)
        flops_per_image = {'1step': 1, '2step': 2, 'heun': 2 * HEUN_STEPS - 1}[mode] * flops
    for _ in range(WARMUP_STEPS):
        work()
    # "verbose": oneDNN's log (one line per primitive execution, on stdout) of the timed units only
    verbose = torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON) if cfg.get('verbose') else contextlib.nullcontext()
    with verbose:
        started = time.perf_counter()
        for _ in range(steps):
            work()
        seconds = (time.perf_counter() - started) / steps
    print(json.dumps({
        'torch': torch.__version__, 'mode': mode, 'precision': precision, 'memory_format': cfg.get('memory_format', 'contiguous'),
        'params': sum(p.numel() for p in net.parameters()),
        'fwd_gflop': flops / 1e9, 'sec_per_step': seconds, 'img_per_s': batch / seconds,
        'gflops': flops_per_image * batch / seconds / 1e9,
    }))


if __name__ == '__main__':
    main()
