#!/usr/bin/env python3
"""Writes the symmetric and mse known-answer cases of tests/data/codec_vectors.json.

The values come from the independent numpy reference (tests/reference/wq_reference.py),
which is written from docs/container-format.md §4 alone. The minmax cases already in the
file (those without a "method") are kept byte for byte; every symmetric and mse case is
replaced by the ones made here, so running this twice gives the same file.

Usage: /usr/bin/python3 tools/make_codec_vectors.py [--check]
  --check   write nothing; exit 1 if the file differs from what this script would write
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import wq_reference as ref  # noqa: E402

VECTORS = os.path.join(ROOT, "tests", "data", "codec_vectors.json")

ABOUT_MARK = " A case without \"method\""
ABOUT_METHODS = ABOUT_MARK + (
    " is minmax (docs/container-format.md \u00a74). \"method\": "
    "\"symmetric\" cases (\u00a74.2) have no min_f32_hex: the min is -2^(bits-1) * scale. "
    "\"method\": \"mse\" cases (\u00a74.1) also list, per group, the squared error with the "
    "min-max parameters (minmax_sq_err_f64_hex) and with the chosen ones (sq_err_f64_hex): "
    "the err of \u00a74.1 step 3, binary32 lanes and blocks of fmas added into binary64 lane "
    "totals. \"note\" says what a case is for. The symmetric and mse cases are written by "
    "tools/make_codec_vectors.py.")

U = np.float32(2.0 ** -149)  # the smallest binary32 subnormal


def f32(*v):
    return np.array(v, dtype=np.float64).astype(np.float32)


def events(x, bits, sdt):
    """What §4.1's search does on one group, from the literal implementation's trace."""
    trace = []
    ref.mse_group_scalar(x, bits, sdt, trace)
    out = set()
    for e in trace:
        if e[0] == "drop":
            out.add(("drop", e[1]))
        elif e[0] == "stop":
            out.add(("stop", e[1], e[3]))
    best = [e for e in trace if e[0] == "best"]
    if best:
        # winner: candidate (0 min-max, 1 grown, 2 shrunk) and whether a refit won
        out.add(("win", best[-1][1], best[-1][2] > 0))
    return out


def find_rows(rng, make, bits, sdt, want, count):
    """count rows from make(rng) whose search shows the event want (tried in a fixed order,
    so that the result depends on the seed only)."""
    rows = []
    for _ in range(20000):
        x = make(rng)
        try:
            if want in events(x, bits, sdt):
                rows.append(x)
        except ref.CannotQuantize:
            continue
        if len(rows) == count:
            return np.stack(rows)
    raise SystemExit(f"no rows with {want} found; change the family or the seed")


def random_rows(rng, rows, cols, offsets=None, scale=0.7):
    x = rng.standard_normal((rows, cols)) * scale
    if offsets is not None:
        x += np.asarray(offsets, dtype=np.float64)[:, None]
    return x.astype(np.float32)


def symmetric_cases():
    for b in range(1, 9):
        rng = np.random.default_rng(100 + b)
        # rows 1 and 2 are shifted so that both ends (m = hi and m = lo) are taken
        x = random_rows(rng, 5, 19, [0, 1.5, -1.5, 0, 0.2])
        yield dict(name=f"sym_random_5x19_{b}bit_group8", shape=[5, 19], bits=b, group_size=8,
                   x=x, note="random rows, groups of 8, 8 and a short 3 per row; rows 1/2 "
                             "shifted up/down so that m is hi in some groups and lo in others")
    rng = np.random.default_rng(201)
    yield dict(name="sym_f16_4bit_3x37_group16", shape=[3, 37], bits=4, group_size=16,
               scale_dtype="F16", x=random_rows(rng, 3, 37, scale=0.05),
               note="F16 scales, groups 16, 16, 5")
    rng = np.random.default_rng(202)
    yield dict(name="sym_f16_7bit_per_channel_4x13", shape=[4, 13], bits=7, group_size=13,
               scale_dtype="F16", x=random_rows(rng, 4, 13, [0, 3, -200, 0.001]),
               note="F16 scales, one group per row")
    yield dict(name="sym_constant_groups_4bit", shape=[5, 6], bits=4, group_size=6,
               x=np.array([[0.0] * 6, [-0.0, 0.0, -0.0, -0.0, 0.0, -0.0], [3.0] * 6,
                           [-2.5] * 6, [1e-3] * 6], np.float32),
               note="constant groups: zero (its scale is -0.0: +0.0 / -k), signed zeros, "
                    "3.0, -2.5, 1e-3")
    yield dict(name="sym_constant_groups_f16_2bit", shape=[4, 5], bits=2, group_size=5,
               scale_dtype="F16",
               x=np.array([[0.0] * 5, [7.0] * 5, [-0.1] * 5, [60000.0] * 5], np.float32),
               note="F16 constant groups; -0.1 / -2 is not a binary16 value, so the decoded "
                    "constant moves")
    rng = np.random.default_rng(203)
    yield dict(name="sym_all_negative_3bit", shape=[4, 9], bits=3, group_size=9,
               x=-rng.uniform(0.1, 5, (4, 9)).astype(np.float32),
               note="all-negative groups: m = lo, positive scale, codes above k are never used")
    rng = np.random.default_rng(204)
    yield dict(name="sym_all_positive_5bit", shape=[4, 9], bits=5, group_size=9,
               x=rng.uniform(0.1, 5, (4, 9)).astype(np.float32),
               note="all-positive groups: m = hi, negative scale")
    ties = np.array([[-2, 2, 0, 1, -1], [-0.75, 0.75, 0.25, -0.25, 0.5], [3, -3, -3, 3, 0],
                     [-1.5, 1.5, 0.1, 0.2, -1.49]], np.float32)
    for b in (1, 2, 8):
        yield dict(name=f"sym_ties_hi_eq_minus_lo_{b}bit", shape=[4, 5], bits=b, group_size=5,
                   x=ties, note="hi == -lo in every group: m = hi, so lo is clipped to the "
                                "last code")
    rng = np.random.default_rng(205)
    tiny = np.stack([1000 + rng.uniform(0, 1e-4, 7), 1e-30 * rng.standard_normal(7),
                     -5e-3 + rng.uniform(0, 1e-9, 7)]).astype(np.float32)
    yield dict(name="sym_tiny_range_8bit", shape=[3, 7], bits=8, group_size=7, x=tiny,
               note="ranges tiny next to the magnitude: everything lands on code 0 or 1")
    yield dict(name="sym_huge_range_5bit", shape=[3, 4], bits=5, group_size=4,
               x=f32([3.3e38, 1e38, 2e38, 3.0], [1.6e38, -1.5e38, 0.0, 1e37],
                     [-3.4e38, -1e38, -3e38, 1e30]),
               note="ends near FLT_MAX where no binary32 step overflows")
    yield dict(name="sym_huge_f16_4bit", shape=[3, 4], bits=4, group_size=4,
               scale_dtype="F16",
               x=f32([524152.0, 1.0, -70000.0, 3.0], [-500000.0, 1e5, 2.0, -3.0],
                     [65504.0 * 8, -1.0, 0.5, 400000.0]),
               note="F16 scales at the top of binary16: 524152 / -8 = -65519 rounds to -65504")
    yield dict(name="sym_subnormal_4bit", shape=[3, 4], bits=4, group_size=4,
               x=np.array([[13 * U, -3 * U, 0.0, 5 * U], [3 * U, U, 2 * U, 0.0],
                           [2.0 ** -126, -2.0 ** -127, 7 * U, -9 * U]], np.float32),
               note="subnormal inputs: 13u / -8 is inexact, so min = -8 * scale is not m")
    yield dict(name="sym_subnormal_f16_3bit", shape=[3, 4], bits=3, group_size=4,
               scale_dtype="F16",
               x=f32([1e-6, -3e-7, 2e-7, 0.0], [1e-9, -1e-9, 5e-10, 0.0],
                     [-2.4e-7, 1e-7, 6e-8, -1e-8]),
               note="F16 subnormal scales; the 1e-9 group's scale rounds to -0.0 (all codes 0)")
    rng = np.random.default_rng(206)
    x = random_rows(rng, 3, 16, scale=0.1)
    x[0, 3], x[1, 9], x[2, 0] = 5.0, -4.0, 2.0
    yield dict(name="sym_outlier_3bit", shape=[3, 16], bits=3, group_size=16, x=x,
               note="one outlier per group sets the scale")
    yield dict(name="sym_signed_zeros_2bit", shape=[3, 3], bits=2, group_size=3,
               x=np.array([[-0.0, 0.0, -0.0], [-0.0, 0.5, -1.0], [0.0, -0.0, 0.25]],
                          np.float32),
               note="-0.0 and +0.0 in the range (step 1 makes the ends +0.0)")
    rng = np.random.default_rng(207)
    yield dict(name="sym_per_tensor_6bit_len77", shape=[77], bits=6, group_size=0,
               x=(rng.standard_normal(77) * 3).astype(np.float32),
               note="one group for the whole tensor, 77 elements")
    rng = np.random.default_rng(208)
    yield dict(name="sym_short_groups_7bit_3x10_group4", shape=[3, 10], bits=7, group_size=4,
               x=random_rows(rng, 3, 10), note="groups of 4, 4, 2 per row")
    rng = np.random.default_rng(209)
    yield dict(name="sym_f16_1bit_2x7_group3", shape=[2, 7], bits=1, group_size=3,
               scale_dtype="F16", x=random_rows(rng, 2, 7, [0.3, -0.3]),
               note="1 bit (values m and 0), F16, groups 3, 3, 1")


def mse_cases():
    for b in range(1, 9):
        rng = np.random.default_rng(300 + b)
        x = np.stack([rng.standard_normal(19), rng.uniform(-1, 1, 19), rng.laplace(size=19),
                      np.abs(rng.standard_normal(19)) + 0.5, rng.standard_normal(19)])
        x[4, 5] = 9.0
        yield dict(name=f"mse_random_5x19_{b}bit_group8", shape=[5, 19], bits=b, group_size=8,
                   x=x.astype(np.float32),
                   note="normal, uniform, laplace, positive and outlier rows; groups 8, 8, 3")
    rng = np.random.default_rng(401)
    yield dict(name="mse_f16_4bit_3x37_group16", shape=[3, 37], bits=4, group_size=16,
               scale_dtype="F16", x=random_rows(rng, 3, 37, scale=0.05),
               note="F16 scales and mins, groups 16, 16, 5")
    rng = np.random.default_rng(402)
    yield dict(name="mse_f16_2bit_per_channel_4x29", shape=[4, 29], bits=2, group_size=29,
               scale_dtype="F16", x=random_rows(rng, 4, 29, [0, 5, -300, 0.01]),
               note="F16, one group per row")
    for b in (2, 3, 4):
        rng = np.random.default_rng(410 + b)
        x = rng.standard_normal((4, 32))
        for r in range(4):
            x[r, rng.integers(32)] = (8 + 4 * r) * (-1) ** r
        yield dict(name=f"mse_outliers_{b}bit", shape=[4, 32], bits=b, group_size=32,
                   x=x.astype(np.float32),
                   note="one outlier (8 to 20 sigma) per group: mse cuts the error (to about "
                        "a quarter at 2 bits)")
    yield dict(name="mse_constant_groups_4bit", shape=[5, 6], bits=4, group_size=6,
               x=np.array([[0.0] * 6, [-0.0, 0.0, -0.0, -0.0, 0.0, -0.0], [3.0] * 6,
                           [-2.5] * 6, [0.5, -0.25, 1.0, 0.0, 0.75, -1.0]], np.float32),
               note="constant groups keep min-max (scale 0, no search); the last row is not "
                    "constant")
    yield dict(name="mse_constant_f16_3bit", shape=[3, 4], bits=3, group_size=4,
               scale_dtype="F16", x=np.array([[0.1] * 4, [-7.0] * 4, [1000.3] * 4],
                                             np.float32),
               note="F16 constant groups whose value is not a binary16 value")
    rng = np.random.default_rng(420)
    yield dict(name="mse_all_negative_3bit", shape=[4, 9], bits=3, group_size=9,
               x=-rng.uniform(0.1, 5, (4, 9)).astype(np.float32), note="all-negative groups")
    rng = np.random.default_rng(421)
    yield dict(name="mse_all_positive_5bit", shape=[4, 9], bits=5, group_size=9,
               x=rng.uniform(0.1, 5, (4, 9)).astype(np.float32), note="all-positive groups")
    rng = np.random.default_rng(422)
    tiny = np.stack([1000 + rng.uniform(0, 1e-4, 12), 1e-30 * rng.standard_normal(12),
                     -5e-3 + rng.uniform(0, 1e-9, 12)]).astype(np.float32)
    yield dict(name="mse_tiny_range_6bit", shape=[3, 12], bits=6, group_size=12, x=tiny,
               note="ranges of a few ulps, and values near 1e-30")
    rng = np.random.default_rng(423)
    x = (rng.uniform(-1, 1, (3, 8)) * 1.6e38).astype(np.float32)
    x[2] = np.abs(x[2])
    yield dict(name="mse_huge_range_4bit", shape=[3, 8], bits=4, group_size=8, x=x,
               note="values near +-1.6e38 (hi - lo just below FLT_MAX): e*e and q*x overflow "
                    "binary32, so err is infinite, every refit stops and min-max is kept")
    rng = np.random.default_rng(424)

    def lopsided(r):
        x = r.uniform(0, 1, 6) * 0.05 * 1.7e38
        x[0] = -3.3e38
        return x.astype(np.float32)

    rows = find_rows(rng, lopsided, 2, "f32", ("drop", 1), 2)
    rows = np.concatenate([rows, find_rows(rng, lambda r: (r.uniform(-1, 1, 6) * 1.7e38)
                                           .astype(np.float32), 2, "f32",
                                           ("stop", 1, "nonfinite"), 2)])
    yield dict(name="mse_huge_grown_dropped_2bit", shape=[4, 6], bits=2, group_size=6, x=rows,
               note="rows 0-1: the grown candidate's min overflows binary32 and is dropped; "
                    "rows 2-3: a refit of the grown candidate overflows and stops it")
    yield dict(name="mse_subnormal_4bit", shape=[3, 6], bits=4, group_size=6,
               x=np.array([[13 * U, -3 * U, 0.0, 5 * U, 40 * U, -17 * U],
                           [3 * U, U, 2 * U, 0.0, 2 * U, U],
                           [2.0 ** -126, -2.0 ** -127, 7 * U, -9 * U, 0.0, 2.0 ** -125]],
                          np.float32),
               note="subnormal inputs and scales: e*e underflows to 0 in binary32, so "
                    "nothing is strictly better than min-max")
    f16_tight = np.array([[1000.2, 1000.3, 1000.25, 1000.22, 1000.28, 1000.21],
                          [3.1001, 3.1002, 3.1004, 3.1001, 3.1003, 3.1002]], np.float32)
    rng = np.random.default_rng(425)

    def f16_offset(r):
        c = r.uniform(100, 60000)
        return (c + r.uniform(0, float(np.spacing(np.float16(c))) * 0.9, 6)).astype(np.float32)

    rows = np.concatenate([f16_tight, find_rows(rng, f16_offset, 3, "f16", ("stop", 2, "det"),
                                                2)])
    for r in range(2):
        assert ("stop", 0, "det") in events(rows[r], 3, "f16")
    yield dict(name="mse_f16_codes_all_equal_det_stop_3bit", shape=[4, 6], bits=3,
               group_size=6, scale_dtype="F16", x=rows,
               note="F16 rounds the min far from lo, so that every code is the same and "
                    "det = 0: rows 0, 1 and 3 stop every candidate at its first refit (grown "
                    "wins as it is), row 2 only the shrunk one")
    rng = np.random.default_rng(426)

    def few_ulps(r):
        a = np.float32(10.0 ** r.uniform(-30, 37)) * np.float32(r.choice([-1, 1]))
        return (a + (r.integers(0, 3, 7) * np.spacing(a))).astype(np.float32)

    b = 5
    rows = find_rows(rng, few_ulps, b, "f32", ("stop", 2, "det"), 3)
    yield dict(name="mse_f32_det_stop_few_ulps_5bit", shape=[3, 7], bits=b, group_size=7,
               x=rows, note="groups spanning two ulps: the shrunk candidate's min rounds so "
                            "that every code is equal, det = 0 stops it")
    rng = np.random.default_rng(427)

    def tiny16(r):
        return (r.uniform(0, 2, 4) * 2.0 ** -24).astype(np.float32)

    rows = np.concatenate([find_rows(rng, tiny16, 1, "f16", ("stop", 0, "scale"), 2),
                           find_rows(rng, tiny16, 1, "f16", ("drop", 2), 2)])
    yield dict(name="mse_f16_scale_underflow_1bit", shape=[4, 4], bits=1, group_size=4,
               scale_dtype="F16", x=rows,
               note="binary16 subnormal scales: the shrunk scale rounds to 0, so that "
                    "candidate is dropped; in rows 0-1 min-max's first refit also rounds its "
                    "scale to 0 and stops")
    rng = np.random.default_rng(428)
    gen = (lambda r: (r.standard_normal(24) * np.array([1.0] * 23 + [6.0])).astype(np.float32))
    # values on min-max's own grid: nothing is strictly better than error 0
    grid = (rng.permutation(np.arange(24) % 8) * 0.25 - 1).astype(np.float32)[None, :]
    rows = np.concatenate([grid] + [find_rows(rng, gen, 3, "f32", want, 1) for want in
                                    (("win", 0, True), ("win", 1, True), ("win", 2, True))])
    assert ("win", 0, False) in events(rows[0], 3, "f32")
    yield dict(name="mse_every_winner_3bit", shape=[4, 24], bits=3, group_size=24, x=rows,
               note="the best comes from: min-max as is (values on its grid), a min-max "
                    "refit, a refit of grown, a refit of shrunk (one row each)")
    # on a coarse grid of binary16 subnormals a refit can make things worse, so grown and
    # shrunk also win as they are (binary32 subnormals would not do: their e*e underflows)
    rng = np.random.default_rng(433)
    gen = (lambda r: (r.integers(-20, 20, 24) * 2.0 ** -24).astype(np.float32))
    rows = np.concatenate([find_rows(rng, gen, 3, "f16", want, 1) for want in
                           (("win", 0, False), ("win", 0, True), ("win", 1, False),
                            ("win", 1, True), ("win", 2, False), ("win", 2, True))])
    yield dict(name="mse_f16_subnormal_every_winner_3bit", shape=[6, 24], bits=3,
               group_size=24, scale_dtype="F16", x=rows,
               note="multiples of 2^-24, F16 subnormal scales and mins: the best comes from "
                    "min-max, a min-max refit, grown, a grown refit, shrunk, a shrunk refit "
                    "(one row each)")
    rng = np.random.default_rng(429)
    yield dict(name="mse_group_size1_3bit", shape=[2, 5], bits=3, group_size=1,
               x=random_rows(rng, 2, 5), note="single-element groups are constant: min-max")
    rng = np.random.default_rng(430)
    yield dict(name="mse_pairs_7bit", shape=[2, 6], bits=7, group_size=2,
               x=random_rows(rng, 2, 6), note="two-element groups")
    rng = np.random.default_rng(431)
    yield dict(name="mse_per_tensor_8bit_len100", shape=[100], bits=8, group_size=0,
               x=(rng.standard_normal(100) * 0.02).astype(np.float32),
               note="one group of 100: lanes of 13 and 12 elements")
    rng = np.random.default_rng(441)
    yield dict(name="mse_per_tensor_4bit_len2100", shape=[2100], bits=4, group_size=0,
               x=(rng.standard_normal(2100) * 0.02).astype(np.float32),
               note="one group of 2100: each lane adds 256 elements in block 0 and 7 or 6 in "
                    "block 1; without the binary32 blocks another scale would be chosen")
    rng = np.random.default_rng(432)
    yield dict(name="mse_short_groups_1bit_3x10_group4", shape=[3, 10], bits=1, group_size=4,
               x=random_rows(rng, 3, 10), note="1 bit: no grown candidate; groups 4, 4, 2")


def build_case(method, spec):
    x = np.ascontiguousarray(spec["x"], dtype=np.float32).reshape(-1)
    sdt = spec.get("scale_dtype", "F32")
    bits, shape, g = spec["bits"], spec["shape"], spec["group_size"]
    if method == "symmetric":
        # §4 step 3's binary32 subtraction must stay finite: the spec says nothing about a
        # group whose x - min overflows, so no vector relies on it
        st, ln = ref.case_layout(shape, g)
        _, mn = ref.range_params(x, st, ln, bits, sdt.lower(), "symmetric")
        with np.errstate(over="ignore"):
            assert np.isfinite(x - np.repeat(mn, ln)).all(), spec["name"]
    fields, (codes, *_rest) = ref.encode_case(x, shape, bits, g, sdt.lower(), method)
    case = {"name": spec["name"], "method": method, "shape": shape, "bits": bits,
            "group_size": g, "scale_dtype": sdt, "input_f32_hex": ref.hexf32(x)}
    case.update(fields)
    case["input"] = [float(v) for v in x[:64]]
    case["codes"] = [int(v) for v in codes[:64]]
    case["note"] = spec["note"]
    bad = ref.check_vector_case(case)
    assert not bad, (spec["name"], bad)
    return case


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with open(VECTORS) as f:
        old_text = f.read()
    vec = json.loads(old_text)
    kept = [c for c in vec["cases"] if c.get("method", "minmax") == "minmax"]
    new = [build_case("symmetric", s) for s in symmetric_cases()]
    new += [build_case("mse", s) for s in mse_cases()]
    names = [c["name"] for c in kept + new]
    assert len(set(names)) == len(names), "duplicate case names"
    # the minmax part of "about" is kept, the part this script wrote before is replaced
    about = vec["about"].partition(ABOUT_MARK)[0] + ABOUT_METHODS
    text = json.dumps({"about": about, "cases": kept + new}, indent=1)
    if args.check:
        if text != old_text:
            print(f"{VECTORS} differs from what {sys.argv[0]} writes", file=sys.stderr)
            return 1
        print(f"{VECTORS} is up to date ({len(new)} symmetric/mse cases)")
        return 0
    with open(VECTORS, "w") as f:
        f.write(text)  # no final newline, like the file has always been
    print(f"wrote {VECTORS}: {len(kept)} minmax cases kept, {len(new)} symmetric/mse cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
