// Stand-alone AMX microbenchmark (session 10, issue: probes): the peak rate of one core's tiles,
// tile loads from L1, and single-thread bf16x3 GEMM kernels on SmolLM2's shapes:
//   cur  the layout before session 10 (strided row-major split input, 10 tile loads per 12 products)
//   v2   strided input, 8 loads per 12 products, panels in groups of g per row block
//   v3   input split into contiguous 1 KiB tiles, 8 loads, groups of g (what src/model/amx.rs ships)
//   v4   v3 blocked over k (kc k blocks per pass, accumulators stored and reloaded): slower
//   v5   v3 with software prefetch of the next k block's tiles into L1 (v5w: weight tiles,
//        v5wx: weight and input tiles): no gain
// Data are constants (timing only; correctness is tested in src/model/amx.rs). Linux with
// AMX-BF16 only. Build and run (ROWS K N; one thread):
//   rustc -C opt-level=3 -C target-cpu=native bench/amx/micro.rs -o /tmp/amx-micro
//   /tmp/amx-micro 448 576 1536
use std::arch::asm;
use std::time::Instant;

#[repr(C, align(64))]
struct Config {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

fn perm() {
    let ret: i64;
    unsafe {
        asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64, in("rsi") 18i64,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    assert_eq!(ret, 0);
}

fn configure() {
    let mut cfg = Config { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
    for t in 0..8 {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    unsafe { asm!("ldtilecfg [{0}]", in(reg) &cfg, options(nostack, readonly)) };
}

fn peak(iters: usize) -> f64 {
    let t = Instant::now();
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
             "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7");
        for _ in 0..iters {
            asm!(
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                options(nostack, nomem)
            );
        }
    }
    let s = t.elapsed().as_secs_f64();
    (iters * 4 * 16 * 16 * 32 * 2) as f64 / s / 1e9
}

// loads from a small L1-resident buffer
fn l1loads(iters: usize, buf: &[u16]) -> f64 {
    let t = Instant::now();
    let p = buf.as_ptr();
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3");
        for _ in 0..iters {
            asm!(
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{c} + {s}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{d} + {s}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a = in(reg) p, b = in(reg) p.add(512), c = in(reg) p.add(1024), d = in(reg) p.add(1536),
                s = in(reg) 64usize,
                options(nostack, readonly)
            );
        }
    }
    let s = t.elapsed().as_secs_f64();
    (iters * 4 * 16 * 16 * 32 * 2) as f64 / s / 1e9
}

const TILE: usize = 512;

unsafe fn zero() {
    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3");
}

/// Store (or, with `LOAD`, load) the four accumulator tiles as the 32 × 32 block at `o`, row
/// stride `n` floats.
unsafe fn acc<const LOAD: bool>(o: *mut f32, n: usize) {
    let (o0, o1, o2, o3, s) = (o, o.add(16), o.add(16 * n), o.add(16 * n + 16), n * 4);
    if LOAD {
        asm!("tileloadd tmm0, [{o0} + {s}*1]", "tileloadd tmm1, [{o1} + {s}*1]",
             "tileloadd tmm2, [{o2} + {s}*1]", "tileloadd tmm3, [{o3} + {s}*1]",
             o0 = in(reg) o0, o1 = in(reg) o1, o2 = in(reg) o2, o3 = in(reg) o3, s = in(reg) s,
             options(nostack));
    } else {
        asm!("tilestored [{o0} + {s}*1], tmm0", "tilestored [{o1} + {s}*1], tmm1",
             "tilestored [{o2} + {s}*1], tmm2", "tilestored [{o3} + {s}*1], tmm3",
             o0 = in(reg) o0, o1 = in(reg) o1, o2 = in(reg) o2, o3 = in(reg) o3, s = in(reg) s,
             options(nostack));
    }
}

/// One k block, the old order: (x_hi, w_hi), (x_lo, w_hi), (x_hi, w_lo) — 10 tile loads for 12
/// products. Weight tiles at `wt` (hi0, hi1, lo0, lo1, contiguous); input tiles at `h0, h1`
/// (hi) and `l0, l1` (lo), rows `xs` bytes apart.
unsafe fn step10(wt: *const u16, [h0, h1, l0, l1]: [*const u16; 4], xs: usize) {
    asm!(
        "tileloadd tmm6, [{wh0} + {s64}*1]",
        "tileloadd tmm7, [{wh1} + {s64}*1]",
        "tileloadd tmm4, [{h0} + {xs}*1]",
        "tileloadd tmm5, [{h1} + {xs}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "tileloadd tmm4, [{l0} + {xs}*1]",
        "tileloadd tmm5, [{l1} + {xs}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "tileloadd tmm6, [{wl0} + {s64}*1]",
        "tileloadd tmm7, [{wl1} + {s64}*1]",
        "tileloadd tmm4, [{h0} + {xs}*1]",
        "tileloadd tmm5, [{h1} + {xs}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        wh0 = in(reg) wt, wh1 = in(reg) wt.add(TILE), wl0 = in(reg) wt.add(2 * TILE),
        wl1 = in(reg) wt.add(3 * TILE), h0 = in(reg) h0, h1 = in(reg) h1, l0 = in(reg) l0,
        l1 = in(reg) l1, s64 = in(reg) 64usize, xs = in(reg) xs,
        options(nostack, readonly),
    );
}

/// One k block, the new order: (x_hi, w_lo), (x_hi, w_hi), (x_lo, w_hi) — 8 tile loads for 12
/// products (what src/model/amx.rs ships). Operands as in [`step10`].
#[inline(always)]
unsafe fn step8(wt: *const u16, [h0, h1, l0, l1]: [*const u16; 4], xs: usize) {
    asm!(
        "tileloadd tmm4, [{h0} + {xs}*1]",
        "tileloadd tmm6, [{wl0} + {s64}*1]",
        "tileloadd tmm7, [{wl1} + {s64}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tileloadd tmm5, [{h1} + {xs}*1]",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "tileloadd tmm6, [{wh0} + {s64}*1]",
        "tileloadd tmm7, [{wh1} + {s64}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        "tileloadd tmm4, [{l0} + {xs}*1]",
        "tileloadd tmm5, [{l1} + {xs}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        wh0 = in(reg) wt, wh1 = in(reg) wt.add(TILE), wl0 = in(reg) wt.add(2 * TILE),
        wl1 = in(reg) wt.add(3 * TILE), h0 = in(reg) h0, h1 = in(reg) h1, l0 = in(reg) l0,
        l1 = in(reg) l1, s64 = in(reg) 64usize, xs = in(reg) xs,
        options(nostack, readonly),
    );
}

/// Input tiles of k block `kb` for row block base `(h, l)` of a strided row-major split
/// (`kp` values per row).
unsafe fn strided(h: *const u16, l: *const u16, kb: usize, kp: usize) -> [*const u16; 4] {
    let (ah, al) = (h.add(kb * 32), l.add(kb * 32));
    [ah, ah.add(16 * kp), al, al.add(16 * kp)]
}

/// Input tiles of k block `kb` of a tiled row block starting at `xb`.
unsafe fn tiled(xb: *const u16, kb: usize) -> [*const u16; 4] {
    let xk = xb.add(kb * 4 * TILE);
    [xk, xk.add(TILE), xk.add(2 * TILE), xk.add(3 * TILE)]
}

/// The layout before session 10: weight packed per panel (32 columns) per k block as [wh0, wh1,
/// wl0, wl1]; x hi/lo row-major [rows, kp]. For each panel, each row block, each k block.
unsafe fn cur(w: &[u16], xh: &[u16], xl: &[u16], rows: usize, kp: usize, n: usize, out: &mut [f32]) {
    let kbs = kp / 32;
    let panel_len = kbs * 4 * TILE;
    for p in 0..n / 32 {
        let wp = w.as_ptr().add(p * panel_len);
        for b in (0..rows).step_by(32) {
            let (h, l) = (xh.as_ptr().add(b * kp), xl.as_ptr().add(b * kp));
            zero();
            for kb in 0..kbs {
                step10(wp.add(kb * 4 * TILE), strided(h, l, kb, kp), kp * 2);
            }
            acc::<false>(out.as_mut_ptr().add(b * n + p * 32), n);
        }
    }
}

/// Strided input, the 8-load order; panels in groups of `g`, every row block for each group.
unsafe fn v2(w: &[u16], xh: &[u16], xl: &[u16], rows: usize, kp: usize, n: usize, out: &mut [f32], g: usize) {
    let kbs = kp / 32;
    let panel_len = kbs * 4 * TILE;
    let np = n / 32;
    for p0 in (0..np).step_by(g) {
        for b in (0..rows).step_by(32) {
            let (h, l) = (xh.as_ptr().add(b * kp), xl.as_ptr().add(b * kp));
            for p in p0..(p0 + g).min(np) {
                let wp = w.as_ptr().add(p * panel_len);
                zero();
                for kb in 0..kbs {
                    step8(wp.add(kb * 4 * TILE), strided(h, l, kb, kp), kp * 2);
                }
                acc::<false>(out.as_mut_ptr().add(b * n + p * 32), n);
            }
        }
    }
}

/// Input split into contiguous tiles (per 32-row block, per k block: hi0, hi1, lo0, lo1), the
/// 8-load order, panels in groups of `g`. `PF` = 0: no software prefetch (v3, shipped); 1: the
/// next k block's weight tiles into L1; 2: weight and input tiles (v5).
unsafe fn v3<const PF: u8>(w: &[u16], xt: &[u16], rows: usize, kp: usize, n: usize, out: &mut [f32], g: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let kbs = kp / 32;
    let panel_len = kbs * 4 * TILE;
    let np = n / 32;
    for p0 in (0..np).step_by(g) {
        for b in (0..rows).step_by(32) {
            let xb = xt.as_ptr().add((b / 32) * kbs * 4 * TILE);
            for p in p0..(p0 + g).min(np) {
                let wp = w.as_ptr().add(p * panel_len);
                zero();
                for kb in 0..kbs {
                    let wt = wp.add(kb * 4 * TILE);
                    if PF > 0 {
                        let next = (kb + 1).min(kbs - 1);
                        let (nw, nx) = (wp.add(next * 4 * TILE) as *const i8, xb.add(next * 4 * TILE) as *const i8);
                        for l in 0..(4 * TILE * 2 / 64) {
                            _mm_prefetch::<_MM_HINT_T0>(nw.add(l * 64));
                            if PF > 1 {
                                _mm_prefetch::<_MM_HINT_T0>(nx.add(l * 64));
                            }
                        }
                    }
                    step8(wt, tiled(xb, kb), 64);
                }
                acc::<false>(out.as_mut_ptr().add(b * n + p * 32), n);
            }
        }
    }
}

/// v3 blocked over k: for each chunk of `kc` k blocks, every row block and panel, accumulators
/// stored to `out` and reloaded between chunks.
unsafe fn v4(w: &[u16], xt: &[u16], rows: usize, kp: usize, n: usize, out: &mut [f32], kc: usize) {
    let kbs = kp / 32;
    let panel_len = kbs * 4 * TILE;
    for k0 in (0..kbs).step_by(kc) {
        for b in (0..rows).step_by(32) {
            let xb = xt.as_ptr().add((b / 32) * kbs * 4 * TILE);
            for p in 0..n / 32 {
                let wp = w.as_ptr().add(p * panel_len);
                let o = out.as_mut_ptr().add(b * n + p * 32);
                if k0 == 0 {
                    zero();
                } else {
                    acc::<true>(o, n);
                }
                for kb in k0..(k0 + kc).min(kbs) {
                    step8(wp.add(kb * 4 * TILE), tiled(xb, kb), 64);
                }
                acc::<false>(o, n);
            }
        }
    }
}

fn main() {
    perm();
    configure();
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(448);
    let k: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(576);
    let n: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(3072);
    for _ in 0..2 {
        println!("peak: {:.1} GFLOP/s (bf16)", peak(2_000_000));
    }
    let buf = vec![0x3f80u16; 4096];
    println!("L1 loads 2x2: {:.1} GFLOP/s (bf16)", l1loads(2_000_000, &buf));
    let kp = k.div_ceil(32) * 32;
    let rows = rows.div_ceil(32) * 32;
    let w = vec![0x3c00u16; (n / 32) * (kp / 32) * 4 * TILE];
    let xh = vec![0x3c00u16; rows * kp];
    let xl = vec![0x3000u16; rows * kp];
    let xt = vec![0x3c00u16; rows * kp * 2];
    let mut out = vec![0f32; rows * n];
    let flops = (rows * kp * n * 2 * 3) as f64; // bf16x3 work
    let f32flops = (rows * kp * n * 2) as f64;
    let reps = 20;
    let run = |name: &str, f: &mut dyn FnMut()| {
        f();
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{name}: {:.3} ms, {:.1} GFLOP/s bf16 work, {:.1} GFLOP/s f32-equivalent", s * 1e3, flops / s / 1e9, f32flops / s / 1e9);
    };
    run("cur", &mut || unsafe { cur(&w, &xh, &xl, rows, kp, n, &mut out) });
    for g in [1, 2, 4, 8, 16] {
        run(&format!("v2 g{g}"), &mut || unsafe { v2(&w, &xh, &xl, rows, kp, n, &mut out, g) });
    }
    for kc in [2, 4, 6, 9, 18, 48] {
        run(&format!("v4 kc{kc}"), &mut || unsafe { v4(&w, &xt, rows, kp, n, &mut out, kc) });
    }
    for g in [4, 8, 16] {
        run(&format!("v5w g{g}"), &mut || unsafe { v3::<1>(&w, &xt, rows, kp, n, &mut out, g) });
        run(&format!("v5wx g{g}"), &mut || unsafe { v3::<2>(&w, &xt, rows, kp, n, &mut out, g) });
    }
    for g in [1, 4, 8, 16] {
        run(&format!("v3 g{g}"), &mut || unsafe { v3::<0>(&w, &xt, rows, kp, n, &mut out, g) });
    }
}
