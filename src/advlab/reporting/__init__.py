"""Everything a run or a sweep reports beyond its metrics: the console summary (:mod:`.summary`), pictures
of examples for every task (:mod:`.pictures`, :mod:`.segmentation_pictures`), the sweep table
(:mod:`.table`, ``advlab-table``) and the transfer matrix (:mod:`.transfer_table`, ``advlab-transfer-table``)."""
