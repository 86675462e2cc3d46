//! Barnes–Hut quadtree over a 2-D map for the repulsive t-SNE forces.
//!
//! Points are sorted by Morton (Z-order) code; the tree splits cells until at most [`LEAF`]
//! points remain and is stored in depth-first order with a skip link per node, so a query is
//! one forward scan. Queries are made per leaf (a group of nearby points) rather than per
//! point: a node is summarised by its centre of mass when `side / (d - r) < θ`, with `d` the
//! distance from the group's centre to the node's centre of mass and `r` the group's radius —
//! so the usual per-point criterion `side / d_i < θ` holds for every point of the group — and
//! an unsummarised leaf is added exactly. The traversal cost is shared by the group, and the
//! sums run over a contiguous f32 list of what acts on it, [`LANES`] at a time.
use rayon::prelude::*;

/// Depth cap: coordinates are quantised to a 2^LEVELS grid (points closer than that share a leaf).
const LEVELS: u32 = 21;
/// Most points in a leaf (more only at the depth cap).
const LEAF: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Node {
    cx: f64,
    cy: f64,
    count: f64,
    /// `side / θ`: summarise when the distance exceeds it (plus the group's radius).
    open: f64,
    /// Index of the next node after this subtree (`own index + 1` for a leaf).
    skip: usize,
    /// The node's points: `start..end` in Morton order.
    start: usize,
    end: usize,
}

/// A quadtree over a map.
pub(super) struct QuadTree {
    nodes: Vec<Node>,
    /// Original index of the point at each Morton position.
    order: Vec<usize>,
    /// Coordinates in Morton order.
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Indices of the leaf nodes.
    leaves: Vec<usize>,
}

/// Repulsion on one point: `Σ_j w_ij² (y_i - y_j)` and `Σ_j w_ij` with `w = 1 / (1 + d²)`,
/// over all points including itself (which adds exactly 1 to the sum).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Repulsion {
    pub fx: f64,
    pub fy: f64,
    pub sum_w: f64,
}

impl QuadTree {
    /// Build the tree over `y` for opening angle `theta` (0 = exact).
    pub fn new(y: &[[f64; 2]], theta: f64) -> Self {
        let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in y {
            for a in 0..2 {
                min[a] = min[a].min(p[a]);
                max[a] = max[a].max(p[a]);
            }
        }
        let side = (max[0] - min[0]).max(max[1] - min[1]);
        let side = if side > 0.0 { side } else { 1.0 };
        let cells = (1u64 << LEVELS) as f64;
        let quant = |v: f64, m: f64| (((v - m) / side * cells) as u64).min((1 << LEVELS) - 1);
        let mut coded: Vec<(u64, usize)> = y
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    spread(quant(p[0], min[0])) | (spread(quant(p[1], min[1])) << 1),
                    i,
                )
            })
            .collect();
        coded.sort_unstable();
        let order: Vec<usize> = coded.iter().map(|c| c.1).collect();
        let codes: Vec<u64> = coded.iter().map(|c| c.0).collect();
        let mut tree = QuadTree {
            nodes: Vec::with_capacity(y.len() / 2 + 1),
            xs: order.iter().map(|&i| y[i][0]).collect(),
            ys: order.iter().map(|&i| y[i][1]).collect(),
            order,
            leaves: Vec::new(),
        };
        let inv_theta = if theta > 0.0 {
            1.0 / (theta * theta)
        } else {
            f64::INFINITY
        };
        tree.build(&codes, 0, 0, side, inv_theta);
        tree
    }

    /// Append the subtree over Morton positions `start..start + codes.len()` (codes sharing
    /// their top `level` quadrant digits).
    fn build(&mut self, codes: &[u64], start: usize, level: u32, side: f64, inv_theta: f64) {
        let idx = self.nodes.len();
        let end = start + codes.len();
        let count = codes.len() as f64;
        self.nodes.push(Node {
            cx: self.xs[start..end].iter().sum::<f64>() / count,
            cy: self.ys[start..end].iter().sum::<f64>() / count,
            count,
            open: side * inv_theta,
            skip: idx + 1,
            start,
            end,
        });
        if codes.len() <= LEAF || level == LEVELS {
            self.leaves.push(idx);
            return;
        }
        let shift = 2 * (LEVELS - 1 - level);
        let mut at = 0;
        for q in 0..4u64 {
            let cut = at + codes[at..].partition_point(|c| (c >> shift) & 3 <= q);
            if cut > at {
                self.build(
                    &codes[at..cut],
                    start + at,
                    level + 1,
                    side / 2.0,
                    inv_theta,
                );
            }
            at = cut;
        }
        self.nodes[idx].skip = self.nodes.len();
    }

    /// Barnes–Hut estimate of the repulsion on every point (indexed as the input), computed
    /// per leaf in parallel; the result does not depend on the number of threads.
    pub fn repulsion(&self) -> Vec<Repulsion> {
        let per_leaf: Vec<Vec<Repulsion>> = self
            .leaves
            .par_iter()
            .map_init(Interactions::default, |list, &g| {
                self.leaf_repulsion(g, list)
            })
            .collect();
        let mut out = vec![Repulsion::default(); self.order.len()];
        for (&g, reps) in self.leaves.iter().zip(per_leaf) {
            for (pos, r) in (self.nodes[g].start..).zip(reps) {
                out[self.order[pos]] = r;
            }
        }
        out
    }

    /// Repulsion on the points of leaf `g`: one traversal collects what acts on the whole
    /// leaf into `list`, then each point sums over the list.
    fn leaf_repulsion(&self, g: usize, list: &mut Interactions) -> Vec<Repulsion> {
        let leaf = &self.nodes[g];
        let (gx, gy) = (
            &self.xs[leaf.start..leaf.end],
            &self.ys[leaf.start..leaf.end],
        );
        let (lo_x, hi_x) = gx
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let (lo_y, hi_y) = gy
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let (cx, cy) = ((lo_x + hi_x) / 2.0, (lo_y + hi_y) / 2.0);
        let radius = ((hi_x - lo_x).powi(2) + (hi_y - lo_y).powi(2)).sqrt() / 2.0;
        list.clear();
        let mut i = 0;
        while let Some(nd) = self.nodes.get(i) {
            if (cx - nd.cx).powi(2) + (cy - nd.cy).powi(2) > (radius + nd.open).powi(2) {
                list.push(nd.cx, nd.cy, nd.count);
                i = nd.skip;
            } else if nd.skip == i + 1 {
                for (&x, &y) in self.xs[nd.start..nd.end]
                    .iter()
                    .zip(&self.ys[nd.start..nd.end])
                {
                    list.push(x, y, 1.0);
                }
                i = nd.skip;
            } else {
                i += 1;
            }
        }
        list.pad();
        gx.iter()
            .zip(gy)
            .map(|(&x, &y)| list.repulsion_on(x as f32, y as f32))
            .collect()
    }
}

