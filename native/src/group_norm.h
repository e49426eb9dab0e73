// GroupNorm with an optional per-(sample, channel) shift before it, an optional SiLU and an optional elementwise
// mask (dropout) after it, fused into a few passes over each sample (NHWC memory): the UNet's
// "dropout(silu(group_norm(x + emb_shift)))".
#pragma once
#include <cstdint>

namespace ect {

// x is [batch, pixels, channels] (pixels = H * W); channels split into `groups` equal, contiguous groups.
struct GroupNormShape {
  int64_t batch, pixels, channels, groups;
};

// y = act(gamma * (u - mean_g) / sqrt(var_g + eps) + beta) with u = x + shift[b, c] (shift may be null),
// mean/var over each sample's group (pixels x channels/groups values); act = SiLU when `silu`, else identity;
// y is then multiplied by mask [batch, pixels, channels] when mask is not null (a constant: it gets no gradient).
// When stats is not null, each sample's per-channel center (group mean minus shift) and rstd are written there
// ([batch, 2, channels]) for groupNormBackward.
// y is written as float32 into y or, when yBf16 is not null (y then null), as bfloat16 into yBf16 (bf16FromFloat of
// each float32 value: the copy a bf16 convolution reading y would convert, without the float32 array).
void groupNormForward(const GroupNormShape& s, const float* x, const float* shift, const float* mask,
                      const float* gamma, const float* beta, float eps, bool silu, float* y, float* stats,
                      uint16_t* yBf16 = nullptr);

// Gradients of groupNormForward for the upstream gradient dy: dx [batch, pixels, channels], dgamma and dbeta
// [channels], and dshift [batch, channels] when dshift is not null (the same as summing dx over pixels). With
// stats (groupNormForward's, of the same x, shift, gamma and beta) the statistics are read, not computed again.
void groupNormBackward(const GroupNormShape& s, const float* dy, const float* x, const float* shift,
                       const float* mask, const float* gamma, const float* beta, float eps, bool silu, float* dx, float* dgamma,
                       float* dbeta, float* dshift, const float* stats);

}  // namespace ect
