//! The CPU fast path's linear layers at `MatmulPrecision::High`: `y[rows, out] = x[rows, in] ·
//! W (+ b)` on Intel AMX tiles, with every f32 operand split into two bf16 parts (bf16x3).
//!
//! Each f32 `a` is written `a ≈ a_hi + a_lo` with `a_hi = bf16(a)` and `a_lo = bf16(a − a_hi)`
//! (both rounded to nearest even), which keeps 16 of f32's 24 mantissa bits; the product
//! `x · w` is then `x_hi·w_hi + x_hi·w_lo + x_lo·w_hi` (the `x_lo·w_lo` term, about 2⁻¹⁶ of
//! the product, is dropped). Every bf16 product is exact in f32 and AMX accumulates in f32, so
//! an output differs from the f32 product by a few units in 10⁻⁵ of its terms' magnitude: the
//! scheme PyTorch documents as `float32_matmul_precision = "high"` (and JAX as `bf16_3x`). On a
//! Sapphire Rapids core the tile unit runs the three bf16 products about twice as fast as the
//! AVX-512 f32 kernel runs the one f32 product ([`super::packed`]).
//!
//! Layout. The weight is split and packed once ([`AmxLinear`]): for each panel of 32 output
//! columns and each block of 32 input rows (`k`), four 1 KiB tiles — the hi and lo parts of
//! the panel's two 16-column halves — in AMX's pair-interleaved ("VNNI") layout (tile row
//! `kk / 2` holds columns `j` at `2j + kk % 2`), `k` zero-padded to a multiple of 32. The input
//! is split per call ([`Split`]) into tiles as well: for each block of 32 rows and each `k`
//! block, four contiguous 1 KiB tiles (hi rows 0–15, hi rows 16–31, lo rows 0–15, lo rows
//! 16–31), so every tile load reads 1 KiB in a row rather than 16 rows of a strided matrix.
//! The kernel keeps a 32 × 32 block of outputs in four accumulator tiles and, for each 32-wide
//! `k` block, adds `x_hi·w_lo`, then `x_hi·w_hi`, then `x_lo·w_hi`: eight tile loads for twelve
//! tile products. A thread walks its panels in groups of [`GROUP`], every row block of the
//! chunk for each group, so a row block's split input is reused while it is still in cache.
//! The order of the additions for an output element never depends on the other rows, the
//! row blocking or the thread split, so a sequence gives the same bits alone or in a batch.
//!
//! AMX needs the CPU (AMX-TILE and AMX-BF16) and Linux's permission for the tile state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, kernel 5.16 or later); [`available`] checks both once.
use rayon::prelude::*;
use std::sync::OnceLock;

/// Input rows (`k`) per tile product.
const KB: usize = 32;
/// Output columns per accumulator tile.
const NT: usize = 16;
/// Output columns per panel (two accumulator tiles side by side).
const PANEL: usize = 32;
/// Rows per register block (two accumulator tiles stacked).
const RB: usize = 32;
/// bf16 values per tile (16 rows of 64 bytes).
const TILE: usize = 512;
/// Bytes of split input per row chunk of [`linear`] (hi and lo), so a chunk stays in L2 while
/// a thread's panels pass over it.
const CHUNK_BYTES: usize = 1 << 20;
/// Panels a thread computes for one row block before moving to the next row block (measured
/// on SmolLM2's shapes, 128–448 rows: 4 beat 1, 8 and 16 by 5–20 %).
const GROUP: usize = 4;

