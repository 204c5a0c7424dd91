"""The peers ``mgc bench`` measures mgc against: the same log-mel and MFCC, the same explicit parameters.

Each peer is a function ``make(params) -> (logmel, mfcc)``: two functions of a float32 clip at
``params["sr"]`` returning numpy arrays shaped like librosa's, ``(n_mels, n_frames)`` in dB and
``(n_mfcc, n_frames)``. A peer that is not installed raises :class:`ImportError` and becomes a row
saying how to install it; one that computes something else (another mel scale, another window,
another padding) still runs, and its parity column (largest difference from librosa) shows it.

Parameters (:data:`PARAMS`) are librosa's defaults written out: sr 22050, n_fft 2048, hop 512,
periodic Hann window, centred frames padded with zeros, power 2, 128 Slaney mels with Slaney
area normalisation from 0 Hz to sr/2, dB with ref 1, amin 1e-10, top_db 80, 20 orthonormal
DCT-II coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["INSTALL", "PARAMS", "PEERS", "make_peer"]

PARAMS = {
    "sr": 22050,
    "n_fft": 2048,
    "hop_length": 512,
    "n_mels": 128,
    "fmin": 0.0,
    "fmax": 11025.0,
    "n_mfcc": 20,
    "top_db": 80.0,
}

#: Peer -> how to install it.
INSTALL = {
    "librosa": "pip install librosa",
    "torchaudio": "pip install torch torchaudio",
    "torchaudio-gpu": "a CUDA GPU and torch built for it (pip install torch torchaudio)",
    "librosax": "pip install librosax",
    "nnAudio": "pip install torch nnAudio",
    "essentia": "pip install essentia",
    "audioflux": "pip install audioflux",
    "kaldi-native-fbank": "pip install kaldi-native-fbank",
}

Pair = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _mel_args(p: dict) -> dict:
    return dict(
        sr=p["sr"],
        n_fft=p["n_fft"],
        hop_length=p["hop_length"],
        win_length=None,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=p["n_mels"],
        fmin=p["fmin"],
        fmax=p["fmax"],
        htk=False,
        norm="slaney",
    )


def _mfcc_mel_args(p: dict) -> dict:
    """The mel arguments of an ``mfcc`` call, whose own ``norm`` is the DCT's (the mel norm is Slaney's default)."""
    return {k: v for k, v in _mel_args(p).items() if k != "norm"}


def _db(power: np.ndarray, top_db: float) -> np.ndarray:
    """The dB of librosa's ``power_to_db(ref=1, amin=1e-10, top_db)``, in numpy (for peers that give power only)."""
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return np.maximum(db, db.max() - top_db)


def _mgc(p: dict) -> Pair:
    from mgc import kernels

    mel = _mel_args(p)
    return (
        lambda y: kernels.log_melspectrogram(y, ref=1.0, amin=1e-10, top_db=p["top_db"], **mel),
        lambda y: kernels.mfcc(y=y, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=0, **_mfcc_mel_args(p)),
    )


def _librosa(p: dict) -> Pair:
    import librosa

    mel = _mel_args(p)
    return (
        lambda y: librosa.power_to_db(
            librosa.feature.melspectrogram(y=y, **mel), ref=1.0, amin=1e-10, top_db=p["top_db"]
        ),
        lambda y: librosa.feature.mfcc(
            y=y, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=0, **_mfcc_mel_args(p)
        ),
    )


def _torch_mel_kwargs(p: dict, torch) -> dict:
    return dict(
        n_fft=p["n_fft"],
        win_length=p["n_fft"],
        hop_length=p["hop_length"],
        f_min=p["fmin"],
        f_max=p["fmax"],
        n_mels=p["n_mels"],
        window_fn=torch.hann_window,
        power=2.0,
        normalized=False,
        center=True,
        pad_mode="constant",
        norm="slaney",
        mel_scale="slaney",
    )


