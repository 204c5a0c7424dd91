"""Render one synthetic track from a genre description (numpy and scipy only).

The track is built like a sampler works: every distinct note (instrument,
pitch, length) and every drum hit is rendered once as a short array, then added
into its bus at each onset. Buses are panned into the output channels and the
master goes through a tone filter, a soft clipper and peak normalisation. All
randomness comes from the generator passed in, so a seed fixes the track.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
from scipy import signal

from .styles import GENRES_TABLE, INSTRUMENTS, Drums, Genre, Instrument, Part

_TABLE_SIZE = 4096  # one-period wavetable; a power of two so phase wraps with a mask
_MAX_HARMONICS = 24
_QUALITIES = {
    "": (0, 4, 7),
    "m": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "m7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
    "mmaj7": (0, 3, 7, 11),
    "5": (0, 7, 12),
    "m5": (0, 7, 12),
    "sus2": (0, 2, 7),
    "msus2": (0, 2, 7),
    "add9": (0, 4, 7, 14),
    "madd9": (0, 3, 7, 14),
    "9": (0, 4, 7, 10, 14),
    "m9": (0, 3, 7, 10, 14),
    "dim": (0, 3, 6),
    "mdim": (0, 3, 6),
}
_NUMERALS = {"i": 0, "ii": 2, "iii": 4, "iv": 5, "v": 7, "vi": 9, "vii": 11}
_NUMERAL_RE = re.compile(r"^(b?)(iii|ii|iv|vii|vi|v|i)(.*)$", re.IGNORECASE)
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])
_BLUES = np.array([0, 3, 5, 6, 7, 10])


def parse_chord(numeral: str) -> tuple[int, tuple[int, ...], bool]:
    """Split ``'bVII7'`` into (root semitones above the key, intervals, is_minor)."""
    match = _NUMERAL_RE.match(numeral)
    if match is None:
        raise ValueError(f"bad chord numeral {numeral!r}")
    flat, roman, suffix = match.groups()
    minor = roman.islower()
    root = (_NUMERALS[roman.lower()] - (1 if flat else 0)) % 12
    quality = suffix if suffix.startswith("m") and minor else ("m" if minor else "") + suffix
    if quality not in _QUALITIES:
        raise ValueError(f"bad chord quality in {numeral!r}")
    return root, _QUALITIES[quality], minor


@lru_cache(maxsize=1)
def _sines() -> np.ndarray:
    phase = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    k = np.arange(1, _MAX_HARMONICS + 1)[:, None]
    return np.sin(2 * np.pi * k * phase).astype(np.float32)


def _table(inst: Instrument, n_harmonics: int, extra_slope: float = 0.0) -> np.ndarray:
    k = np.arange(1, n_harmonics + 1)
    amps = k ** -(inst.slope + extra_slope) * np.where(k % 2 == 0, 1.0 - inst.odd_only, 1.0)
    table = amps.astype(np.float32) @ _sines()[:n_harmonics]
    return table / np.max(np.abs(table))


def render_note(inst: Instrument, midi: float, seconds_on: float, sr: int) -> np.ndarray:
    """One note: wavetable oscillator(s) times an attack-decay-sustain-release envelope."""
    n_on = max(1, int(seconds_on * sr))
    n = n_on + int(3 * inst.release * sr) + 1
    # float64 time: a float32 phase drifts audibly over a held 10 s pad.
    t = np.arange(n) / sr
    f0 = 440.0 * 2.0 ** ((midi - 69) / 12)
    # Harmonics above Nyquist would alias into inharmonic junk, so high notes get fewer.
    n_harmonics = int(np.clip(0.45 * sr / f0, 1, min(inst.n_harmonics, _MAX_HARMONICS)))
    cycles = f0 * t
    if inst.vibrato:
        rate = 5.5
        depth = f0 * (2 ** (inst.vibrato / 12) - 1)
        cycles = cycles + depth * (1 - np.cos(2 * np.pi * rate * t)) / (2 * np.pi * rate)
    mask = _TABLE_SIZE - 1
    index = (cycles * _TABLE_SIZE).astype(np.int64) & mask
    bright = _table(inst, n_harmonics)
    wave = bright[index]
    if inst.bright_decay:
        dull = _table(inst, n_harmonics, extra_slope=1.5)[index]
        wave = dull + (wave - dull) * np.exp(-t / inst.bright_decay)
    if inst.detune_cents:
        index2 = (cycles * (2 ** (inst.detune_cents / 1200) * _TABLE_SIZE)).astype(np.int64) & mask
        wave = 0.5 * (wave + bright[index2])
    env = np.minimum(t / inst.attack, 1.0) * (inst.sustain + (1 - inst.sustain) * np.exp(-t / inst.decay))
    env[n_on:] *= np.exp(-(t[n_on:] - t[n_on]) / inst.release)
    fade = min(256, n)
    env[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    return (wave * env).astype(np.float32)


def _decay(n: int, sr: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n, dtype=np.float32) / np.float32(seconds * sr))


def _highpass(x: np.ndarray, sr: int, hz: float) -> np.ndarray:
    sos = signal.butter(2, min(hz, 0.45 * sr), "highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def drum_kit(drums: Drums, rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """Synthesise this track's one-shots: kick, snare (or clap), hat, open hat, ride."""
    kick_hz, kick_decay = rng.uniform(*drums.kick_hz), rng.uniform(*drums.kick_decay)
    snare_hz, snare_decay = rng.uniform(160, 240), rng.uniform(*drums.snare_decay)
    hat_decay, hat_hz = rng.uniform(*drums.hat_decay), rng.uniform(6000, 9000)
    clap = rng.random() < drums.clap
    noise = np.random.default_rng(rng.integers(2**63)).standard_normal(2 * sr).astype(np.float32)

    n = int(4 * kick_decay * sr)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    # The pitch drop from about 3x the body frequency is what makes a synthetic kick thump.
    cycles = kick_hz * t + 2 * kick_hz * 0.03 * (1 - np.exp(-t / 0.03))
    kick = np.sin(2 * np.pi * cycles) * _decay(n, sr, kick_decay) + 0.3 * noise[:n] * _decay(n, sr, 0.002)

    n = int(4 * snare_decay * sr)
    body = np.sin(2 * np.pi * snare_hz * np.arange(n) / sr) * _decay(n, sr, 0.04)
    if clap:
        bursts = np.zeros(n, np.float32)
        for start in (0, int(0.01 * sr), int(0.02 * sr)):
            bursts[start:] += _decay(n - start, sr, 0.008)
        snare = _highpass(noise[:n], sr, 1000) * (bursts + 0.5 * _decay(n, sr, snare_decay))
    else:
        snare = 0.5 * body + _highpass(noise[:n], sr, 1500) * _decay(n, sr, snare_decay)

    n = int(5 * hat_decay * sr)
    hat = _highpass(noise[-n:], sr, hat_hz) * _decay(n, sr, hat_decay)
    n_open = int(1.0 * sr)
    open_hat = _highpass(noise[-n_open:], sr, hat_hz * 0.8) * _decay(n_open, sr, 0.25)
    n_ride = int(2.0 * sr)
    t = np.arange(n_ride, dtype=np.float32) / np.float32(sr)
    partials = rng.uniform(300, 800) * np.array([1.0, 1.48, 1.93, 2.57, 3.41, 4.06])
    # Inharmonic partials give a ride its bell; the noise gives it wash.
    metal = np.sign(np.sin(2 * np.pi * partials[:, None] * t)).sum(axis=0)
    ride = _highpass(metal + 2 * noise[:n_ride], sr, 3000) * _decay(n_ride, sr, 0.35)
    kit = {"kick": kick, "snare": snare, "hat": ride if drums.ride else hat, "open_hat": open_hat}
    return {name: (x / np.max(np.abs(x))).astype(np.float32) for name, x in kit.items()}


