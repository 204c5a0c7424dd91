"""Model kinds: the one interface (:class:`~mgc.models.kinds.base.Model`), its implementations and the loader."""
