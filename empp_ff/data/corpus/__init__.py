"""An unlabelled corpus of drug-like structures for EMPP pre-training (``empp-ff data corpus``).

EMPP needs only positions and elements, so a pre-training corpus can be far larger and
more diverse than any labelled set. This package makes one reproducibly with RDKit
(an optional dependency, ``pip install empp-ff[corpus]``):

* :mod:`.molecules` enumerates molecules from seed SMILES: the seeds themselves, their
  BRICS fragments capped with hydrogen, and BRICS recombinations of those fragments,
  filtered to neutral single molecules of the wanted elements and size, with molecules
  to keep out (evaluation molecules) removed by canonical SMILES;
* :mod:`.conformers` embeds ETKDG conformers, relaxes them with MMFF94 and displaces them
  thermally by classical normal-mode sampling at a temperature, so the structures look
  like MD frames rather than minima;
* :mod:`.build` streams the result into the training store (``empp_ff.data.store``),
  with the settings, seeds and counts in its provenance.
"""
