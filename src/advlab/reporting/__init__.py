"""Everything a run or a sweep reports beyond its metrics: the console summary (:mod:`.summary`), pictures
of examples for every task (:mod:`.pictures`, :mod:`.segmentation_pictures`), and ``advlab-report``
(:mod:`.report`): paper vs measured per table (:mod:`.paper` reads the presets' ``paper:`` blocks,
:mod:`.metric_keys` the metric keys from the code, :mod:`.plots` draws), with the per-paper layouts: the sweep
table (:mod:`.table`, also ``advlab-table``), the transfer matrix (:mod:`.transfer_table`, also
``advlab-transfer-table``), ASL-PAR's rows (:mod:`.asl_par_table`) and SemanticAdv's tables
(:mod:`.semanticadv_tables`)."""
