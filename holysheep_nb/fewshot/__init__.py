"""Few-shot examples for ``label()``, ``extract()`` and ``complete()`` (``docs/examples.md``):
``examples=`` read into a pool (``pool``), ``k`` of them chosen per row (``fixed``,
``balanced``, ``similar``: ``build``, ``vectors``), sent as user/assistant turns before the
row (``turns``). The options are declared in ``options``.

Nothing is imported here: ``job_options`` imports ``options`` while pandas may still be
importing (see ``holysheep_nb/__init__.py``).
"""
