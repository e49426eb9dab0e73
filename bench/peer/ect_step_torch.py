#!/usr/bin/env python3
"""The benchmark's PyTorch peer: times one ECT training step on the CPU and prints one JSON line.

The step is the one bench/ect-step.ts times on our backends: the student pass D(x_t, t) with its backward,
the target pass D(x_r, r) without gradient and with the student's dropout mask, and an Adam update, on a
UNet of the family docs/method.md section 3 describes, with EDM's preconditioning (section 2). Usage:

    python3 bench/peer/ect_step_torch.py '{"res": 28, "in_ch": 1, "ch": 32, "mult": [1, 2, 2], "blocks": 1,
                                          "attn": [7], "batch": 64, "steps": 3, "threads": 2}'

Output keys: torch (version), params, fwd_gflop (per image, convolutions, linear layers and attention
matmuls), sec_per_step, img_per_s, gflops (achieved, 4 forward passes per image: student forward and
backward count 3, the target 1).
"""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

SIGMA_DATA = 0.5
WARMUP_STEPS = 2   # untimed steps first (bench/train-step.ts counts on this number)


def group_norm(channels):
    return nn.GroupNorm(min(32, channels // 4), channels, eps=1e-6)


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


def main():
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    torch.set_num_threads(int(cfg.get('threads', 2)))
    torch.manual_seed(0)
    shape = (cfg.get('in_ch', 1), cfg.get('res', 28), cfg.get('res', 28))
    net = UNet(cfg.get('res', 28), cfg.get('in_ch', 1), cfg.get('ch', 32), cfg.get('mult', [1, 2, 2]),
               cfg.get('blocks', 1), cfg.get('attn', [7]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    generator = torch.Generator().manual_seed(1)
    batch, steps = cfg.get('batch', 64), cfg.get('steps', 3)
    images = torch.rand((batch, *shape), generator=generator) * 2 - 1
    net.train()
    for _ in range(WARMUP_STEPS):
        ect_step(net, optimizer, images, generator)
    started = time.perf_counter()
    for _ in range(steps):
        ect_step(net, optimizer, images, generator)
    seconds = (time.perf_counter() - started) / steps
    flops = forward_flops(net, shape)
    print(json.dumps({
        'torch': torch.__version__, 'params': sum(p.numel() for p in net.parameters()),
        'fwd_gflop': flops / 1e9, 'sec_per_step': seconds, 'img_per_s': batch / seconds,
        'gflops': 4 * flops * batch / seconds / 1e9,
    }))


if __name__ == '__main__':
    main()
