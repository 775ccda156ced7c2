"""GEOM-scale data benchmark (issue 6 "Scale out"): >= 1 M conformers, flat memory.

Phases, each in its own subprocess so each peak RSS (VmHWM) is that phase's own:

1. generate  a synthetic GEOM-like ``drugs_crude``-schema msgpack file, streamed
             to disk: molecules of 15-40 atoms (H, C, N, O, S), conformers =
             perturbed copies of a few base geometries, ``totalenergy`` in Hartree.
2. convert   ``empp_ff.data.conversion.convert`` (the code path of ``empp-ff data
             convert``) into the ragged HDF5 store; RSS is sampled after 1k, 10k,
             100k, ..., 1M conformers through a counting wrapper around the reader.
             Also times the reader alone on the first 100k conformers, so the
             split reader / writer is visible.
3. load      random structures from the store through ``GraphDataset`` and a
             ``BudgetBatchSampler`` PyG DataLoader, for a fixed number of batches.
4. train     a short energy-only training run on the store (``run_training``:
             1 epoch on data.n_train=2000 / n_val=200 / n_test=200, tiny model).

Usage::

    python benchmarks/geom_scale.py                      # 1,000,000 conformers
    python benchmarks/geom_scale.py --conformers 20000 --out /tmp/x   # quick look

Writes ``<out>/geom_scale_cpu.json`` and ``.md``. The msgpack file and the store
are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from empp_ff.testing.benchmarking import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
MILESTONES = (1_000, 10_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, 2_000_000, 5_000_000)

# Approximate GFN2-xTB atomic energies (Hartree) so totals look like GEOM's.
E_ATOM = {1: -0.393, 6: -1.793, 7: -2.606, 8: -3.768, 16: -3.889}


def mem() -> dict:
    """Current and peak resident set size of this process, MiB (Linux /proc)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return {"rss_mib": round(out.get("VmRSS", float("nan")), 1), "peak_rss_mib": round(out.get("VmHWM", float("nan")), 1)}


# ----------------------------------------------------------------------------- phases
def _base_geometry(rng, n_atoms: int):
    """A sane-looking molecule: heavy atoms on a self-avoiding random walk (1.4-1.6 Å
    steps, >= 1.3 Å apart), hydrogens at ~1.09 Å; all pairs >= ~0.9 Å."""
    import numpy as np

    n_heavy = max(2, int(round(n_atoms * 0.55)))
    n_h = n_atoms - n_heavy
    heavy_z = rng.choice([6, 6, 6, 6, 7, 8, 16], size=n_heavy, p=None)
    pos = [np.zeros(3)]
    while len(pos) < n_heavy:
        base = pos[rng.integers(max(0, len(pos) - 3), len(pos))]
        d = rng.normal(size=3)
        cand = base + d / np.linalg.norm(d) * rng.uniform(1.4, 1.6)
        if min(np.linalg.norm(cand - p) for p in pos) >= 1.3:
            pos.append(cand)
    hs = []
    while len(hs) < n_h:
        base = pos[rng.integers(0, n_heavy)]
        d = rng.normal(size=3)
        cand = base + d / np.linalg.norm(d) * 1.09
        if min(np.linalg.norm(cand - p) for p in pos + hs) >= 0.95:
            hs.append(cand)
    z = np.concatenate([heavy_z, np.ones(n_h, dtype=np.int64)]).astype(np.int64)
    return z, np.array(pos + hs)


