"""Networks, pure: the short-chunk CNN, musicnn, a head's layers, and the jitted training and inference steps."""