def _torchaudio_on(p: dict, gpu: bool) -> Pair:
    """The transforms of torchaudio on the CPU, or on the first CUDA device (the copies there and back timed)."""
    import torch
    import torchaudio

    if gpu and not torch.cuda.is_available():
        raise ImportError("no CUDA device visible to torch", name="a CUDA GPU")
    device = torch.device("cuda" if gpu else "cpu")
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=p["sr"], **_torch_mel_kwargs(p, torch)).to(device)
    db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=p["top_db"]).to(device)
    mfcc = torchaudio.transforms.MFCC(
        sample_rate=p["sr"],
        n_mfcc=p["n_mfcc"],
        dct_type=2,
        norm="ortho",
        log_mels=False,
        melkwargs=_torch_mel_kwargs(p, torch),
    ).to(device)

    def run(transform, y):
        with torch.inference_mode():
            return transform(torch.from_numpy(y).to(device)).cpu().numpy()  # .cpu() waits for a device

    return lambda y: run(lambda x: db(mel(x)), y), lambda y: run(mfcc, y)


def _torchaudio(p: dict) -> Pair:
    return _torchaudio_on(p, gpu=False)


def _torchaudio_gpu(p: dict) -> Pair:
    return _torchaudio_on(p, gpu=True)


def _nnaudio(p: dict) -> Pair:
    import torch
    from nnAudio import features

    common = dict(
        sr=p["sr"],
        n_fft=p["n_fft"],
        win_length=p["n_fft"],
        n_mels=p["n_mels"],
        hop_length=p["hop_length"],
        window="hann",
        center=True,
        pad_mode="constant",
        htk=False,
        fmin=p["fmin"],
        fmax=p["fmax"],
        norm=1,
        trainable_mel=False,
        trainable_STFT=False,
        verbose=False,
    )
    mel = features.MelSpectrogram(power=2.0, **common)
    # MFCC's own `norm` is the DCT's; its mel layer then keeps MelSpectrogram's default norm=1 (Slaney's area
    # normalisation), the one set above: passing both is a TypeError in nnAudio 0.3.
    mel_of_mfcc = {k: v for k, v in common.items() if k != "norm"}
    mfcc = features.MFCC(n_mfcc=p["n_mfcc"], norm="ortho", ref=1.0, amin=1e-10, top_db=p["top_db"], **mel_of_mfcc)

    def logmel(y):
        with torch.inference_mode():
            return _db(mel(torch.from_numpy(y)[None])[0].numpy(), p["top_db"])

    def cepstra(y):
        with torch.inference_mode():
            return mfcc(torch.from_numpy(y)[None])[0].numpy()

    return logmel, cepstra


def _librosax(p: dict) -> Pair:
    import functools

    import jax
    import librosax

    mel = _mel_args(p)
    logmel = jax.jit(
        lambda y: librosax.power_to_db(
            librosax.feature.melspectrogram(y=y, **mel), ref=1.0, amin=1e-10, top_db=p["top_db"]
        )
    )
    mfcc = jax.jit(
        functools.partial(
            librosax.feature.mfcc, n_mfcc=p["n_mfcc"], dct_type=2, norm="ortho", lifter=0, **_mfcc_mel_args(p)
        )
    )
    return (
        lambda y: np.asarray(logmel(y).block_until_ready()),
        lambda y: np.asarray(mfcc(y=y).block_until_ready()),
    )


def _audioflux(p: dict) -> Pair:
    import audioflux
    from audioflux.type import SpectralFilterBankNormalType, SpectralFilterBankStyleType

    exp = int(math.log2(p["n_fft"]))
    pad = p["n_fft"] // 2  # audioflux does not centre frames: pad as librosa does, then frame
    frames = dict(radix2_exp=exp, samplate=p["sr"], low_fre=p["fmin"], high_fre=p["fmax"], slide_length=p["hop_length"])

    def logmel(y):
        S, _ = audioflux.mel_spectrogram(
            np.pad(y, pad),
            num=p["n_mels"],
            style_type=SpectralFilterBankStyleType.SLANEY,
            normal_type=SpectralFilterBankNormalType.AREA,
            **frames,
        )
        return _db(np.asarray(S, np.float32), p["top_db"])

    def cepstra(y):
        cc, _ = audioflux.mfcc(np.pad(y, pad), cc_num=p["n_mfcc"], mel_num=p["n_mels"], **frames)
        return np.asarray(cc, np.float32)

    return logmel, cepstra


