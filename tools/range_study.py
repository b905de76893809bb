#!/usr/bin/env python3
"""Range-method study for wq's affine quantization (numpy prototype, not the C++ contract).

For every tensor of >= 2 dimensions of a safetensors file (rows = shape[0], cols = the rest,
groups never crossing rows) it measures the per-tensor SQNR in dB,
10*log10(sum x^2 / sum (x - x')^2) accumulated in float64, of these range methods:

  minmax   wq's current method: lo = min, hi = max, scale = (hi-lo)/(2^b-1), min = lo,
           q = clamp(rint((x-min)/scale), 0, 2^b-1), x' = scale*q + min, in float32, with
           scale and min rounded to the stored dtype first (checked against
           tests/reference/wq_reference.py, the reference of the C++ arithmetic)
  sym-a    zero exact, one scale per group: k = 2^(b-1)-1, d = max|x|/k,
           q = clamp(rint(x/d), -k, k), x' = d*q  (2^b - 1 codes used)
  sym-b    k = 2^(b-1), d = m/(-k) where m is the element of largest |x| (signed),
           q = clamp(rint(x/d), -k, k-1), x' = d*q  (all 2^b codes; m itself is exact)
  sym-mse  sym-b plus the scale search below (least-squares d = sum(xq)/sum(q^2))
  mse      search per group: candidates are minmax itself and scales f * minmax_scale
           centred on the group's range; each candidate is rounded, refitted by least
           squares (scale, min) and re-rounded R times; the state with the least squared
           error is kept, so it is never worse than minmax

Granularities: tensor, channel, and groups of 32 / 64 / 128. Scales and mins are stored as
float16 by default (--scale-dtype), so at group G affine costs b + 32/G bits per weight and
symmetric b + 16/G: sym at G=32 costs what affine does at G=64.

Usage:
  python3 tools/range_study.py FILE.safetensors [--bits 2-8] [--max-elems N] [--sweep]
          [--mse PRESET] [--json OUT.json]
--sweep compares the mse presets (cost = rounding passes per element) at groups of 64 and
per channel for bits 2-4 and 8; without it the main tables are printed for every method.
--max-elems N keeps at most about N elements of a tensor (evenly spaced whole rows).
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import wq_reference as ref  # noqa: E402

F32 = np.float32


def offsets(lo, hi, k):
    """candidate factors L/(L+d), d in linspace(lo, hi, k): depends on bits (see presets)."""
    return ("offset", lo, hi, k)


def factors(lo, hi, k):
    """candidate factors f in linspace(lo, hi, k) on the minmax scale."""
    return ("factor", lo, hi, k)


# name -> (candidate family or None, refits R); minmax is always a candidate besides these
PRESETS = {
    "minmax": (None, 0),
    "refine2": (None, 2),
    "refine4": (None, 4),
    "refine8": (None, 8),
    "off3-R2": (offsets(-1, 1, 3), 2),
    "off3-R3": (offsets(-1, 1, 3), 3),
    "off3-R4": (offsets(-1, 1, 3), 4),
    "off5-R1": (offsets(-1, 1, 5), 1),
    "off5-R2": (offsets(-1, 1, 5), 2),
    "off5-R4": (offsets(-1, 1, 5), 4),
    "off5-R6": (offsets(-1, 1, 5), 6),
    "off11-R1": (offsets(-1, 1, 11), 1),
    "off11-R2": (offsets(-1, 1, 11), 2),
    "off21-R2": (offsets(-1, 1, 21), 2),
    "offneg6-R2": (offsets(-1, 0, 6), 2),
    "fac6-R3": (factors(0.75, 1.0, 6), 3),
    "fac21-R2": (factors(0.5, 1.05, 21), 2),
    "off5+clip-R4": (("both", offsets(-1, 1, 5), factors(0.5, 0.9, 5)), 4),
}


def candidate_factors(spec, levels):
    if spec is None:
        return []
    if spec[0] == "both":
        return candidate_factors(spec[1], levels) + candidate_factors(spec[2], levels)
    kind, lo, hi, k = spec
    v = np.linspace(lo, hi, k)
    if kind == "offset":
        with np.errstate(divide="ignore"):
            v = levels / (levels + v)  # at 1 bit, L/(L-1) is infinite: dropped below
    return [float(f) for f in v if f != 1.0 and 0 < f < np.inf]


# --------------------------------------------------------------------------------------
# data


def load(path, max_elems):
    st = ref.SafeTensorsFile(path)
    out, sub = [], 0
    for name in st.names():
        shape, dt = st.shape(name), st.dtype(name)
        if len(shape) < 2 or dt not in ref.FLOAT_DTYPES or math.prod(shape) == 0:
            continue
        x = ref.to_float32(st.raw(name), dt).reshape(shape[0], -1)
        if max_elems and x.size > max_elems:
            keep = max(1, max_elems // x.shape[1])
            x = x[np.linspace(0, x.shape[0] - 1, keep).round().astype(int)]
            sub += 1
        if np.any(x):
            out.append((name, np.ascontiguousarray(x)))
    return out, sub


class Buckets:
    """All groups of all tensors at one granularity, as padded 2-D blocks by width."""

    def __init__(self, tensors, g):
        blocks = {}
        for t, (_, x) in enumerate(tensors):
            rows, cols = x.shape
            if g == "tensor":
                X, n = x.reshape(1, -1), np.array([x.size])
            elif g == "channel":
                X, n = x, np.full(rows, cols)
            else:
                per = -(-cols // g)
                X = np.zeros((rows, per * g), F32)
                X[:, :cols] = x
                X = X.reshape(rows * per, g)
                n = np.tile(np.minimum(g, cols - np.arange(per) * g), rows)
            blocks.setdefault(X.shape[1], []).append((X, n, np.full(len(n), t)))
        self.blocks = []
        for w, parts in blocks.items():
            X = np.concatenate([p[0] for p in parts])
            n = np.concatenate([p[1] for p in parts])
            tid = np.concatenate([p[2] for p in parts])
            M = None
            if (n < w).any():
                M = (np.arange(w)[None, :] < n[:, None])
            big = np.where(M, X, F32(np.inf)) if M is not None else X
            lo = big.min(1) + F32(0)
            big = np.where(M, X, F32(-np.inf)) if M is not None else X
            hi = big.max(1) + F32(0)
            ax = np.abs(X)
            am = ax.argmax(1)
            signed = X[np.arange(len(X)), am]
            self.blocks.append(dict(X=X, M=M, n=n.astype(np.float64), tid=tid, lo=lo, hi=hi,
                                    signed=signed, Sx=msum(X, M)))
        self.ntensors = len(tensors)
        self.sumsq = np.array([np.sum(x.astype(np.float64) ** 2) for _, x in tensors])

    def per_tensor(self, errs):
        tot = np.zeros(self.ntensors)
        for b, e in zip(self.blocks, errs):
            tot += np.bincount(b["tid"], weights=e, minlength=self.ntensors)
        return tot


def msum(A, M):
    if M is not None:
        A = np.where(M, A, 0)
    return np.sum(A, axis=1, dtype=np.float64)


class Store:
    def __init__(self, dtype):
        self.f16 = dtype == "f16"

    def __call__(self, v):
        v = np.asarray(v).astype(F32)
        if self.f16:
            with np.errstate(over="ignore"):
                v = v.astype(np.float16).astype(F32)
        return v


# --------------------------------------------------------------------------------------
# one rounding pass


def affine_pass(b, s, m, levels):
    """codes for stored (s, m), their squared error and the sums for a least-squares fit."""
    X, M = b["X"], b["M"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (X - m[:, None]) / s[:, None]
    t = np.where((s == 0)[:, None], F32(0), t)
    q = np.clip(np.rint(t), F32(0), F32(levels))
    d = (s[:, None] * q + m[:, None]) - X
    return q, msum(d.astype(np.float64) ** 2, M)


def ls_affine(b, q, store):
    M, n = b["M"], b["n"]
    Sq, Sqq, Sqx = msum(q, M), msum(q * q, M), msum(q * b["X"], M)
    det = n * Sqq - Sq * Sq
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (n * Sqx - Sq * b["Sx"]) / det
        m = (b["Sx"] - s * Sq) / n
    ok = (det > 0) & np.isfinite(s) & (s > 0)
    s, m = store(np.where(ok, s, 0)), store(np.where(ok, m, 0))
    return s, m, ok & np.isfinite(s) & np.isfinite(m) & (s > 0)


def sym_pass(b, d, qlo, qhi):
    X, M = b["X"], b["M"]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = X / d[:, None]
    t = np.where((d == 0)[:, None], F32(0), t)
    q = np.clip(np.rint(t), F32(qlo), F32(qhi))
    with np.errstate(invalid="ignore"):
        return q, msum((d[:, None] * q - X).astype(np.float64) ** 2, M)


def ls_sym(b, q, store):
    M = b["M"]
    Sqq, Sqx = msum(q * q, M), msum(q * b["X"], M)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = Sqx / Sqq
    ok = (Sqq > 0) & np.isfinite(d)
    d = store(np.where(ok, d, 0))
    return d, ok & np.isfinite(d)


# --------------------------------------------------------------------------------------
# methods: each returns the per-group squared errors of every block


def minmax_params(b, bits, store):
    levels = (1 << bits) - 1
    s = store((b["hi"] - b["lo"]) / F32(levels))
    return s, store(b["lo"])


def run_minmax(bk, bits, store):
    out = []
    for b in bk.blocks:
        s, m = minmax_params(b, bits, store)
        out.append(affine_pass(b, s, m, (1 << bits) - 1)[1])
    return out


def run_mse(bk, bits, store, preset):
    spec, refits = PRESETS[preset]
    levels = (1 << bits) - 1
    fs = candidate_factors(spec, levels)
    out = []
    for b in bk.blocks:
        s_mm, m_mm = minmax_params(b, bits, store)
        mid = (b["lo"].astype(np.float64) + b["hi"]) / 2
        best = None
        for f in [None] + fs:
            if f is None:
                s, m, ok = s_mm, m_mm, np.ones(len(s_mm), bool)
            else:
                s = store(s_mm.astype(np.float64) * f)
                m = store(mid - s.astype(np.float64) * levels / 2)
                ok = np.isfinite(s) & np.isfinite(m) & (s > 0)
            for r in range(refits + 1):
                q, e = affine_pass(b, s, m, levels)
                e = np.where(ok, e, np.inf)
                best = e if best is None else np.minimum(best, e)
                if r < refits:
                    s2, m2, ok2 = ls_affine(b, q, store)
                    ok = ok & ok2
                    s, m = np.where(ok, s2, s_mm), np.where(ok, m2, m_mm)
        out.append(best)
    return out


def sym_params(b, bits, store, kind):
    if kind == "a":  # no code at 1 bit (k = 0): d is infinite, the SQNR -inf
        k = (1 << (bits - 1)) - 1
        with np.errstate(divide="ignore"):
            return store(np.maximum(np.abs(b["lo"]), np.abs(b["hi"])) / F32(k)), -k, k
    k = 1 << (bits - 1)
    return store(b["signed"] / F32(-k)), -k, k - 1


def run_sym(bk, bits, store, kind, preset=None):
    out = []
    spec, refits = PRESETS[preset] if preset else (None, 0)
    fs = candidate_factors(spec, (1 << bits) - 1)
    for b in bk.blocks:
        d0, qlo, qhi = sym_params(b, bits, store, kind)
        best = None
        for f in [None] + fs:
            d = d0 if f is None else store(d0.astype(np.float64) * f)
            ok = np.isfinite(d)
            for r in range(refits + 1):
                q, e = sym_pass(b, d, qlo, qhi)
                e = np.where(ok, e, np.inf)
                best = e if best is None else np.minimum(best, e)
                if r < refits:
                    d2, ok2 = ls_sym(b, q, store)
                    ok = ok & ok2
                    d = np.where(ok, d2, d0)
        out.append(best)
    return out


def exact2_errors(bk):
    """Least possible squared error of each group at 2 bits over every real (scale, min):
    the codes of sorted values are 4 runs, so try every split into runs, fit (scale, min)
    by least squares to each, keep the best (a bound: stored params are rounded)."""
    out = []
    for b in bk.blocks:
        err = np.zeros(len(b["X"]))
        for n in np.unique(b["n"]).astype(int):
            rows = np.flatnonzero(b["n"] == n)
            xs = np.sort(b["X"][rows, :n].astype(np.float64), axis=1)
            P = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(xs, axis=1)], axis=1)
            i, j = np.triu_indices(n + 1)  # pairs i <= j, then a third end t >= j
            a, bb, c = [], [], []
            for t in range(n + 1):  # i <= j <= t
                sel = j <= t
                a.append(i[sel]), bb.append(j[sel]), c.append(np.full(sel.sum(), t))
            a, bb, c = np.concatenate(a), np.concatenate(bb), np.concatenate(c)
            sq = (bb - a) + 2 * (c - bb) + 3 * (n - c)
            sqq = (bb - a) + 4 * (c - bb) + 9 * (n - c)
            vq = sqq - sq * sq / n
            inv = np.where(vq > 0, 1 / np.where(vq > 0, vq, 1), 0)
            base = np.sum((xs - xs.mean(1, keepdims=True)) ** 2, axis=1)
            best = np.zeros(len(rows))
            for r0 in range(0, len(rows), 32):
                Pc = P[r0:r0 + 32]
                cov = Pc[:, n:n + 1] * (3 - sq / n) - Pc[:, a] - Pc[:, bb] - Pc[:, c]
                best[r0:r0 + 32] = np.max(cov * cov * inv, axis=1)
            err[rows] = np.maximum(base - best, 0)
        out.append(err)
    return out


# --------------------------------------------------------------------------------------
# statistics


def sqnr(sumsq, err):
    with np.errstate(divide="ignore"):
        return 10 * np.log10(sumsq / err)


def summary(bk, err_t):
    s = sqnr(bk.sumsq, err_t)
    return dict(median=float(np.median(s)), min=float(np.min(s)),
                pooled=float(sqnr(bk.sumsq.sum(), err_t.sum())), per_tensor=s.tolist())


def gain_stats(a, b):
    """per-tensor SQNR gain of a over b (lists of dB)."""
    a, b = np.array(a), np.array(b)
    g = np.where(np.isinf(a) & np.isinf(b), 0.0, a - b)
    return dict(median=float(np.median(g)), min=float(g.min()), worse=int((g < -1e-9).sum()))


def check_reference(tensors, bits, gran, store, got_err, scale_dtype):
    """minmax must be the reference's arithmetic (up to fma vs separate multiply-add)."""
    for t, (name, x) in enumerate(tensors):
        if gran == "tensor":
            st, ln, _ = ref.group_layout(list(x.shape), "tensor", 0)
        elif gran == "channel":
            st, ln, _ = ref.group_layout(list(x.shape), "channel", 0)
        else:
            st, ln, _ = ref.group_layout(list(x.shape), "group", gran)
        flat = x.reshape(-1)
        q, sc, mn = ref.quantize(flat, st, ln, bits, scale_dtype)
        dec = ref.dequantize(q, sc, mn, ln)
        e = np.sum((dec.astype(np.float64) - flat) ** 2)
        if not math.isclose(e, got_err[t], rel_tol=1e-4, abs_tol=1e-30):
            sys.exit(f"minmax disagrees with the reference on {name} ({gran}, {bits} bits): "
                     f"{e} vs {got_err[t]}")