class _Grid:
    """The track's time grid: 16th-note steps with swing and human timing error."""

    def __init__(self, style: Genre, rng: np.random.Generator, seconds: float):
        self.bpm = rng.uniform(*style.tempo)
        self.step = 15.0 / self.bpm
        self.n_steps = int(np.ceil(seconds / self.step)) + 16
        swing8, swing16 = rng.uniform(*style.swing8), rng.uniform(*style.swing16)
        offsets = np.array([0.0, swing16, swing8, swing8 + swing16])
        k = np.arange(self.n_steps)
        self.times = (k + offsets[k % 4]) * self.step
        self.jitter = style.jitter_ms / 1000
        self.variation = style.variation

    def hits(self, rng: np.random.Generator, patterns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Steps that sound and their velocities, for one part over the whole track."""
        pattern = patterns[rng.integers(len(patterns))]
        probs = np.array([0.0 if c == "." else int(c) / 9 for c in pattern])
        groove = rng.random(probs.size) < probs
        probs = np.resize(probs, self.n_steps)
        on = np.resize(groove, self.n_steps)
        redraw = rng.random(self.n_steps) < self.variation
        on = np.where(redraw, rng.random(self.n_steps) < probs, on)
        steps = np.flatnonzero(on)
        velocity = (0.35 + 0.65 * probs[steps]) * rng.uniform(0.8, 1.0, steps.size)
        return steps, velocity

    def onset(self, rng: np.random.Generator, steps: np.ndarray) -> np.ndarray:
        return np.maximum(self.times[steps] + rng.normal(0, self.jitter, steps.size), 0.0)


def _note_lengths(steps: np.ndarray, boundaries: np.ndarray, legato: float) -> np.ndarray:
    """Steps each note lasts: up to the next onset or chord change, times legato."""
    following = np.append(steps[1:], boundaries[-1])
    change = boundaries[np.searchsorted(boundaries, steps, side="right")]
    return np.maximum(np.minimum(following, change) - steps, 1) * legato


class _Bus:
    """A mono bus that notes and hits are added into."""

    def __init__(self, n: int, sr: int):
        self.y = np.zeros(n, np.float32)
        self.sr = sr

    def add(self, sound: np.ndarray, at_seconds: float, gain: float) -> None:
        start = int(at_seconds * self.sr)
        stop = min(start + sound.size, self.y.size)
        if start < stop:
            self.y[start:stop] += gain * sound[: stop - start]


def _pitched_part(
    part: Part,
    role: str,
    style: Genre,
    key: int,
    chords: list,
    chord_steps: int,
    grid: _Grid,
    rng: np.random.Generator,
    bus: _Bus,
) -> None:
    inst = INSTRUMENTS[part.instruments[rng.integers(len(part.instruments))]]
    steps, velocity = grid.hits(rng, part.patterns)
    if steps.size == 0:
        return
    onsets = grid.onset(rng, steps)
    boundaries = np.arange(0, grid.n_steps + chord_steps + 1, chord_steps)
    lengths = _note_lengths(steps, boundaries, rng.uniform(*part.legato)) * grid.step
    chord_of_step = (steps // chord_steps) % len(chords)
    gain = rng.uniform(*part.gain)
    minor = chords[0][2]
    scale = _BLUES if part.mode == "blues" else (_MINOR if minor else _MAJOR)
    arp_order = rng.integers(3)
    previous = part.register + 12
    cache: dict[tuple[float, float], np.ndarray] = {}
    for i, (step, onset, length, vel) in enumerate(zip(steps, onsets, lengths, velocity)):
        root, intervals, _ = chords[chord_of_step[i]]
        base = part.register + (key + root - part.register) % 12
        if role == "bass":
            pitches = [_bass_pitch(part.mode, base, intervals, i, steps, chord_of_step, chords, key, part, rng)]
        elif role == "chords" and part.mode == "arp":
            tones = base + np.array(intervals)
            order = [
                np.arange(tones.size),
                np.r_[0, tones.size - 1, 1, tones.size - 1],
                np.r_[np.arange(tones.size), np.arange(tones.size - 2, 0, -1)],
            ][arp_order]
            pitches = [tones[order[(step % chord_steps) % order.size]]]
        elif role == "chords":
            pitches = list(base + np.array(intervals))
        elif part.mode == "arp":
            tones = base + np.array(intervals + (12,))
            pitches = [tones[i % tones.size]]
        else:
            previous = _melody_step(previous, key, scale, part, base, intervals, step, rng)
            pitches = [previous]
        strum = 0.012 if part.mode == "strum" else 0.0
        for j, pitch in enumerate(pitches):
            # Lengths are whole samples of a quantised grid, so repeated notes hit the cache.
            cache_key = (float(pitch), round(float(length), 3))
            if cache_key not in cache:
                cache[cache_key] = render_note(inst, float(pitch), cache_key[1], bus.sr)
            bus.add(cache[cache_key], onset + j * strum, gain * vel / np.sqrt(len(pitches)))


def _bass_pitch(mode, base, intervals, i, steps, chord_of_step, chords, key, part, rng) -> int:
    first_of_chord = i == 0 or chord_of_step[i] != chord_of_step[i - 1]
    if mode == "octave":
        return base + 12 * (i % 2)
    if mode == "walking" and not first_of_chord:
        last_of_chord = i + 1 < steps.size and chord_of_step[i + 1] != chord_of_step[i]
        if last_of_chord:
            next_root = part.register + (key + chords[chord_of_step[i + 1]][0] - part.register) % 12
            return next_root + rng.choice([-1, 1, 2])
        return base + rng.choice(list(intervals) + [2, 5, 9])
    if mode == "melodic" and not first_of_chord:
        return base + rng.choice(list(intervals) + [12, 10])
    if not first_of_chord and rng.random() < 0.15:
        return base + rng.choice([7, 12])
    return base


def _melody_step(previous, key, scale, part, base, intervals, step, rng) -> int:
    degrees = np.concatenate([scale + key + 12 * o for o in range(10)])
    degrees = degrees[(degrees >= part.register) & (degrees <= part.register + 19)]
    here = int(np.argmin(np.abs(degrees - previous)))
    move = rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3])
    pitch = int(degrees[int(np.clip(here + move, 0, degrees.size - 1))])
    if step % 4 == 0 and rng.random() < 0.5:
        tones = base + np.array(intervals) + 12 * np.array([[0], [1]])
        pitch = int(tones.flat[np.argmin(np.abs(tones - pitch))])
    if part.mode == "bebop" and step % 2 == 1 and rng.random() < 0.2:
        pitch += rng.choice([-1, 1])
    return pitch


def _noise(style: Genre, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    level = rng.uniform(*style.noise_level)
    noise = rng.standard_normal(n).astype(np.float32)
    if style.noise == "wind":
        sos = signal.butter(2, min(500.0, 0.45 * sr), "lowpass", fs=sr, output="sos")
        gusts = np.interp(np.arange(n), np.linspace(0, n, 12), rng.uniform(0.2, 1.0, 12))
        return (8 * level * signal.sosfilt(sos, noise) * gusts).astype(np.float32)
    noise *= level
    if style.noise == "vinyl":
        clicks = rng.integers(0, n, size=int(rng.uniform(5, 25) * n / sr))
        noise[clicks] += rng.uniform(-30, 30, clicks.size) * level
    return noise


def _tone(y: np.ndarray, sr: int, hz: float) -> np.ndarray:
    if hz >= 0.45 * sr:
        return y
    sos = signal.butter(2, hz, "lowpass", fs=sr, output="sos")
    return signal.sosfilt(sos, y, axis=0).astype(np.float32)


def render(genre: str, *, seconds: float, sr: int, channels: int, seed_key: tuple[int, ...]) -> np.ndarray:
    """Render one track of ``genre``; returns float32 of shape (n_samples, channels)."""
    style = GENRES_TABLE[genre]
    # Musical choices come from one stream and sample-level noise from another, so the
    # same seed gives the same music at every sample rate and channel count.
    music, noise_rng = (np.random.default_rng([*seed_key, stream]) for stream in (0, 1))
    n = int(round(seconds * sr))
    grid = _Grid(style, music, seconds)
    progression = style.progressions[music.integers(len(style.progressions))].split()
    chords = [parse_chord(c) for c in progression]
    chord_steps = int(16 * style.bars_per_chord[music.integers(len(style.bars_per_chord))])
    key = int(style.keys[music.integers(len(style.keys))])
    drive = music.uniform(*style.distortion)
    echo = music.uniform(*style.echo)
    pans = music.uniform(-0.6, 0.6, size=5)
    buses = {name: _Bus(n, sr) for name in ("bass", "chords", "lead", "drums", "hats")}
    pans[0] = 0.0  # bass and kick stay centred, as in almost every mix
    for role in ("bass", "chords", "lead"):
        part = getattr(style, role)
        if music.random() < part.probability:
            _pitched_part(part, role, style, key, chords, chord_steps, grid, music, buses[role])
    drums = style.drums
    if drums is not None and music.random() < drums.probability:
        kit = drum_kit(drums, music, sr)
        drum_gain = music.uniform(*drums.gain)
        for name, patterns, bus, gain in (
            ("kick", drums.kick, "drums", 1.0),
            ("snare", drums.snare, "drums", 0.8),
            ("hat", drums.hat, "hats", 0.35),
            ("open_hat", drums.open_hat, "hats", 0.3),
        ):
            steps, velocity = grid.hits(music, patterns)
            for onset, vel in zip(grid.onset(music, steps), velocity):
                buses[bus].add(kit[name], onset, drum_gain * gain * vel)
    for name in ("chords", "lead"):
        y = buses[name].y
        if drive > 0:
            # Guitar amp: symmetric soft clipping, then a cabinet's roll-off of the fizz.
            y = _tone(np.tanh(drive * y) / np.tanh(drive) * 0.7, sr, 5000.0)
        if echo > 0:
            delay = int(3 * grid.step * sr)
            wet = y.copy()
            for repeat in range(1, 4):
                if repeat * delay >= n:
                    break
                wet[repeat * delay :] += echo**repeat * y[: n - repeat * delay]
            y = wet
        buses[name].y = y
    if style.sweep:
        y = buses["chords"].y
        lfo = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(n) / (sr * 64 * grid.step) + music.uniform(0, 2 * np.pi))
        closed = _tone(y, sr, 600.0)
        buses["chords"].y = closed + (y - closed) * lfo.astype(np.float32)

    angles = (pans + 1) * np.pi / 4
    gains = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.sqrt(2) if channels == 2 else np.ones((5, 1))
    mix = np.zeros((n, channels), np.float32)
    for gain, bus in zip(gains, buses.values()):
        mix += bus.y[:, None] * gain.astype(np.float32)
    mix += _noise(style, noise_rng, n, sr)[:, None]
    if channels == 2:
        # Uncorrelated hiss on each side: a little real stereo width even where parts are centred.
        mix[:, 1] += _noise(style, noise_rng, n, sr) * 0.5
    if style.swell:
        curve = np.interp(np.arange(n), np.linspace(0, n, 8), music.uniform(1 - style.swell, 1.0, 8))
        mix *= curve[:, None].astype(np.float32)
    mix = _tone(mix, sr, music.uniform(*style.lowpass_hz))
    peak = np.max(np.abs(mix)) or 1.0
    drive = music.uniform(*style.compress)
    mix = np.tanh(drive * mix / peak) / np.tanh(drive)
    target = music.uniform(*style.peak) * music.uniform(0.8, 1.0)
    return (mix * (target / (np.max(np.abs(mix)) or 1.0))).astype(np.float32)
