#!/usr/bin/env python
"""Can a compiled training step pay on a CPU? (issue 26, before building ``train.compile``)

The demo-architecture MACE (32 channels, L = 1, correlation 2, two interactions, r_max 5 Å,
float32) and its supervised loss (energy MSE + 80 × force MSE, forces by autograd with
``create_graph``) on a batch of 5 frames of the bundled-data molecule; what is timed is the
loss and its gradient on every parameter, i.e. the part of a training step that is 85-95 %
of its time (benchmarks/results/train_step_profile_cpu.md). Three ways, interleaved on one
thread:

* ``eager``: what ``empp-ff train`` does today (autograd, double backward);
* ``traced``: the same function traced by ``make_fx`` into one flat graph of aten operations
  (forward, force gradient and parameter gradient written out), run op by op;
* ``inductor``: that graph compiled by ``torch.compile`` (Inductor's C++ code on a CPU).

``--shapes symbolic`` traces with symbolic sizes (one graph for any atom and edge count, as a
training run needs) and checks it on a 3-frame batch too; ``static`` traces the one batch's
sizes. The gradients of each way are compared with eager's. The loss targets are random:
the graph, not the physics, is what is timed.

    python benchmarks/compiled_step_probe.py --shapes symbolic --out benchmarks/results/compiled_step_probe_cpu
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _batch(molecule: str, frames: int, r_max: float):
    from empp_ff.testing.batches import collate, molecule_graph

    data = np.load(DATA / f"md17_{molecule}.npz")
    numbers = torch.as_tensor(data["z"]).long()
    positions = torch.as_tensor(data["R"][:frames], dtype=torch.float32)
    return numbers, collate([molecule_graph(p, numbers, r_max, energy=0.0, forces=torch.zeros_like(p))
                             for p in positions])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--shapes", choices=("static", "symbolic"), default="symbolic")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=None, help="OUT.json and OUT.md (default: print only)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    from e3nn import set_optimization_defaults
    from torch.fx.experimental.proxy_tensor import make_fx

    from empp_ff.testing.benchmarking import interleaved, load_average, machine_info, write_results
    from empp_ff.testing.models import demo_potential, demo_spec

    set_optimization_defaults(jit_script_fx=False)  # e3nn's TorchScript codegen cannot be traced (mace's compile path)
    load_start = load_average()
    numbers, batch = _batch(args.molecule, 5, 5.0)
    _, small = _batch(args.molecule, 3, 5.0)
    spec = demo_spec(sorted(set(numbers.tolist())), num_channels=32, max_L=1, num_interactions=2, correlation=2,
                     r_max=5.0, dtype="float32", radial_mlp=[64, 64, 64], mlp_irreps="16x0e", num_bessel=8)
    potential = demo_potential(spec).train()
    names = [n for n, _ in potential.named_parameters()]
    params = [p.detach() for _, p in potential.named_parameters()]
    buffer_names = [n for n, _ in potential.named_buffers()]
    buffers = [b for _, b in potential.named_buffers()]
    generator = torch.Generator().manual_seed(0)

    def inputs(b):
        energy = torch.randn(int(b.num_graphs), generator=generator)
        forces = torch.randn(b.positions.shape, generator=generator)
        return (b.positions, b.atomic_numbers, b.edge_index, b.shifts, b.batch, energy, forces, *buffers)

    def loss_and_gradients(params, positions, numbers, edges, shifts, graph_of, energy, forces, *buffer_values):
        leaves = [p.detach().requires_grad_(True) for p in params]
        state = {**dict(zip(names, leaves)), **dict(zip(buffer_names, buffer_values))}
        out = torch.func.functional_call(potential, state, (positions, numbers, edges, shifts, graph_of,
                                                            energy.shape[0]),
                                         {"compute_forces": True, "create_graph": True})
        loss = ((out["energy"] - energy) ** 2).mean() + 80.0 * ((out["forces"] - forces) ** 2).mean()
        return [loss, *torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)]

    big, little = inputs(batch), inputs(small)
    reference = loss_and_gradients(params, *big)
    reference_small = loss_and_gradients(params, *little)
    start = time.perf_counter()
    traced = make_fx(loss_and_gradients, tracing_mode=args.shapes)(params, *big)
    trace_s = time.perf_counter() - start
    compiled = torch.compile(traced, dynamic=args.shapes == "symbolic")
    start = time.perf_counter()
    compiled(params, *big)
    compile_s = time.perf_counter() - start

    def worst(a, b):
        return max(float((x - y).abs().max() / y.abs().max().clamp(min=1e-30)) for x, y in zip(a, b))

    errors = {"traced": worst(traced(params, *big), reference), "inductor": worst(compiled(params, *big), reference)}
    other_size = None
    if args.shapes == "symbolic":  # does the one graph take another batch size?
        try:
            errors["inductor_3_frames"] = worst(compiled(params, *little), reference_small)
            other_size = "ran"
        except Exception as exc:  # the finding to record, not a failure of the probe
            lines = str(exc).strip().splitlines()
            cause = next((line for line in lines if "got RuntimeError" in line), lines[0])
            other_size = f"{type(exc).__name__}: {cause.strip()[:400]}"

    def timed(fn):
        def run():
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        return run

    times = interleaved({"eager": timed(lambda: loss_and_gradients(params, *big)),
                         "traced": timed(lambda: traced(params, *big)),
                         "inductor": timed(lambda: compiled(params, *big))}, steps=args.rounds, warmup=args.warmup)
    median = {k: float(np.median(v)) for k, v in times.items()}
    doc = {"command": "python benchmarks/compiled_step_probe.py " + " ".join(
               f"--{k} {v}" for k, v in vars(args).items() if v is not None),
           "machine": machine_info(), "load_start": load_start, "load_end": load_average(),
           "molecule": args.molecule, "shapes": args.shapes, "graph_nodes": len(traced.graph.nodes),
           "trace_s": round(trace_s, 1), "compile_s": round(compile_s, 1),
           "median_ms": {k: round(1000 * v, 2) for k, v in median.items()},
           "eager_over_inductor": round(median["eager"] / median["inductor"], 2),
           "eager_over_traced": round(median["eager"] / median["traced"], 2),
           "max_relative_error_vs_eager": errors, "three_frame_batch_through_the_same_graph": other_size}
    print(doc)
    if args.out:
        rows = "\n".join(f"| {k} | {1000 * v:.1f} | {median['eager'] / v:.2f} |" for k, v in median.items())
        write_results(args.out, doc, f"# Compiled training step, probe (issue 26)\n\n`{doc['command']}`\n\n"
                      f"{doc['machine']['cpu']}, {doc['machine']['cores']} cores, torch {doc['machine']['torch']}, "
                      f"one thread; load {load_start} at the start, {doc['load_end']} at the end (other jobs ran).\n"
                      f"Demo-architecture MACE, 5 {args.molecule} frames, {args.shapes} shapes: trace "
                      f"{doc['trace_s']} s ({doc['graph_nodes']} nodes), compile {doc['compile_s']} s.\n\n"
                      f"| way | median ms (loss + all gradients) | eager / way |\n|---|---|---|\n{rows}\n\n"
                      f"Largest relative difference from eager (loss and every gradient): {errors}\n\n"
                      f"A 3-frame batch through the same graph: {other_size}\n")


if __name__ == "__main__":
    main()