/// Width of the summation loops (independent partial sums, so they vectorise).
const LANES: usize = 8;

/// Masses acting on a group of points: positions and counts (f32, structure of arrays).
#[derive(Default)]
struct Interactions {
    x: Vec<f32>,
    y: Vec<f32>,
    count: Vec<f32>,
}

impl Interactions {
    fn clear(&mut self) {
        self.x.clear();
        self.y.clear();
        self.count.clear();
    }

    fn push(&mut self, x: f64, y: f64, count: f64) {
        self.x.push(x as f32);
        self.y.push(y as f32);
        self.count.push(count as f32);
    }

    /// Pad to a multiple of [`LANES`] with massless entries.
    fn pad(&mut self) {
        while !self.x.len().is_multiple_of(LANES) {
            self.push(0.0, 0.0, 0.0);
        }
    }

    /// The repulsion of the (padded) list on a point at `(px, py)`.
    fn repulsion_on(&self, px: f32, py: f32) -> Repulsion {
        let (mut fx, mut fy, mut sw) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
        let chunks = self
            .x
            .chunks_exact(LANES)
            .zip(self.y.chunks_exact(LANES))
            .zip(self.count.chunks_exact(LANES));
        for ((x, y), c) in chunks {
            for l in 0..LANES {
                let (dx, dy) = (px - x[l], py - y[l]);
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                let cw = c[l] * w;
                sw[l] += cw;
                fx[l] += cw * w * dx;
                fy[l] += cw * w * dy;
            }
        }
        let total = |a: [f32; LANES]| a.iter().map(|&v| f64::from(v)).sum();
        Repulsion {
            fx: total(fx),
            fy: total(fy),
            sum_w: total(sw),
        }
    }
}

/// Spread the low 32 bits of `v` to the even bit positions of a u64.
fn spread(mut v: u64) -> u64 {
    v &= 0xffff_ffff;
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(y: &[[f64; 2]]) -> Vec<Repulsion> {
        y.iter()
            .map(|p| {
                let mut e = Repulsion::default();
                for q in y {
                    let (dx, dy) = (p[0] - q[0], p[1] - q[1]);
                    let w = 1.0 / (1.0 + dx * dx + dy * dy);
                    e.sum_w += w;
                    e.fx += w * w * dx;
                    e.fy += w * w * dy;
                }
                e
            })
            .collect()
    }

    fn spiral(n: usize) -> Vec<[f64; 2]> {
        (0..n)
            .map(|i| {
                let t = i as f64;
                [
                    (t * 0.37).sin() * 10.0 + t * 0.01,
                    (t * 0.73).cos() * 10.0 + (t * 0.05).sin(),
                ]
            })
            .collect()
    }

    /// With θ = 0 every interaction is exact (up to f32 rounding; |w² d| <= w / 2 bounds the
    /// force terms by the sum).
    #[test]
    fn exact_when_theta_is_zero() {
        let y = spiral(300);
        for (a, b) in exact(&y).iter().zip(QuadTree::new(&y, 0.0).repulsion()) {
            assert!(
                (a.sum_w - b.sum_w).abs() < 1e-5 * a.sum_w
                    && (a.fx - b.fx).abs() < 1e-5 * a.sum_w
                    && (a.fy - b.fy).abs() < 1e-5 * a.sum_w
            );
        }
    }

    /// With θ = 0.5 the estimates stay within a few percent of the exact sums (forces relative
    /// to the sum of the magnitudes of the pairwise forces, which may cancel), and duplicate
    /// points (beyond the depth cap) are handled.
    #[test]
    fn barnes_hut_is_close() {
        let mut y = spiral(2000);
        y.extend([[3.0, 3.0]; 20]);
        let bh = QuadTree::new(&y, 0.5).repulsion();
        let mut worst: f64 = 0.0;
        for ((p, a), b) in y.iter().zip(exact(&y)).zip(bh) {
            assert!((a.sum_w - b.sum_w).abs() < 0.03 * a.sum_w);
            let scale: f64 = y
                .iter()
                .map(|q| {
                    let d2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
                    d2.sqrt() / (1.0 + d2).powi(2)
                })
                .sum();
            let err = ((a.fx - b.fx).powi(2) + (a.fy - b.fy).powi(2)).sqrt() / scale;
            assert!(err < 0.03, "{err}");
            worst = worst.max(err);
        }
        assert!(worst > 0.0, "θ = 0.5 should approximate");
    }
}