def phase_generate(a) -> dict:
    import msgpack
    import numpy as np

    rng = np.random.default_rng(a.seed)
    n_mol = a.molecules
    per = [a.conformers // n_mol + (1 if i < a.conformers % n_mol else 0) for i in range(n_mol)]
    t0 = time.perf_counter()
    packer = msgpack.Packer(use_bin_type=True)
    mols_per_chunk = 1000  # GEOM's files are chunks of ~1000 molecules
    written = 0
    with open(a.msgpack, "wb") as fh:
        for c0 in range(0, n_mol, mols_per_chunk):
            ids = range(c0, min(n_mol, c0 + mols_per_chunk))
            fh.write(packer.pack_map_header(len(ids)))  # chunk streamed, never built in memory
            for i in ids:
                n_atoms = int(rng.integers(15, 41))
                z, _ = _base_geometry(rng, n_atoms)
                bases = [_base_geometry(np.random.default_rng([a.seed, i, b]), n_atoms)[1] for b in range(3)]
                e0 = sum(E_ATOM[int(x)] for x in z)
                confs = []
                for k in range(per[i]):
                    pos = bases[k % 3] + rng.normal(scale=0.05, size=(n_atoms, 3))
                    e = e0 - 0.02 * n_atoms + 0.002 * rng.normal()
                    xyz = np.column_stack([z.astype(np.float64), pos]).tolist()
                    confs.append({"geom_id": written + k, "xyz": xyz, "totalenergy": float(e),
                                  "relativeenergy": 0.0, "boltzmannweight": 1.0 / per[i], "degeneracy": 1,
                                  "setenergy": float(e)})
                smiles = f"SYNTH{i:06d}" + "".join("CNOS"[j % 4] for j in range(n_atoms % 7))
                fh.write(packer.pack(smiles))
                fh.write(packer.pack({"conformers": confs, "totalconfs": per[i], "uniqueconfs": per[i],
                                      "charge": 0, "temperature": 298.15, "ensembleenergy": 0.0}))
                written += per[i]
    dt = time.perf_counter() - t0
    return {"conformers": written, "molecules": n_mol, "seconds": round(dt, 2),
            "file_mib": round(os.path.getsize(a.msgpack) / 2**20, 1), **mem()}


def phase_convert(a) -> dict:
    import empp_ff.data.readers as readers
    from empp_ff.data.conversion import convert
    from empp_ff.data.store import StructureStore

    # Reader alone on the first 100k conformers (where the time goes: reader vs writer).
    t0 = time.perf_counter()
    n_probe = 0
    for _ in readers.read_structures(a.msgpack):
        n_probe += 1
        if n_probe >= min(100_000, a.conformers):
            break
    reader_s = time.perf_counter() - t0
    m_probe = mem()

    samples = []
    orig = readers.read_structures
    start = time.perf_counter()

    def counting(*args, **kw):  # benchmark hook: convert() looks this up at call time
        for k, s in enumerate(orig(*args, **kw), 1):
            if k in MILESTONES:
                samples.append({"conformers": k, "seconds": round(time.perf_counter() - start, 2), **mem()})
            yield s

    readers.read_structures = counting
    try:
        if os.path.exists(a.store):
            os.remove(a.store)
        t0 = time.perf_counter()
        convert(a.msgpack, a.store, progress=False)
        dt = time.perf_counter() - t0
    finally:
        readers.read_structures = orig
    with StructureStore(a.store) as st:
        n = len(st)
        n_atoms = int(st.n_atoms.sum())
    return {"structures": n, "atoms": n_atoms, "seconds": round(dt, 2),
            "conformers_per_s": round(n / dt, 1), "store_mib": round(os.path.getsize(a.store) / 2**20, 1),
            "reader_only": {"conformers": n_probe, "seconds": round(reader_s, 2),
                            "conformers_per_s": round(n_probe / reader_s, 1), **m_probe},
            "rss_curve": samples, **mem()}


def phase_load(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from empp_ff.data.batching import make_budget_loader
    from empp_ff.data.dataset import GraphDataset
    from empp_ff.data.store import StructureStore

    m0 = mem()
    st = StructureStore(a.store)
    t0 = time.perf_counter()
    ds = GraphDataset(st, None, r_max=5.0, dtype=torch.float32)
    loader = make_budget_loader(ds, max_atoms=a.max_atoms, shuffle=True, seed=0, epoch=0)
    n_batches_epoch = len(loader)
    sampler_s = time.perf_counter() - t0
    curve, n_struct, n_atoms, n_edges = [], 0, 0, 0
    t0 = time.perf_counter()
    for b, batch in enumerate(loader, 1):
        n_struct += int(batch.num_graphs)
        n_atoms += int(batch.num_nodes)
        n_edges += int(batch.edge_index.shape[1])
        assert batch.num_nodes <= a.max_atoms or batch.num_graphs == 1
        if b in (1, 10, 100, 1000) or b == a.batches:
            curve.append({"batches": b, "structures": n_struct, "seconds": round(time.perf_counter() - t0, 2), **mem()})
        if b >= a.batches:
            break
    dt = time.perf_counter() - t0
    return {"max_atoms": a.max_atoms, "batches": b, "batches_per_epoch": n_batches_epoch,
            "sampler_setup_s": round(sampler_s, 2), "structures": n_struct, "atoms": n_atoms, "edges": n_edges,
            "mean_atoms_per_batch": round(n_atoms / b, 1), "seconds": round(dt, 2),
            "structures_per_s": round(n_struct / dt, 1), "rss_before": m0, "rss_curve": curve, **mem()}


def phase_train(a) -> dict:
    import torch

    try:
        from empp_ff.train.config import config_from_dict
        from empp_ff.train.trainer import run_training
    except ImportError as exc:
        return {"skipped": f"training API not importable: {exc}"}
    torch.set_num_threads(a.threads)
    run_dir = os.path.join(a.workdir, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = {
        "seed": 1,
        "run_dir": run_dir,
        "data": {"path": a.store, "n_train": a.n_train, "n_val": 200, "n_test": 200},
        "model": {"num_channels": 16, "max_L": 1, "num_interactions": 2, "correlation": 2, "radial_mlp": [16],
                  "num_bessel": 6, "r_max": 5.0},
        "loss": {"forces_weight": 0.0},
        "train": {"max_epochs": 1, "batch_size": 16, "eval_batch_size": 32, "lr": 5e-3, "warmup_epochs": 0.1,
                  "progress": False, "tensorboard": False, "device": "cpu", "threads": a.threads},
        "empp": {"enabled": a.empp},
    }
    m0 = mem()
    lines: list[str] = []
    empp_error = None
    t0 = time.perf_counter()
    try:
        result = run_training(config_from_dict(cfg), log=lines.append)
    except Exception as exc:  # noqa: BLE001 - an EMPP failure must not hide the data figures
        if not cfg["empp"]["enabled"]:
            raise
        empp_error = f"{type(exc).__name__}: {exc}"
        print(f"EMPP run failed ({empp_error}); retrying with empp.enabled=false", file=sys.stderr)
        cfg["empp"]["enabled"] = False
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.perf_counter()
        result = run_training(config_from_dict(cfg), log=lines.append)
    dt = time.perf_counter() - t0
    last = result.get("history", [{}])[-1] if isinstance(result, dict) and result.get("history") else {}
    summary = {k: v for k, v in (result or {}).items() if isinstance(v, (int, float, str, bool))}
    return {"config": cfg, "seconds": round(dt, 2), "steps": -(-a.n_train // 16), "rss_before": m0,
            "result": summary, "last_epoch": {k: v for k, v in last.items() if isinstance(v, (int, float, str))},
            "log_tail": lines[-5:], "empp_error": empp_error, **mem()}


PHASES = {"generate": phase_generate, "convert": phase_convert, "load": phase_load, "train": phase_train}


# ----------------------------------------------------------------------------- driver
def _disk_free_gib(path: str) -> float:
    return shutil.disk_usage(path).free / 2**30


def _markdown(doc: dict) -> str:
    g, c, ld, tr = (doc["phases"].get(k, {}) for k in ("generate", "convert", "load", "train"))
    out = [
        "# GEOM-scale data benchmark (CPU)",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {doc['machine']['cpu']}, {doc['machine']['cpus']} CPUs visible, torch threads {doc['args']['threads']}; "
        f"Python {doc['machine']['python']}; {doc['date']}",
        "",
        f"Synthetic GEOM `drugs_crude` schema: {g.get('molecules')} molecules (15-40 atoms, H/C/N/O/S), "
        f"{g.get('conformers')} conformers, {g.get('file_mib')} MiB msgpack; generated in {g.get('seconds')} s "
        f"(peak RSS {g.get('peak_rss_mib')} MiB).",
        "",
        "## Convert (`empp_ff.data.store.convert`, as `empp-ff data convert`)",
        "",
        f"{c.get('structures')} structures / {c.get('atoms')} atoms in {c.get('seconds')} s "
        f"= **{c.get('conformers_per_s')} conformers/s**; store {c.get('store_mib')} MiB. "
        f"Reader alone: {c.get('reader_only', {}).get('conformers_per_s')} conformers/s.",
        "",
        "| conformers read | elapsed s | RSS MiB | peak RSS MiB |",
        "|---:|---:|---:|---:|",
    ]
    for s in c.get("rss_curve", []):
        out.append(f"| {s['conformers']:,} | {s['seconds']} | {s['rss_mib']} | {s['peak_rss_mib']} |")
    out.append(f"| end (store closed) | {c.get('seconds')} | {c.get('rss_mib')} | {c.get('peak_rss_mib')} |")
    out += [
        "",
        f"## Load (GraphDataset + BudgetBatchSampler, max_atoms={ld.get('max_atoms')}, r_max 5 Å, shuffled over the whole store)",
        "",
        f"{ld.get('batches')} batches ({ld.get('batches_per_epoch')} per epoch; sampler set-up {ld.get('sampler_setup_s')} s), "
        f"{ld.get('structures')} structures, mean {ld.get('mean_atoms_per_batch')} atoms/batch, "
        f"{ld.get('seconds')} s = **{ld.get('structures_per_s')} structures/s** (1 process, no workers). "
        f"RSS before: {ld.get('rss_before', {}).get('rss_mib')} MiB (torch imported).",
        "",
        "| batches | structures | elapsed s | RSS MiB | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in ld.get("rss_curve", []):
        out.append(f"| {s['batches']} | {s['structures']} | {s['seconds']} | {s['rss_mib']} | {s['peak_rss_mib']} |")
    out += ["", "## Train (run_training on the store)", ""]
    if not tr or tr.get("skipped") or tr.get("error"):
        why = tr.get("skipped") or tr.get("error") or "phase not selected (--phases)"
        out.append(f"Not run: {why}. Loader-only figures above.")
    else:
        out.append(
            f"1 epoch, n_train {tr['config']['data']['n_train']} / n_val 200 (indices drawn from all "
            f"{c.get('structures')} structures), batch 16 ({tr.get('steps')} steps), num_channels 16, "
            f"EMPP {'on' if tr['config']['empp']['enabled'] else 'off'}, energy-only: {tr.get('seconds')} s; "
            f"RSS before {tr.get('rss_before', {}).get('rss_mib')} MiB, after {tr.get('rss_mib')} MiB, "
            f"peak {tr.get('peak_rss_mib')} MiB."
        )
        if tr.get("empp_error"):
            out.append("")
            out.append(f"The run with EMPP on failed and was repeated with EMPP off: `{tr['empp_error']}`.")
        if tr.get("last_epoch"):
            out.append("")
            out.append(f"Last epoch row: `{json.dumps(tr['last_epoch'])}`")
    out += ["", f"Disk: {doc.get('disk_free_gib_before')} GiB free before; temporary files "
            f"{'kept' if doc['args']['keep'] else 'deleted'}. Total wall time {doc.get('total_seconds')} s.", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conformers", type=int, default=1_000_000)
    ap.add_argument("--molecules", type=int, default=5_000)
    ap.add_argument("--workdir", default=None, help="temporary files (default: $TMPDIR/empp_geom_scale)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--name", default="geom_scale_cpu")
    ap.add_argument("--batches", type=int, default=300, help="batches read in the load phase")
    ap.add_argument("--max-atoms", type=int, default=1024)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--empp", action=argparse.BooleanOptionalAction, default=True, help="EMPP on in the train phase")
    ap.add_argument("--phases", default="generate,convert,load,train")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the msgpack file and the store")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.workdir = os.path.abspath(a.workdir or os.path.join(tempfile.gettempdir(), "empp_geom_scale"))
    a.msgpack = os.path.join(a.workdir, "drugs_crude_synth.msgpack")
    a.store = os.path.join(a.workdir, "drugs_crude_synth.h5")

    if a.phase:  # child process: run one phase, print its JSON as the last line
        res = PHASES[a.phase](a)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    os.makedirs(a.workdir, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    free = _disk_free_gib(a.workdir)
    need = a.conformers * 28 * 75 / 2**30 + 1  # msgpack + store, ~75 B/atom all told, + slack
    if free < need:
        print(f"only {free:.1f} GiB free in {a.workdir}; need about {need:.1f} GiB", file=sys.stderr)
        return 2
    doc = {
        "command": "python benchmarks/geom_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "args": {k: v for k, v in vars(a).items() if k != "phase"},
        "disk_free_gib_before": round(free, 1),
        "phases": {},
    }
    t_all = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED="1")
    try:
        for ph in a.phases.split(","):
            print(f"[geom_scale] phase {ph} ...", flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), "--phase", ph] + [
                x for x in (argv if argv is not None else sys.argv[1:])
            ]
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            res_line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not res_line:
                tail = (p.stdout + p.stderr)[-3000:]
                print(tail, file=sys.stderr)
                doc["phases"][ph] = {"error": f"exit {p.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}
                if ph in ("generate", "convert"):
                    break
                continue
            doc["phases"][ph] = json.loads(res_line[-1][len("RESULT "):])
            print(f"[geom_scale] {ph}: {json.dumps(doc['phases'][ph])[:600]}", flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(a.workdir, ignore_errors=True)
    doc["total_seconds"] = round(time.perf_counter() - t_all, 1)
    write_results(os.path.join(a.out, a.name), doc, _markdown(doc))
    print(f"[geom_scale] wrote {os.path.join(a.out, a.name + '.json')}")
    return 0 if not any("error" in v for v in doc["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
