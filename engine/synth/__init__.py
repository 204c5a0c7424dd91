"""A seeded synthetic multi-genre music corpus: the data set mgc ships with.

Ten genres differ the way real ones do, in several ways at once (tempo, drum
grooves, bass lines, chord progressions and keys, instrument timbres,
distortion, swing, density, noise), every track varies within its genre, and
some pairs overlap on purpose (rock/metal, disco/electronic, blues/jazz,
hiphop/reggae, ambient/classical) so a classifier has real work to do.

The package is not imported by ``engine`` itself: it needs ``scipy.signal``,
which extraction workers should not pay for. Import it by name.

Modules
-------
corpus
    ``make_corpus`` (the folder layout and manifest), ``render_track``, ``track_seed``.
render
    The synthesis of one track (numpy and scipy only).
styles
    The genre and instrument tables (data only).

Examples
--------
>>> from engine.synth import make_corpus, render_track
>>> manifest = make_corpus("corpus", tracks_per_genre=10, seconds=30.0, seed=0)
>>> y = render_track("jazz", seconds=5.0, sr=22050, seed=1)  # shape (110250,)
"""

from .corpus import FORMATS, GENERATOR_VERSION, GENRES, SynthError, make_corpus, render_track, track_seed

__all__ = ["FORMATS", "GENERATOR_VERSION", "GENRES", "SynthError", "make_corpus", "render_track", "track_seed"]
