"""Data for the models: splits, crops and the training stream, store sources, and audio inputs decoded for a spec."""