# --------------------------------------------------------------------------------------


def fmt_row(cells):
    return "| " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("file")
    ap.add_argument("--bits", default="2-8", help="e.g. 2-8 or 2,4")
    ap.add_argument("--scale-dtype", choices=("f16", "f32"), default="f16")
    ap.add_argument("--max-elems", type=int, default=0)
    ap.add_argument("--mse", default="off3-R4", choices=sorted(PRESETS))
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--exact2", action="store_true",
                    help="also the exact 2-bit optimum at groups of 64 (a bound on mse)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if "-" in args.bits:
        a, b = args.bits.split("-")
        bits_list = list(range(int(a), int(b) + 1))
    else:
        bits_list = [int(v) for v in args.bits.split(",")]
    t0 = time.process_time()
    tensors, sub = load(args.file, args.max_elems)
    store = Store(args.scale_dtype)
    n = sum(x.size for _, x in tensors)
    print(f"{args.file}: {len(tensors)} tensors, {n:,} elements"
          + (f" ({sub} subsampled to <= {args.max_elems} elements)" if sub else "")
          + f"; scales/mins stored as {args.scale_dtype}")
    result = {"file": args.file, "tensors": [t for t, _ in tensors], "elements": n}
    grans = {"tensor": "tensor", "channel": "channel", 32: "g32", 64: "g64", 128: "g128"}
    bks = {g: Buckets(tensors, g) for g in grans}
    small = np.array([x.shape[1] < 64 for _, x in tensors])
    if args.sweep:
        print("\n## mse presets: median / min per-tensor gain over minmax (dB), "
              "time; cost = rounding passes per element\n")
        sweep = {}
        for g in ("channel", 64):
            for bits in [v for v in bits_list if v in (2, 3, 4, 8)]:
                mm = bks[g].per_tensor(run_minmax(bks[g], bits, store))
                base = sqnr(bks[g].sumsq, mm)
                for p in PRESETS:
                    if p == "minmax":
                        continue
                    c0 = time.process_time()
                    e = bks[g].per_tensor(run_mse(bks[g], bits, store, p))
                    dt = time.process_time() - c0
                    gs = gain_stats(sqnr(bks[g].sumsq, e), base)
                    sweep.setdefault(p, {})[f"{grans[g]}/{bits}"] = (gs, dt)
        cols = list(next(iter(sweep.values())))
        print(fmt_row(["preset", "cost"] + cols + ["worse"]))
        print(fmt_row(["---"] * (len(cols) + 3)))
        for p, row in sweep.items():
            spec, refits = PRESETS[p]
            cost = (1 + len(candidate_factors(spec, 15))) * (1 + refits)
            cells = [f"{row[c][0]['median']:+.2f} / {row[c][0]['min']:+.2f}" for c in cols]
            worse = sum(row[c][0]["worse"] for c in cols)
            print(fmt_row([p, str(cost)] + cells + [str(worse)]))
        tt = {p: sum(v[1] for v in row.values()) for p, row in sweep.items()}
        print("\ncpu seconds per preset (all columns): "
              + ", ".join(f"{p} {t:.1f}" for p, t in tt.items()))
        result["sweep"] = {p: {c: v[0] for c, v in row.items()} for p, row in sweep.items()}
    else:
        res = {}
        for g, gname in grans.items():
            for bits in bits_list:
                bk = bks[g]
                mm = bk.per_tensor(run_minmax(bk, bits, store))
                check_reference(tensors[:8], bits, g, store, mm, args.scale_dtype)
                r = {"minmax": summary(bk, mm)}
                r["mse"] = summary(bk, bk.per_tensor(run_mse(bk, bits, store, args.mse)))
                for kind in ("a", "b"):
                    r["sym-" + kind] = summary(bk, bk.per_tensor(run_sym(bk, bits, store, kind)))
                r["sym-mse"] = summary(bk, bk.per_tensor(
                    run_sym(bk, bits, store, "b", args.mse)))
                res[(gname, bits)] = r
        result["results"] = {f"{g}/{b}": r for (g, b), r in res.items()}
        print(f"\n## SQNR dB per tensor: median / min / pooled (mse preset {args.mse})\n")
        meths = ["minmax", "mse", "sym-a", "sym-b", "sym-mse"]
        print(fmt_row(["gran", "bits"] + meths + ["mse-minmax median / min", "mse worse"]))
        print(fmt_row(["---"] * (len(meths) + 4)))
        for (g, bits), r in res.items():
            gs = gain_stats(r["mse"]["per_tensor"], r["minmax"]["per_tensor"])
            cells = [f"{r[m]['median']:.2f} / {r[m]['min']:.2f} / {r[m]['pooled']:.2f}"
                     for m in meths]
            print(fmt_row([g, str(bits)] + cells
                          + [f"{gs['median']:+.2f} / {gs['min']:+.2f}", str(gs["worse"])]))
        print("\n## symmetric vs affine: median per-tensor SQNR difference (dB), "
              "sym minus affine\n")
        pairs = [("same G=64 (sym 0.25 bit cheaper)", "g64", "g64", "minmax"),
                 ("b+0.5 bpw: sym G=32 vs minmax G=64", "g32", "g64", "minmax"),
                 ("b+0.25 bpw: sym G=64 vs minmax G=128", "g64", "g128", "minmax"),
                 ("b+0.5 bpw: sym G=32 vs mse G=64", "g32", "g64", "mse")]
        print(fmt_row(["comparison", "sym"] + [str(b) for b in bits_list]))
        print(fmt_row(["---"] * (len(bits_list) + 2)))
        for label, gs_, ga, am in pairs:
            for sm in ("sym-a", "sym-b", "sym-mse"):
                cells = []
                for bits in bits_list:
                    d = gain_stats(res[(gs_, bits)][sm]["per_tensor"],
                                   res[(ga, bits)][am]["per_tensor"])
                    cells.append(f"{d['median']:+.2f}")
                print(fmt_row([label, sm] + cells))
        print("\n## mse gain over minmax at G=64 by row length: median per-tensor (dB)\n")
        print(fmt_row(["tensors", "count"] + [str(b) for b in bits_list]))
        print(fmt_row(["---"] * (len(bits_list) + 2)))
        for label, sel in (("cols < 64 (a group is a whole row)", small),
                           ("cols >= 64", ~small)):
            cells = []
            for bits in bits_list:
                r = res[("g64", bits)]
                g = np.array(r["mse"]["per_tensor"]) - np.array(r["minmax"]["per_tensor"])
                cells.append(f"{np.median(g[sel]):+.2f}" if sel.any() else "-")
            print(fmt_row([label, str(int(sel.sum()))] + cells))
    if args.exact2:
        bk = bks[64]
        base = sqnr(bk.sumsq, bk.per_tensor(run_minmax(bk, 2, store)))
        ex = gain_stats(sqnr(bk.sumsq, bk.per_tensor(exact2_errors(bk))), base)
        print(f"\nexact 2-bit optimum at G=64, per-tensor gain over minmax: median "
              f"{ex['median']:+.2f} dB, min {ex['min']:+.2f} dB")
        result["exact2_g64"] = ex
    print(f"\ncpu time {time.process_time() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