def _kaldi(p: dict) -> Pair:
    import kaldi_native_fbank as knf

    def options(mfcc: bool):
        opts = knf.MfccOptions() if mfcc else knf.FbankOptions()
        frame = opts.frame_opts
        frame.samp_freq = p["sr"]
        frame.frame_length_ms = 1000.0 * p["n_fft"] / p["sr"]
        frame.frame_shift_ms = 1000.0 * p["hop_length"] / p["sr"]
        frame.dither = 0.0
        frame.preemph_coeff = 0.0
        frame.remove_dc_offset = False
        frame.window_type = "hanning"
        frame.snip_edges = False
        opts.mel_opts.num_bins = p["n_mels"]
        opts.mel_opts.low_freq = p["fmin"]
        opts.mel_opts.high_freq = p["fmax"]
        if mfcc:
            opts.num_ceps = p["n_mfcc"]
            opts.use_energy = False
        else:
            opts.use_power = True
            opts.use_log_fbank = True
        return opts

    def run(y, mfcc: bool):
        computer = knf.OnlineMfcc(options(True)) if mfcc else knf.OnlineFbank(options(False))
        computer.accept_waveform(p["sr"], y.tolist())
        computer.input_finished()
        return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], np.float32).T

    # Kaldi's log is natural: 10 / ln(10) makes it dB.
    return lambda y: _db(np.exp(run(y, False)), p["top_db"]), lambda y: run(y, True)


def _essentia(p: dict) -> Pair:
    import essentia.standard as es

    windowing = es.Windowing(type="hann", size=p["n_fft"], normalized=False, zeroPhase=False)
    spectrum = es.Spectrum(size=p["n_fft"])
    bands = es.MelBands(
        numberBands=p["n_mels"],
        sampleRate=p["sr"],
        lowFrequencyBound=p["fmin"],
        highFrequencyBound=p["fmax"],
        inputSize=p["n_fft"] // 2 + 1,
        type="power",
        warpingFormula="slaneyMel",
        weighting="linear",
        normalize="unit_tri",
    )
    dct = es.DCT(inputSize=p["n_mels"], outputSize=p["n_mfcc"], dctType=2)

    def power(y):
        frames = es.FrameGenerator(np.pad(y, p["n_fft"] // 2), frameSize=p["n_fft"], hopSize=p["hop_length"])
        return np.array([bands(spectrum(windowing(f)) ** 2) for f in frames], np.float32).T

    def cepstra(y):
        db = _db(power(y), p["top_db"])
        return np.array([dct(column) for column in db.T.astype(np.float32)], np.float32).T

    return lambda y: _db(power(y), p["top_db"]), cepstra


#: Name -> maker, mgc first, librosa (the reference) second.
PEERS: dict[str, Callable[[dict], Pair]] = {
    "mgc": _mgc,
    "librosa": _librosa,
    "torchaudio": _torchaudio,
    "torchaudio-gpu": _torchaudio_gpu,
    "librosax": _librosax,
    "nnAudio": _nnaudio,
    "essentia": _essentia,
    "audioflux": _audioflux,
    "kaldi-native-fbank": _kaldi,
}


def make_peer(name: str, params: dict | None = None) -> Pair:
    """The ``(logmel, mfcc)`` functions of peer ``name`` (ImportError when it is not installed)."""
    return PEERS[name]({**PARAMS, **(params or {})})