/// Whether this CPU and OS run the AMX kernel (checked once per process).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    use std::arch::x86_64::__cpuid_count;
    if !(std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw"))
    {
        return false;
    }
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    // CPUID.(EAX=7, ECX=0):EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    let edx = __cpuid_count(7, 0).edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    kernel::request_tile_permission()
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// Round to the nearest bf16 (ties to even); NaN stays NaN.
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of a bf16.
#[inline(always)]
fn widen(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `(hi, lo)` with `hi = bf16(x)` and `lo = bf16(x − hi)`.
#[inline(always)]
fn split(x: f32) -> (u16, u16) {
    let hi = bf16(x);
    (hi, bf16(x - widen(hi)))
}

/// A `[in, out]` weight split into bf16 hi and lo parts and packed into AMX tiles (see the
/// module docs): tile `((p · kbs + kb) · 2 + part) · 2 + half` is panel `p`'s `k` block `kb`,
/// part hi (0) or lo (1), columns `32p + 16·half ..` of that.
#[derive(Debug, Clone)]
pub(crate) struct AmxLinear {
    tiles: Vec<u16>,
    inp: usize,
    out: usize,
    kbs: usize,
}

impl AmxLinear {
    /// Split and pack the row-major `[inp, out]` weight `w`.
    ///
    /// # Panics
    /// When `w.len() != inp · out` (a caller bug).
    pub(crate) fn new(w: &[f32], inp: usize, out: usize) -> AmxLinear {
        assert_eq!(w.len(), inp * out, "AmxLinear::new: weight shape");
        let kbs = inp.div_ceil(KB);
        let n_panels = out.div_ceil(PANEL);
        let mut tiles = vec![0u16; n_panels * kbs * 4 * TILE];
        tiles
            .par_chunks_mut((kbs * 4 * TILE).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for (kb, block) in panel.chunks_mut(4 * TILE).enumerate() {
                    for kk in 0..KB.min(inp - kb * KB) {
                        let k = kb * KB + kk;
                        for half in 0..2 {
                            let c0 = p * PANEL + half * NT;
                            for j in 0..NT.min(out.saturating_sub(c0)) {
                                let (hi, lo) = split(w[k * out + c0 + j]);
                                let at = (kk / 2) * 2 * NT + 2 * j + kk % 2;
                                block[half * TILE + at] = hi;
                                block[(2 + half) * TILE + at] = lo;
                            }
                        }
                    }
                }
            });
        AmxLinear {
            tiles,
            inp,
            out,
            kbs,
        }
    }

    /// Bytes held by the packed tiles.
    pub(crate) fn bytes(&self) -> usize {
        self.tiles.len() * std::mem::size_of::<u16>()
    }
}

/// A row-major `x` `[rows, in]` split into bf16 hi and lo parts laid out as AMX tiles: row
/// block `rb` (32 rows, the last one padded), `k` block `kb` holds four tiles of 16 rows × 32
/// values — hi rows 0–15, hi rows 16–31, lo rows 0–15, lo rows 16–31 — starting at
/// `(rb · kbs + kb) · 4 · 512` (zeros past `in`; padding rows hold stale values, which only
/// ever reach output rows that are never stored). Fill it once and multiply it by every weight
/// that takes the same input ([`linear`]).
#[derive(Debug, Default)]
pub(crate) struct Split {
    tiles: Vec<u16>,
    rows: usize,
    inp: usize,
    kbs: usize,
}

impl Split {
    /// Split `x` (`[rows, inp]` row-major) in, reusing the buffer.
    pub(crate) fn fill(&mut self, x: &[f32], inp: usize) {
        let rows = x.len() / inp.max(1);
        let kbs = inp.div_ceil(KB);
        let per = kbs * 4 * TILE;
        let need = rows.div_ceil(RB) * per;
        if self.tiles.len() < need {
            self.tiles.resize(need, 0);
        }
        (self.rows, self.inp, self.kbs) = (rows, inp, kbs);
        if inp == 0 {
            return;
        }
        self.tiles[..need]
            .par_chunks_mut(per)
            .zip(x.par_chunks(RB * inp))
            .for_each(|(block, src)| kernel::split_block(block, src, inp));
    }
}

/// Split up to 32 rows of `src` (`inp` floats each) into one row block of tiles (see
/// [`Split`]), `k` zero-padded to a multiple of 32.
#[inline(always)]
fn split_block(block: &mut [u16], src: &[f32], inp: usize) {
    for (r, row) in src.chunks(inp).enumerate() {
        let (half, tr) = (r / 16, r % 16);
        for kb in 0..inp.div_ceil(KB) {
            let seg = &row[kb * KB..inp.min((kb + 1) * KB)];
            let at = kb * 4 * TILE + tr * KB;
            let (hi, lo) = block.split_at_mut(at + (2 + half) * TILE);
            let hi = &mut hi[at + half * TILE..][..KB];
            let lo = &mut lo[..KB];
            for ((h, l), &v) in hi.iter_mut().zip(lo.iter_mut()).zip(seg) {
                (*h, *l) = split(v);
            }
            hi[seg.len()..].fill(0);
            lo[seg.len()..].fill(0);
        }
    }
}

/// `dst = x · W (+ bias)` for a split `x` `[rows, in]` and `dst` `[rows, out]`; the panels are
/// split among the current rayon pool's threads.
///
/// # Panics
/// When a length does not match the weight's shape, or when [`available`] is false (caller
/// bugs).
pub(crate) fn linear(dst: &mut [f32], x: &Split, w: &AmxLinear, bias: Option<&[f32]>) {
    let (k, n, rows) = (w.inp, w.out, x.rows);
    assert!(
        x.inp == k && dst.len() == rows * n && bias.is_none_or(|b| b.len() == n),
        "amx::linear shapes: x [{rows}, {}] dst {} for {k}→{n}",
        x.inp,
        dst.len()
    );
    assert!(available(), "amx::linear without AMX");
    // A split `x` with no inputs has no rows (`Split::fill`), so k = 0 returns here too.
    if rows == 0 || n == 0 {
        return;
    }
    let n_panels = n.div_ceil(PANEL);
    let parts = rayon::current_num_threads().clamp(1, n_panels);
    let per = n_panels.div_ceil(parts);
    let chunk = (CHUNK_BYTES / (4 * KB * x.kbs)).max(1).next_multiple_of(RB);
    let base = dst.as_mut_ptr().expose_provenance();
    (0..parts).into_par_iter().for_each(|j| {
        let panels = (j * per).min(n_panels)..((j + 1) * per).min(n_panels);
        if panels.is_empty() {
            return;
        }
        let mut tiles = kernel::Tiles::configure();
        for r0 in (0..rows).step_by(chunk) {
            let r = chunk.min(rows - r0);
            // SAFETY: `dst` is `[rows, n]` (checked above) and borrowed mutably for the whole
            // parallel loop; task `j` writes only the columns of its own panels (disjoint from
            // every other task's) in rows r0..r0 + r, and nothing else reads `dst` meanwhile.
            // `x` holds rows.div_ceil(32) row blocks of tiles (filled for this `k`), so row
            // blocks of 32 starting at r0 (a multiple of 32) are in bounds;
            // `w` holds its panels' tiles; `bias` has `n` values. AMX was detected above and
            // `tiles` configured this thread.
            #[allow(unsafe_code)]
            unsafe {
                let out = std::ptr::with_exposed_provenance_mut::<f32>(base).add(r0 * n);
                tiles.panels((out, n), x, r0, r, w, bias, panels.clone());
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernel {
    use super::{AmxLinear, GROUP, NT, PANEL, RB, Split, TILE};
    use std::arch::asm;
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};

    /// Ask Linux for the AMX tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
    /// XFEATURE_XTILEDATA)`); true when granted. The permission is process-wide.
    #[cfg(target_os = "linux")]
    pub(super) fn request_tile_permission() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call with ARCH_REQ_XCOMP_PERM only changes which
        // extended states this process may use; it reads and writes no memory of ours. The
        // `syscall` instruction clobbers rcx and r11, declared here.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    /// [`super::split_block`], vectorised for AVX-512 where the CPU has it.
    pub(super) fn split_block(block: &mut [u16], src: &[f32], inp: usize) {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: AVX-512F/BW were detected; the function only indexes slices.
            unsafe { split_block_avx512(block, src, inp) }
        } else {
            super::split_block(block, src, inp);
        }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    fn split_block_avx512(block: &mut [u16], src: &[f32], inp: usize) {
        super::split_block(block, src, inp);
    }

    /// The 64-byte tile configuration of palette 1.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// This thread's tiles configured as 8 tiles of 16 rows × 64 bytes; released on drop.
    pub(super) struct Tiles(());

    impl Tiles {
        /// Configure the tiles (AMX must be [`super::available`]).
        pub(super) fn configure() -> Tiles {
            let mut cfg = Config {
                palette: 1,
                start_row: 0,
                reserved: [0; 14],
                colsb: [0; 16],
                rows: [0; 16],
            };
            for t in 0..8 {
                cfg.colsb[t] = 64;
                cfg.rows[t] = 16;
            }
            // SAFETY: `cfg` is a valid palette-1 configuration (8 tiles of 16 × 64 bytes, the
            // rest unused, reserved bytes zero), 64-byte aligned; callers only configure after
            // `available()` confirmed AMX and the OS permission.
            unsafe { asm!("ldtilecfg [{0}]", in(reg) &cfg, options(nostack, readonly)) };
            Tiles(())
        }

        /// Rows `r0 .. r0 + rows` of the panels `panels` of `dst = x · W (+ bias)`; `dst`
        /// points to row `r0` (as (pointer, row stride)).
        ///
        /// # Safety
        /// `dst` points to `rows` rows of at least `w.out` writable floats (stride `ds`) no one
        /// else touches in these panels' columns; `x` holds row blocks of 32 rows covering
        /// `r0 .. r0 + rows` (`r0` a multiple of 32) for `w.inp`; `bias` (if any) holds
        /// `w.out` values.
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn panels(
            &mut self,
            (dst, ds): (*mut f32, usize),
            x: &Split,
            r0: usize,
            rows: usize,
            w: &AmxLinear,
            bias: Option<&[f32]>,
            panels: std::ops::Range<usize>,
        ) {
            let mut tmp = [0f32; RB * PANEL];
            // A row block of split input is x.kbs · 4 KiB, as is a panel of the weight.
            let block_len = x.kbs * 4 * TILE;
            // A panel is kbs · 4 KiB; while a thread computes a group of panels, it prefetches
            // the next group into L2, spread over the (row block, panel, k block) steps, so that
            // the first row block of a group does not wait on memory (a forward pass streams
            // every weight once).
            let panel_len = w.kbs * 4 * TILE;
            let last = panels.end;
            let mut g0 = panels.start;
            while g0 < last {
                let group = g0..(g0 + GROUP).min(last);
                let next_len = ((group.end + GROUP).min(last) - group.end) * panel_len;
                let lines = next_len * 2 / 64;
                let steps = rows.div_ceil(RB) * group.len() * w.kbs;
                let per_step = lines.div_ceil(steps.max(1));
                let next = unsafe { w.tiles.as_ptr().add(group.end * panel_len).cast::<i8>() };
                let mut step = 0;
                for b in (0..rows).step_by(RB) {
                    let height = RB.min(rows - b);
                    let xb = unsafe { x.tiles.as_ptr().add(((r0 + b) / RB) * block_len) };
                    for p in group.clone() {
                        let wp = unsafe { w.tiles.as_ptr().add(p * panel_len) };
                        let c0 = p * PANEL;
                        let width = PANEL.min(w.out - c0);
                        // SAFETY: tiles 0–3 accumulate; each k block reads the row block's four
                        // 1 KiB input tiles and the panel's four 1 KiB weight tiles (contiguous,
                        // stride 64 bytes), all in bounds; prefetches touch only the next group's
                        // panels (lines < `lines`), which exist (group.end + that many panels
                        // <= last <= the weight's panel count).
                        unsafe {
                            asm!(
                                "tilezero tmm0",
                                "tilezero tmm1",
                                "tilezero tmm2",
                                "tilezero tmm3",
                                options(nostack, nomem)
                            );
                            for kb in 0..w.kbs {
                                let wt = wp.add(kb * 4 * TILE);
                                let xt = xb.add(kb * 4 * TILE);
                                let first = step * per_step;
                                for l in first..(first + per_step).min(lines) {
                                    _mm_prefetch::<_MM_HINT_T1>(next.add(l * 64));
                                }
                                step += 1;
                                asm!(
                                    "tileloadd tmm4, [{h0} + {s64}*1]",
                                    "tileloadd tmm6, [{wl0} + {s64}*1]",
                                    "tileloadd tmm7, [{wl1} + {s64}*1]",
                                    "tdpbf16ps tmm0, tmm4, tmm6",
                                    "tdpbf16ps tmm1, tmm4, tmm7",
                                    "tileloadd tmm5, [{h1} + {s64}*1]",
                                    "tdpbf16ps tmm2, tmm5, tmm6",
                                    "tdpbf16ps tmm3, tmm5, tmm7",
                                    "tileloadd tmm6, [{wh0} + {s64}*1]",
                                    "tileloadd tmm7, [{wh1} + {s64}*1]",
                                    "tdpbf16ps tmm0, tmm4, tmm6",
                                    "tdpbf16ps tmm1, tmm4, tmm7",
                                    "tdpbf16ps tmm2, tmm5, tmm6",
                                    "tdpbf16ps tmm3, tmm5, tmm7",
                                    "tileloadd tmm4, [{l0} + {s64}*1]",
                                    "tileloadd tmm5, [{l1} + {s64}*1]",
                                    "tdpbf16ps tmm0, tmm4, tmm6",
                                    "tdpbf16ps tmm1, tmm4, tmm7",
                                    "tdpbf16ps tmm2, tmm5, tmm6",
                                    "tdpbf16ps tmm3, tmm5, tmm7",
                                    wh0 = in(reg) wt,
                                    wh1 = in(reg) wt.add(TILE),
                                    wl0 = in(reg) wt.add(2 * TILE),
                                    wl1 = in(reg) wt.add(3 * TILE),
                                    h0 = in(reg) xt,
                                    h1 = in(reg) xt.add(TILE),
                                    l0 = in(reg) xt.add(2 * TILE),
                                    l1 = in(reg) xt.add(3 * TILE),
                                    s64 = in(reg) 64usize,
                                    options(nostack, readonly),
                                );
                            }
                        }
                        let out = unsafe { dst.add(b * ds + c0) };
                        if height == RB && width == PANEL {
                            // SAFETY: the 32 × 32 block at rows b .., columns c0 .. of `dst` is
                            // in bounds (full height and width), row stride ds floats.
                            unsafe { store_block(out, ds) };
                        } else {
                            // SAFETY: `tmp` is a 32 × 32 block, row stride 32 floats.
                            unsafe { store_block(tmp.as_mut_ptr(), RB) };
                            for (r, row) in tmp.chunks(PANEL).take(height).enumerate() {
                                // SAFETY: row b + r < rows, columns c0 .. c0 + width <= w.out
                                // of `dst`.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        row.as_ptr(),
                                        out.add(r * ds),
                                        width,
                                    );
                                }
                            }
                        }
                        if let Some(bias) = bias {
                            for r in 0..height {
                                // SAFETY: as above, row b + r, columns c0 .. c0 + width.
                                let row = unsafe {
                                    std::slice::from_raw_parts_mut(out.add(r * ds), width)
                                };
                                for (y, &bv) in row.iter_mut().zip(&bias[c0..c0 + width]) {
                                    *y += bv;
                                }
                            }
                        }
                    }
                }
                g0 = group.end;
            }
        }
    }

    /// Store the four accumulator tiles as one 32 × 32 block at `out` (row stride `stride`
    /// floats): tile t covers rows 16·(t / 2) .., columns 16·(t % 2) ...
    ///
    /// # Safety
    /// `out` points to 32 rows of 32 writable floats, `stride` floats apart; the tiles are
    /// configured.
    unsafe fn store_block(out: *mut f32, stride: usize) {
        // SAFETY: the caller guarantees the block; each tilestored writes 16 rows of 64 bytes.
        unsafe {
            asm!(
                "tilestored [{o0} + {s}*1], tmm0",
                "tilestored [{o1} + {s}*1], tmm1",
                "tilestored [{o2} + {s}*1], tmm2",
                "tilestored [{o3} + {s}*1], tmm3",
                o0 = in(reg) out,
                o1 = in(reg) out.add(NT),
                o2 = in(reg) out.add(16 * stride),
                o3 = in(reg) out.add(16 * stride + NT),
                s = in(reg) stride * 4,
                options(nostack),
            );
        }
    }

    impl Drop for Tiles {
        fn drop(&mut self) {
            // SAFETY: releases this thread's tile configuration (set up in `configure`).
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod kernel {
    //! No AMX off x86-64: [`super::available`] is false, so nothing here runs.
    use super::{AmxLinear, Split};

    pub(super) fn split_block(block: &mut [u16], src: &[f32], inp: usize) {
        super::split_block(block, src, inp);
    }

    pub(super) struct Tiles(());

    impl Tiles {
        pub(super) fn configure() -> Tiles {
            unreachable!("AMX is never available off x86-64")
        }

        #[allow(clippy::too_many_arguments, unsafe_code)]
        pub(super) unsafe fn panels(
            &mut self,
            _: (*mut f32, usize),
            _: &Split,
            _: usize,
            _: usize,
            _: &AmxLinear,
            _: Option<&[f32]>,
            _: std::ops::Range<usize>,
        ) {
            unreachable!("AMX is never available off x86-64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
            })
            .collect()
    }

    fn run(x: &[f32], w: &AmxLinear, bias: Option<&[f32]>) -> Vec<f32> {
        let mut s = Split::default();
        s.fill(x, w.inp);
        let mut y = vec![f32::NAN; x.len() / w.inp.max(1) * w.out];
        linear(&mut y, &s, w, bias);
        y
    }

    #[test]
    fn splitting_keeps_sixteen_mantissa_bits() {
        for x in data(10_000, 3, 100.0) {
            let (h, l) = split(x);
            let back = widen(h) + widen(l);
            assert!((back - x).abs() <= x.abs() * 2f32.powi(-16), "{x} → {back}");
        }
        assert_eq!(split(1.0), (0x3f80, 0));
        assert_eq!(split(0.0), (0, 0));
        // bf16 keeps 7 fraction bits: 1 + 2⁻⁸ is a tie (to even: 1), lo the 2⁻⁸ part;
        // 1 + 2⁻⁸ + 2⁻²⁰ rounds up to 1 + 2⁻⁷, and lo = −(2⁻⁸ − 2⁻²⁰) rounds to −2⁻⁸.
        let (h, l) = split(1.0 + 2f32.powi(-8));
        assert_eq!((widen(h), widen(l)), (1.0, 2f32.powi(-8)));
        let (h, l) = split(1.0 + 2f32.powi(-8) + 2f32.powi(-20));
        assert_eq!((widen(h), widen(l)), (1.0 + 2f32.powi(-7), -2f32.powi(-8)));
    }

    #[test]
    fn matches_the_f64_product_within_the_bf16x3_bound_on_odd_shapes() {
        if !available() {
            eprintln!("SKIP: this CPU or OS has no AMX-BF16 tiles");
            return;
        }
        for &(rows, inp, out) in &[
            (1, 1, 1),
            (5, 33, 17),
            (37, 70, 65),
            (64, 576, 96),
            (100, 64, 300),
        ] {
            let x = data(rows * inp, 11, 2.0);
            let wf = data(inp * out, 7, 0.5);
            let b = data(out, 5, 1.0);
            let w = AmxLinear::new(&wf, inp, out);
            let y = run(&x, &w, Some(&b));
            for r in 0..rows {
                for c in 0..out {
                    let (mut exact, mut mag) = (f64::from(b[c]), f64::from(b[c].abs()));
                    for k in 0..inp {
                        let t = f64::from(x[r * inp + k]) * f64::from(wf[k * out + c]);
                        exact += t;
                        mag += t.abs();
                    }
                    let err = (f64::from(y[r * out + c]) - exact).abs();
                    // Dropped lo·lo terms and the split's own rounding: 3 · 2⁻¹⁶ of the
                    // terms' magnitude, plus f32 accumulation.
                    assert!(
                        err <= mag * 3.0 * 2f64.powi(-16) + mag * 1e-6,
                        "[{rows}x{inp}x{out}] ({r},{c}): {} vs {exact}",
                        y[r * out + c]
                    );
                }
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_or_in_any_batch_and_thread_count() {
        if !available() {
            eprintln!("SKIP: this CPU or OS has no AMX-BF16 tiles");
            return;
        }
        let (rows, inp, out) = (70, 100, 130);
        let x = data(rows * inp, 21, 1.0);
        let w = AmxLinear::new(&data(inp * out, 22, 0.3), inp, out);
        let all = run(&x, &w, None);
        for r in [0, 31, 32, 69] {
            let one = run(&x[r * inp..(r + 1) * inp], &w, None);
            assert_eq!(one, all[r * out..(r + 1) * out], "row {r}");
        }
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool")
            .install(|| run(&x, &w, None));
        assert_eq!(single, all);
    }
}
