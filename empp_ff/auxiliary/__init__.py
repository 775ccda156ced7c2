"""What every auxiliary loss (EMPP, coordinate denoising) shares, so that none borrows
another's internals: the interface training knows them by (``loss``: AuxiliaryLoss),
their weighting over time (``weighting``: AuxWeighting), and the equivariant parts of
their heads (``norm``: per-irrep RMS norm; ``harmonics``: real spherical harmonics of
vectors). Training only; imports are lazy (no e3nn at import).
"""
