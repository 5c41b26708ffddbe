"""Bad inputs of the time schedules (issue 14, item 5): ``fm.time_sampling``'s mode sampler,
shift and resolution shift; the time grids (``sampling.time_grid``) and SD3 loss weightings
(``losses.*_weight``)."""

# ruff: noqa: E501  (a table: one case per line reads better than wrapped calls)
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import flowjax_fm as fm
from bad_input import Case

W = fm.losses
time_grid = fm.sampling.time_grid
T = fm.time_sampling
NAN, INF = float("nan"), float("inf")
KEY = jax.random.key(0)
FINITE = r"must be a finite number in"
TI = jnp.array([0, 1], jnp.int32)  # integer times

CASES = [
    # --- ModeTime -------------------------------------------------------------------------
    Case("time_sampling.ModeTime", "scale=2", lambda: T.ModeTime(scale=2.0), ValueError,
         r"scale must be a finite number in \[-1, 1.75194\], got 2.0"),
    Case("time_sampling.ModeTime", "scale<-1", lambda: T.ModeTime(scale=-1.5), ValueError, r"scale " + FINITE + r" \[-1, 1.75194\]"),
    Case("time_sampling.ModeTime", "scale=nan", lambda: T.ModeTime(scale=NAN), ValueError, r"scale " + FINITE),
    Case("time_sampling.ModeTime", "scale=str", lambda: T.ModeTime(scale="1.29"), ValueError, r"scale must be a real number"),
    Case("time_sampling.ModeTime", "n=0", lambda: T.ModeTime()(KEY, 0), ValueError, r"n must be an int >= 1, got 0"),
    Case("time_sampling.ModeTime", "int dtype", lambda: T.ModeTime()(KEY, 2, jnp.int32), ValueError, r"dtype must be a floating dtype"),
    # --- ShiftedTime ----------------------------------------------------------------------
    Case("time_sampling.ShiftedTime", "base=None", lambda: T.ShiftedTime(None, 3.0), TypeError,
         r"base must be an instance of fm.time_sampling.AbstractTime .*got NoneType"),
    Case("time_sampling.ShiftedTime", "base=name", lambda: T.ShiftedTime("uniform", 3.0), TypeError,
         r"base must be an instance of fm.time_sampling.AbstractTime"),
    Case("time_sampling.ShiftedTime", "shift=0", lambda: T.ShiftedTime(T.UniformTime(), 0.0), ValueError,
         r"shift must be a finite number in \(0, inf\), got 0.0"),
    Case("time_sampling.ShiftedTime", "shift<0", lambda: T.ShiftedTime(T.UniformTime(), -3.0), ValueError, r"shift " + FINITE),
    Case("time_sampling.ShiftedTime", "shift=inf", lambda: T.ShiftedTime(T.UniformTime(), INF), ValueError, r"shift " + FINITE),
    Case("time_sampling.ShiftedTime", "no shift", lambda: T.ShiftedTime(T.UniformTime()), TypeError, r"shift"),
    Case("time_sampling.ShiftedTime", "n=2.0", lambda: T.ShiftedTime(T.UniformTime(), 3.0)(KEY, 2.0), ValueError,
         r"n must be an int >= 1, got 2.0"),
    Case("time_sampling.ShiftedTime", "int dtype", lambda: T.ShiftedTime(T.ModeTime(), 3.0)(KEY, 2, np.int32), ValueError,
         r"dtype must be a floating dtype"),
    # --- shift_time -----------------------------------------------------------------------
    Case("time_sampling.shift_time", "shift=0", lambda: T.shift_time(0.5, 0.0), ValueError, r"shift must be a finite number in \(0, inf\), got 0.0"),
    Case("time_sampling.shift_time", "shift=nan", lambda: T.shift_time(0.5, NAN), ValueError, r"shift " + FINITE),
    Case("time_sampling.shift_time", "t>1", lambda: T.shift_time(jnp.array([0.5, 1.5]), 3.0), ValueError,
         r"t must be a finite number in \[0, 1\], got an array containing 1.5"),
    Case("time_sampling.shift_time", "t<0", lambda: T.shift_time(-0.25, 3.0), ValueError, r"t " + FINITE + r" \[0, 1\]"),
    Case("time_sampling.shift_time", "int t", lambda: T.shift_time(TI, 3.0), ValueError,
         r"t must be a floating-point array, got dtype int32 and shape \(2,\)"),
    Case("time_sampling.shift_time", "t=str", lambda: T.shift_time("0.5", 3.0), ValueError, r"t must be"),
    # --- resolution_shift -----------------------------------------------------------------
    Case("time_sampling.resolution_shift", "seq_len=0", lambda: T.resolution_shift(0), ValueError,
         r"seq_len must be a finite number in \(0, inf\), got 0"),
    Case("time_sampling.resolution_shift", "seq_len=True", lambda: T.resolution_shift(True), ValueError, r"seq_len must be a real number"),
    Case("time_sampling.resolution_shift", "base=max", lambda: T.resolution_shift(1024, base_seq_len=512, max_seq_len=512), ValueError,
         r"base_seq_len and max_seq_len must differ, got 512 and 512"),
    Case("time_sampling.resolution_shift", "max_seq_len<0", lambda: T.resolution_shift(1024, max_seq_len=-1), ValueError, r"max_seq_len " + FINITE),
    Case("time_sampling.resolution_shift", "max_shift=nan", lambda: T.resolution_shift(1024, max_shift=NAN), ValueError,
         r"max_shift must be a finite number in \(-inf, inf\), got nan"),
    # --- get_time_sampler (the new names) -------------------------------------------------
    Case("time_sampling.get_time_sampler", "mode scale=3", lambda: T.get_time_sampler("mode", scale=3.0), ValueError, r"scale " + FINITE),
    Case("time_sampling.get_time_sampler", "mode kwarg", lambda: T.get_time_sampler("mode", shift=3.0), ValueError,
         r"time sampler 'mode' takes scale; got unknown argument\(s\) shift"),
    Case("time_sampling.get_time_sampler", "shifted no base", lambda: T.get_time_sampler("shifted", shift=3.0), TypeError, r"base"),
    Case("time_sampling.get_time_sampler", "shifted base name", lambda: T.get_time_sampler("shifted", base="mode", shift=3.0), TypeError,
         r"base must be an instance of fm.time_sampling.AbstractTime"),
    # --- time_grid (fm.sampling once exported) --------------------------------------------
    Case("sampling.time_grid", "num_steps=0", lambda: time_grid(0), ValueError, r"num_steps must be an int >= 1, got 0"),
    Case("sampling.time_grid", "num_steps=2.0", lambda: time_grid(2.0), ValueError, r"num_steps must be an int >= 1, got 2.0"),
    Case("sampling.time_grid", "num_steps=True", lambda: time_grid(True), ValueError, r"num_steps must be an int >= 1, got True"),
    Case("sampling.time_grid", "kind", lambda: time_grid(4, kind="cosine"), ValueError,
         r"unknown time grid kind 'cosine'; choose one of 'edm', 'shifted', 'uniform'"),
    Case("sampling.time_grid", "shift=0", lambda: time_grid(4, kind="shifted", shift=0.0), ValueError,
         r"shift must be a finite number in \(0, inf\), got 0.0"),
    Case("sampling.time_grid", "shift unused", lambda: time_grid(4, shift=3.0), ValueError,
         r"shift applies to kind='shifted' only, got shift=3.0 with kind='uniform'"),
    Case("sampling.time_grid", "rho=0", lambda: time_grid(4, kind="edm", rho=0.0), ValueError, r"rho must be a finite number in \(0, inf\), got 0.0"),
    Case("sampling.time_grid", "rho=inf", lambda: time_grid(4, kind="edm", rho=INF), ValueError, r"rho " + FINITE),
    Case("sampling.time_grid", "rho unused", lambda: time_grid(4, kind="shifted", shift=2.0, rho=3.0), ValueError,
         r"rho applies to kind='edm' only"),
    Case("sampling.time_grid", "sigma_min=0", lambda: time_grid(4, kind="edm", sigma_min=0.0), ValueError,
         r"sigma_min must be a finite number in \(0, 1\), got 0.0"),
    Case("sampling.time_grid", "sigma_min vs t1", lambda: time_grid(4, kind="edm", t1=0.9), ValueError,
         r"sigma_min must lie in \(1 - t1, 1 - t0\) = \(0.1, 1\) for kind='edm', got 0.002"),
    Case("sampling.time_grid", "t0=t1", lambda: time_grid(4, t0=0.5, t1=0.5), ValueError, r"t0 must be below t1 .*got t0=0.5 and t1=0.5"),
    Case("sampling.time_grid", "t0>t1", lambda: time_grid(4, t0=1.0, t1=0.0), ValueError, r"t0 must be below t1"),
    Case("sampling.time_grid", "t1>1", lambda: time_grid(4, t1=1.5), ValueError, r"t1 must be a finite number in \[0, 1\], got 1.5"),
    Case("sampling.time_grid", "t0=nan", lambda: time_grid(4, t0=NAN), ValueError, r"t0 " + FINITE),
    Case("sampling.time_grid", "int dtype", lambda: time_grid(4, dtype=jnp.int32), ValueError, r"dtype must be a floating dtype"),
    Case("sampling.time_grid", "dtype name", lambda: time_grid(4, dtype="cosine"), ValueError, r"dtype must be a floating dtype .*got 'cosine'"),
    Case("sampling.time_grid", "bool dtype", lambda: time_grid(4, dtype=bool), ValueError, r"dtype must be a floating dtype"),
    Case("sampling.time_grid", "bf16 ties", lambda: time_grid(400, dtype=jnp.bfloat16), ValueError,
         r"the uniform grid of 400 steps is not strictly increasing in bfloat16"),
    # --- loss weightings (fm.losses once exported) ----------------------------------------
    Case("losses.cosmap_weight", "int t", lambda: W.cosmap_weight(TI), ValueError, r"t must be a floating-point array, got dtype int32"),
    Case("losses.cosmap_weight", "t>1", lambda: W.cosmap_weight(jnp.array([0.5, 2.0])), ValueError,
         r"t must be a finite number in \[0, 1\], got an array containing 2.0"),
    Case("losses.cosmap_weight", "t=nan", lambda: W.cosmap_weight(jnp.array([NAN])), ValueError, r"t " + FINITE),
    Case("losses.sigma_sqrt_weight", "sigma_min=0", lambda: W.sigma_sqrt_weight(jnp.array([0.5]), sigma_min=0.0), ValueError,
         r"sigma_min must be a finite number in \(0, 1\], got 0.0"),
    Case("losses.sigma_sqrt_weight", "sigma_min=2", lambda: W.sigma_sqrt_weight(jnp.array([0.5]), sigma_min=2.0), ValueError, r"sigma_min " + FINITE),
    Case("losses.sigma_sqrt_weight", "t<0", lambda: W.sigma_sqrt_weight(jnp.array([-0.5])), ValueError, r"t " + FINITE + r" \[0, 1\]"),
    Case("losses.sigma_sqrt_weight", "int t", lambda: W.sigma_sqrt_weight(TI), ValueError, r"t must be a floating-point array"),
    Case("losses.logit_normal_weight", "scale=0", lambda: W.logit_normal_weight(0.0, 0.0), ValueError,
         r"scale must be a finite number in \(0, inf\), got 0.0"),
    Case("losses.logit_normal_weight", "loc=nan", lambda: W.logit_normal_weight(NAN), ValueError,
         r"loc must be a finite number in \(-inf, inf\), got nan"),
    Case("losses.logit_normal_weight", "scale=inf", lambda: W.logit_normal_weight(scale=INF), ValueError, r"scale " + FINITE),
    Case("losses.logit_normal_weight", "int t", lambda: W.logit_normal_weight()(TI), ValueError, r"t must be a floating-point array"),
    Case("losses.logit_normal_weight", "t>1", lambda: W.logit_normal_weight()(jnp.array([1.5])), ValueError, r"t " + FINITE + r" \[0, 1\]"),
]
