"""The faces: the only layer that imports intake.

:mod:`.catalog` is the catalog of runs, :mod:`.run` a run as an intake
Catalog of streams and a stream as an intake DataSource, :mod:`.table` the
table of runs (``to_dataframe()``, ``ls``), :mod:`.html` the notebook
displays. Thin: the model does the work.
"""
