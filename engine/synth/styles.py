"""Genre and instrument tables for the synthetic corpus (data only, no DSP).

Rhythms are 16-step (one 4/4 bar of 16th notes) or 32-step strings: each
character is the probability, in ninths, that the step sounds ('.' = never,
'9' = always); a low digit is also a soft hit (ghost notes). A track draws one
pattern per part from the candidates, then each bar mutates a few steps, so
grooves repeat the way real ones do without being copies.

Chord progressions are Roman numerals relative to the track's key: case gives
the triad (``IV`` major, ``iv`` minor), ``b`` flattens the root, and the suffix
gives the quality (``7``, ``maj7``, ``m7`` via lower case + ``7``, ``5`` power
chord, ``sus2``, ``add9``, ``9``, ``dim``).
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class Instrument:
    """A pitched timbre: a harmonic profile and an amplitude envelope (seconds)."""

    slope: float  # harmonic k has amplitude k**-slope: 1 is a saw, 3 is nearly a sine
    odd_only: float = 0.0  # 1 silences even harmonics (square, clarinet)
    n_harmonics: int = 16
    attack: float = 0.005
    decay: float = 0.3  # time constant from the attack peak down to the sustain level
    sustain: float = 0.5
    release: float = 0.1
    bright_decay: float = 0.0  # > 0: upper harmonics die first, as in plucked strings and pianos
    detune_cents: float = 0.0  # > 0: a second detuned copy, as in string sections and synth pads
    vibrato: float = 0.0  # depth in semitones at about 5.5 Hz


INSTRUMENTS: dict[str, Instrument] = {
    "piano": Instrument(1.3, n_harmonics=14, attack=0.002, decay=0.7, sustain=0.05, release=0.15, bright_decay=0.25),
    "epiano": Instrument(2.2, n_harmonics=8, attack=0.003, decay=1.0, sustain=0.1, release=0.2, bright_decay=0.12),
    "harpsichord": Instrument(
        0.8, n_harmonics=20, attack=0.001, decay=0.4, sustain=0.0, release=0.05, bright_decay=0.1
    ),
    "organ": Instrument(0.7, odd_only=0.3, n_harmonics=10, attack=0.01, decay=0.1, sustain=0.9, release=0.05),
    "strings": Instrument(1.0, attack=0.15, decay=0.5, sustain=0.8, release=0.3, detune_cents=8, vibrato=0.12),
    "pad": Instrument(1.6, n_harmonics=12, attack=0.8, decay=1.0, sustain=0.8, release=1.5, detune_cents=12),
    "saw_pad": Instrument(1.0, n_harmonics=20, attack=0.05, decay=0.4, sustain=0.6, release=0.3, detune_cents=15),
    "synth_stab": Instrument(1.0, n_harmonics=20, attack=0.002, decay=0.12, sustain=0.0, release=0.05, detune_cents=10),
    "guitar_clean": Instrument(
        1.4, n_harmonics=14, attack=0.002, decay=0.5, sustain=0.1, release=0.1, bright_decay=0.1
    ),
    "guitar_dist": Instrument(0.9, n_harmonics=18, attack=0.003, decay=1.0, sustain=0.6, release=0.08),
    "bass_finger": Instrument(1.8, n_harmonics=8, attack=0.005, decay=0.4, sustain=0.3, release=0.06, bright_decay=0.1),
    "bass_upright": Instrument(
        2.2, n_harmonics=8, attack=0.004, decay=0.25, sustain=0.15, release=0.08, bright_decay=0.05
    ),
    "bass_synth": Instrument(1.0, n_harmonics=14, attack=0.003, decay=0.15, sustain=0.4, release=0.03),
    "bass_808": Instrument(3.5, n_harmonics=3, attack=0.003, decay=1.2, sustain=0.2, release=0.2),
    "bass_sine": Instrument(3.0, n_harmonics=4, attack=0.01, decay=0.5, sustain=0.6, release=0.08),
    "sax": Instrument(
        1.1, odd_only=0.3, n_harmonics=14, attack=0.04, decay=0.3, sustain=0.7, release=0.08, vibrato=0.15
    ),
    "brass": Instrument(0.9, n_harmonics=14, attack=0.05, decay=0.2, sustain=0.8, release=0.08, vibrato=0.05),
    "flute": Instrument(3.0, n_harmonics=5, attack=0.06, decay=0.3, sustain=0.8, release=0.1, vibrato=0.12),
    "clarinet": Instrument(
        1.3, odd_only=0.8, n_harmonics=12, attack=0.04, decay=0.3, sustain=0.8, release=0.08, vibrato=0.04
    ),
    "square_lead": Instrument(1.0, odd_only=1.0, n_harmonics=15, attack=0.005, decay=0.2, sustain=0.6, release=0.05),
    "saw_lead": Instrument(1.0, n_harmonics=20, attack=0.005, decay=0.2, sustain=0.7, release=0.05, detune_cents=6),
    "bell": Instrument(2.5, n_harmonics=6, attack=0.002, decay=1.5, sustain=0.0, release=0.5, bright_decay=0.3),
}


@dataclass(frozen=True)
class Part:
    """One pitched part of the arrangement (bass, chords or lead)."""

    instruments: tuple[str, ...]
    patterns: tuple[str, ...]
    mode: str = "root"  # bass: root|octave|walking|melodic; chords: block|arp|strum; lead: any
    register: int = 48  # MIDI note at the bottom of the part's octave
    legato: Range = (0.8, 1.0)  # fraction of the gap to the next onset a note sounds
    gain: Range = (0.5, 0.8)
    probability: float = 1.0  # chance that a track has this part at all


@dataclass(frozen=True)
class Drums:
    """A drum kit and its grooves; each pattern tuple holds candidates."""

    kick: tuple[str, ...]
    snare: tuple[str, ...]
    hat: tuple[str, ...]
    open_hat: tuple[str, ...] = ("." * 16,)
    ride: bool = False  # cymbal voice for the hat pattern: a ride (jazz) or a closed hi-hat
    clap: float = 0.0  # chance that the snare is a hand clap (disco, house)
    kick_hz: Range = (45.0, 60.0)
    kick_decay: Range = (0.15, 0.3)
    snare_decay: Range = (0.12, 0.2)
    hat_decay: Range = (0.03, 0.06)
    gain: Range = (0.6, 0.9)
    probability: float = 1.0


@dataclass(frozen=True)
class Genre:
    """Everything that separates one synthetic genre from another."""

    tempo: Range  # beats per minute
    progressions: tuple[str, ...]
    bass: Part
    chords: Part
    lead: Part
    drums: Drums | None = None
    bars_per_chord: tuple[float, ...] = (1.0,)
    keys: tuple[int, ...] = tuple(range(12))  # pitch classes a track may be in (0 = C)
    swing8: Range = (0.0, 0.0)  # delay of the off-beat 8th, in 16th-steps (0.67 = triplet shuffle)
    swing16: Range = (0.0, 0.0)  # delay of the off-beat 16ths, in 16th-steps
    jitter_ms: float = 5.0  # human timing error (standard deviation)
    variation: float = 0.05  # per-step chance that a bar departs from the track's groove
    distortion: Range = (0.0, 0.0)  # drive on the chord and lead buses; 0 is clean
    noise: str = "hiss"  # hiss|vinyl|wind
    noise_level: Range = (0.001, 0.004)
    echo: Range = (0.0, 0.0)  # feedback of a tempo-synced echo on chords and lead
    lowpass_hz: Range = (9000.0, 11000.0)  # master tone; lo-fi genres are darker
    sweep: bool = False  # slow filter sweeps on the chord bus (electronic music)
    swell: float = 0.0  # depth of slow loudness swells (orchestral dynamics)
    compress: Range = (1.0, 1.5)  # soft-clip drive on the master; loud genres squash harder
    peak: Range = (0.5, 0.8)  # peak level the track is normalised to


_STRAIGHT8 = "9.7.9.7.9.7.9.7."
_BACKBEAT = "....9.......9..."
_FOUR = "9...9...9...9..."
_OFFBEATS = "..9...9...9...9."
_HOLD = "9..............."

GENRES_TABLE: dict[str, Genre] = {
    "ambient": Genre(
        tempo=(60, 90),
        progressions=("Iadd9 IVadd9", "i9 bVImaj7", "Isus2 vi7 IVmaj7 Isus2", "im7 ivm7", "Imaj7 iii7"),
        bars_per_chord=(2.0, 4.0),
        bass=Part(("bass_sine", "pad"), (_HOLD, "9.......5......."), register=33, gain=(0.3, 0.6), probability=0.7),
        chords=Part(("pad", "strings", "saw_pad"), (_HOLD,), register=52, legato=(1.0, 1.0), gain=(0.5, 0.9)),
        lead=Part(
            ("bell", "flute", "epiano"),
            ("9.......2.......", "5...2...5...2..."),
            register=69,
            legato=(0.9, 1.0),
            gain=(0.2, 0.5),
            probability=0.6,
        ),
        drums=Drums(
            ("." * 16,),
            ("." * 16,),
            ("..3...3...3...3.", "3.3.3.3.3.3.3.3."),
            hat_decay=(0.02, 0.04),
            gain=(0.15, 0.3),
            probability=0.25,
        ),
        jitter_ms=15.0,
        noise="wind",
        noise_level=(0.005, 0.02),
        echo=(0.35, 0.6),
        lowpass_hz=(3500, 8000),
        swell=0.4,
        compress=(0.6, 1.0),
        peak=(0.3, 0.6),
    ),
    "blues": Genre(
        tempo=(70, 125),
        progressions=(
            "I7 I7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7",
            "I7 IV7 I7 I7 IV7 IV7 I7 I7 V7 IV7 I7 V7",
            "i7 i7 i7 i7 iv7 iv7 i7 i7 bVI7 V7 i7 V7",
        ),
        keys=(4, 9, 2, 7, 0, 10),
        bass=Part(
            ("bass_finger", "bass_upright"), (_FOUR, "9..79..79..79..7"), mode="walking", register=28, gain=(0.5, 0.8)
        ),
        chords=Part(
            ("piano", "guitar_clean", "organ"),
            ("9.....5.9.....5.", "..7...7...7...7.", "9.7.9.7.9.7.9.7."),
            register=52,
            legato=(0.4, 0.8),
            gain=(0.3, 0.6),
        ),
        lead=Part(
            ("guitar_clean", "sax", "square_lead"),
            ("9.5.7.5.9...5.5.", "..7.5..9..5.7..."),
            mode="blues",
            register=62,
            legato=(0.6, 1.0),
            gain=(0.35, 0.6),
            probability=0.8,
        ),
        drums=Drums(
            ("9.......7.......", "9.....5.9......."),
            ("....9.......9...", "....9.....2.9..."),
            ("9.7.9.7.9.7.9.7.", "9...9.7.9...9.7."),
            ride=True,
            kick_decay=(0.2, 0.35),
            gain=(0.4, 0.7),
        ),
        swing8=(0.5, 0.67),
        jitter_ms=8.0,
        distortion=(0.0, 1.8),
        noise_level=(0.002, 0.006),
        lowpass_hz=(5000, 9000),
        compress=(1.0, 1.8),
        peak=(0.5, 0.85),
    ),
    "classical": Genre(
        tempo=(60, 120),
        progressions=("I IV V I", "I vi IV V", "i iv V i", "I V vi iii IV I IV V", "i VI iv V", "I ii V I"),
        bars_per_chord=(1.0, 2.0),
        bass=Part(("strings", "bass_upright"), ("9.......9.......", _HOLD), register=36, gain=(0.35, 0.6)),
        chords=Part(
            ("piano", "harpsichord", "strings"),
            ("9.9.9.9.9.9.9.9.", "9999999999999999", "9...9...9...9..."),
            mode="arp",
            register=52,
            legato=(0.9, 1.0),
            gain=(0.35, 0.6),
        ),
        lead=Part(
            ("strings", "flute", "clarinet", "piano"),
            ("9...7...9.5.7...", "9.......9...7...", "9.7.9.7.9.7.9.7."),
            register=64,
            legato=(0.9, 1.0),
            gain=(0.4, 0.7),
            probability=0.9,
        ),
        jitter_ms=12.0,
        variation=0.03,
        noise_level=(0.0005, 0.002),
        echo=(0.1, 0.25),
        lowpass_hz=(6000, 10000),
        swell=0.45,
        compress=(0.5, 0.9),
        peak=(0.25, 0.6),
    ),
    "disco": Genre(
        tempo=(110, 130),
        progressions=("i7 iv7", "Imaj7 ii7", "i7 IV7", "ii7 V7 Imaj7 vi7", "vi7 ii7 V7 Imaj7"),
        bass=Part(
            ("bass_finger", "bass_synth"),
            ("9.9.9.9.9.9.9.9.", "9.999.9.9.999.9."),
            mode="octave",
            register=33,
            legato=(0.5, 0.8),
            gain=(0.6, 0.85),
        ),
        chords=Part(
            ("strings", "epiano", "guitar_clean", "synth_stab"),
            (_OFFBEATS, "..9.9...9.9..9.9", _HOLD),
            register=55,
            legato=(0.3, 0.7),
            gain=(0.35, 0.6),
        ),
        lead=Part(
            ("strings", "brass", "saw_lead"),
            ("9...9.7.9...9...", "9.9.9...9.9.9..."),
            register=67,
            gain=(0.3, 0.5),
            probability=0.5,
        ),
        drums=Drums(
            (_FOUR,),
            (_BACKBEAT,),
            ("9.9.9.9.9.9.9.9.", "9999999999999999"),
            open_hat=(_OFFBEATS,),
            clap=0.5,
            kick_hz=(50, 65),
            kick_decay=(0.15, 0.25),
            gain=(0.7, 0.9),
        ),
        swing16=(0.0, 0.08),
        jitter_ms=4.0,
        noise_level=(0.001, 0.003),
        lowpass_hz=(9000, 11000),
        compress=(1.2, 2.0),
        peak=(0.7, 0.9),
    ),
    "electronic": Genre(
        tempo=(120, 135),
        progressions=("i", "i bVI", "i iv", "i bVII bVI bVII", "im7"),
        bars_per_chord=(1.0, 2.0, 4.0),
        keys=(0, 2, 5, 7, 9, 10, 11),
        bass=Part(
            ("bass_synth", "bass_808"),
            (_OFFBEATS, ".999.999.999.999", "9..9..9.9..9..9."),
            register=33,
            legato=(0.4, 0.8),
            gain=(0.6, 0.85),
        ),
        chords=Part(
            ("saw_pad", "synth_stab", "pad"),
            (_HOLD, "..9..9....9..9..", "9..9..9..9..9..."),
            register=55,
            legato=(0.3, 1.0),
            gain=(0.3, 0.6),
        ),
        lead=Part(
            ("saw_lead", "square_lead", "bell"),
            ("9999999999999999", "9.9.9.9.9.9.9.9.", "9..9..9.9..9..9."),
            mode="arp",
            register=67,
            legato=(0.3, 0.6),
            gain=(0.2, 0.45),
            probability=0.5,
        ),
        drums=Drums(
            (_FOUR,),
            ("." * 16, _BACKBEAT),
            ("9999999999999999", _OFFBEATS),
            open_hat=(_OFFBEATS, "." * 16),
            clap=0.9,
            kick_hz=(45, 55),
            kick_decay=(0.2, 0.4),
            hat_decay=(0.02, 0.05),
            gain=(0.7, 0.95),
        ),
        jitter_ms=0.5,
        variation=0.02,
        noise_level=(0.0, 0.001),
        echo=(0.0, 0.3),
        lowpass_hz=(10000, 11000),
        sweep=True,
        compress=(1.5, 2.5),
        peak=(0.8, 0.95),
    ),
    "hiphop": Genre(
        tempo=(80, 100),
        progressions=("ii7 V7", "i7 iv7", "Imaj7 vi7", "i7 bVImaj7", "im7 bVII7 bVImaj7 V7"),
        bass=Part(
            ("bass_808", "bass_sine"),
            ("9.....7...9.....", "9.........9.....", "9......79......."),
            register=28,
            legato=(0.7, 1.0),
            gain=(0.6, 0.9),
        ),
        chords=Part(
            ("epiano", "piano", "strings"),
            (_HOLD, "9.....9.....9...", "9.......9......."),
            register=55,
            legato=(0.7, 1.0),
            gain=(0.25, 0.5),
        ),
        lead=Part(
            ("epiano", "flute", "bell"),
            ("9.....5...7.....", "..9.....5.9....."),
            register=67,
            gain=(0.2, 0.4),
            probability=0.35,
        ),
        drums=Drums(
            ("9.....7...9.....", "9......79.9.....", "9.....9..9......"),
            (_BACKBEAT, "....9..2....9..."),
            ("9.9.9.9.9.9.9.9.", "9.799.7.9.7.9.79"),
            kick_hz=(45, 60),
            kick_decay=(0.25, 0.45),
            snare_decay=(0.15, 0.25),
            gain=(0.8, 1.0),
        ),
        swing16=(0.1, 0.3),
        jitter_ms=6.0,
        noise="vinyl",
        noise_level=(0.003, 0.012),
        lowpass_hz=(3500, 7000),
        compress=(1.5, 2.5),
        peak=(0.75, 0.95),
    ),
    "jazz": Genre(
        tempo=(100, 200),
        progressions=(
            "ii7 V7 Imaj7 Imaj7",
            "ii7 V7 Imaj7 VI7",
            "i7 iv7 bVII7 bIIImaj7",
            "Imaj7 vi7 ii7 V7",
            "iii7 VI7 ii7 V7",
        ),
        bars_per_chord=(1.0, 0.5),
        bass=Part(("bass_upright",), (_FOUR,), mode="walking", register=28, legato=(0.8, 1.0), gain=(0.5, 0.8)),
        chords=Part(
            ("piano", "epiano", "guitar_clean"),
            ("..5...5..5...5..", "9.....5...5...5.", "...5..5....5..5."),
            register=52,
            legato=(0.3, 0.7),
            gain=(0.25, 0.5),
        ),
        lead=Part(
            ("sax", "brass", "piano", "clarinet"),
            ("9.7.9.7.9.7.9.7.", "9.7.5.7.9...7.7.", "9.9.9.9.9.9.9.9."),
            mode="bebop",
            register=62,
            legato=(0.6, 1.0),
            gain=(0.35, 0.6),
            probability=0.9,
        ),
        drums=Drums(
            ("3...2...3...2...", "2.......2......."),
            ("..2..2.2..2...2.", ".....2....2..2.."),
            ("9...9.6.9...9.6.",),
            open_hat=("....6.......6...",),
            ride=True,
            kick_decay=(0.12, 0.2),
            snare_decay=(0.08, 0.15),
            gain=(0.35, 0.6),
        ),
        swing8=(0.33, 0.6),
        jitter_ms=8.0,
        variation=0.12,
        noise_level=(0.001, 0.004),
        echo=(0.0, 0.15),
        lowpass_hz=(6000, 10000),
        compress=(0.8, 1.3),
        peak=(0.4, 0.75),
    ),
    "metal": Genre(
        tempo=(110, 200),
        progressions=("i5 bVI5 bVII5 i5", "i5 bII5 i5 bVII5", "i5 v5 bVI5 bVII5", "i5 i5 bIII5 bII5"),
        bars_per_chord=(1.0, 0.5),
        keys=(4, 2, 0, 11, 9),
        bass=Part(
            ("bass_finger", "bass_synth"),
            ("9.9.9.9.9.9.9.9.", "9999999999999999", "9.999.999.999.99"),
            register=28,
            legato=(0.6, 0.9),
            gain=(0.5, 0.7),
        ),
        chords=Part(
            ("guitar_dist",),
            ("9.9.9999.9.9999.", "9999999999999999", "9.9.9.9.9.9.9.9."),
            mode="strum",
            register=40,
            legato=(0.5, 0.9),
            gain=(0.6, 0.8),
        ),
        lead=Part(
            ("guitar_dist", "saw_lead"),
            ("9.9.9.9.9.9.9.9.", "9999999999999999"),
            register=64,
            legato=(0.7, 1.0),
            gain=(0.3, 0.5),
            probability=0.4,
        ),
        drums=Drums(
            ("9.9.9.9.9.9.9.9.", "9999999999999999", "9.9.9..99.9.9..9"),
            (_BACKBEAT, "..9...9...9...9."),
            ("9.9.9.9.9.9.9.9.", _FOUR),
            kick_hz=(55, 70),
            kick_decay=(0.08, 0.15),
            snare_decay=(0.1, 0.16),
            gain=(0.7, 0.9),
        ),
        jitter_ms=3.0,
        distortion=(8.0, 20.0),
        noise_level=(0.002, 0.006),
        lowpass_hz=(7000, 10000),
        compress=(2.0, 3.5),
        peak=(0.85, 0.98),
    ),
    "reggae": Genre(
        tempo=(65, 90),
        progressions=("I IV", "i iv", "I V vi IV", "ii V", "i bVII"),
        bass=Part(
            ("bass_sine", "bass_finger"),
            ("9..9..9.9...9...", "9...9.7...9.7...", "9.7...9.9..7...."),
            mode="melodic",
            register=28,
            legato=(0.6, 0.9),
            gain=(0.7, 0.95),
        ),
        chords=Part(
            ("guitar_clean", "organ", "piano"),
            ("....9.......9...", _OFFBEATS),
            register=55,
            legato=(0.15, 0.35),
            gain=(0.3, 0.55),
        ),
        lead=Part(
            ("square_lead", "brass", "organ"),
            ("9...9...7...9...", "..9...9...9....."),
            register=64,
            gain=(0.25, 0.45),
            probability=0.4,
        ),
        drums=Drums(
            ("........9.......",),
            ("........9.......", "........9.....5."),
            ("9.9.9.9.9.9.9.9.", "..9...9...9...9."),
            kick_hz=(50, 65),
            snare_decay=(0.06, 0.1),
            gain=(0.5, 0.75),
        ),
        swing16=(0.05, 0.25),
        jitter_ms=6.0,
        noise_level=(0.001, 0.005),
        echo=(0.2, 0.45),
        lowpass_hz=(5000, 9000),
        compress=(1.0, 1.6),
        peak=(0.55, 0.85),
    ),
    "rock": Genre(
        tempo=(95, 150),
        progressions=("I IV V IV", "I V vi IV", "I bVII IV I", "vi IV I V", "I5 IV5 V5 IV5"),
        keys=(4, 9, 2, 7, 0),
        bass=Part(
            ("bass_finger",),
            ("9.9.9.9.9.9.9.9.", "9...9...9...9...", "9..9..9.9.9.9.9."),
            register=28,
            legato=(0.7, 0.9),
            gain=(0.55, 0.75),
        ),
        chords=Part(
            ("guitar_dist", "guitar_clean"),
            (_STRAIGHT8, "9..9..9.9..9..9.", "9.......9......."),
            mode="strum",
            register=45,
            legato=(0.7, 1.0),
            gain=(0.5, 0.75),
        ),
        lead=Part(
            ("guitar_dist", "organ"),
            ("9.7.9.7.9...9...", "9...9...9.7.9..."),
            register=64,
            gain=(0.3, 0.5),
            probability=0.6,
        ),
        drums=Drums(
            ("9.......9.9.....", "9.....9.9......."),
            (_BACKBEAT,),
            (_STRAIGHT8, "9999999999999999"),
            kick_hz=(50, 65),
            kick_decay=(0.12, 0.2),
            gain=(0.7, 0.9),
        ),
        jitter_ms=6.0,
        distortion=(1.5, 9.0),
        noise_level=(0.002, 0.006),
        lowpass_hz=(7000, 10000),
        compress=(1.5, 2.5),
        peak=(0.75, 0.95),
    ),
}
