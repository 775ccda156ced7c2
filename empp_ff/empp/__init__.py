"""EMPP (Equivariant Masked Position Prediction) auxiliary loss, training only.

Modules, one concept each: ``config`` (EMPPConfig), ``masking`` (masked copies
as one batched graph), ``conditioning`` (label encoders injected through the
backbone's conditioning hook), ``head`` (equivariant trunk → coefficients),
``sphere`` (S² grid matrix), ``direction`` and ``radius`` (log-distributions),
``targets`` (q_dir, q_rad), ``loss`` (KL and reductions), ``module`` (EMPPModule),
``auxiliary`` (EMPP as an auxiliary loss of training; what it shares with the other
auxiliary losses lives in ``empp_ff.auxiliary``). Imports are lazy: ``import
empp_ff.empp`` pulls in neither e3nn nor mace.
"""

__all__ = ["EMPPConfig", "EMPPModule"]


def __getattr__(name):
    if name == "EMPPConfig":
        from empp_ff.empp.config import EMPPConfig

        return EMPPConfig
    if name == "EMPPModule":
        from empp_ff.empp.module import EMPPModule

        return EMPPModule
    raise AttributeError(f"module 'empp_ff.empp' has no attribute {name!r}")
