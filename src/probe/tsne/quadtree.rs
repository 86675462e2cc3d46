//! Barnes–Hut quadtree over a 2-D map for the repulsive t-SNE forces.
//!
//! Points are sorted by Morton (Z-order) code and the tree is stored in depth-first order with a
//! skip link per node, so one query is a single forward scan: a node that is far enough
//! (`side / distance < θ`) or a leaf is summarised by its centre of mass and the scan jumps past
//! its subtree; otherwise the scan descends into the next node (its first child).

/// Depth cap: coordinates are quantised to a 2^LEVELS grid (points closer than that share a leaf).
const LEVELS: u32 = 21;

#[derive(Debug, Clone, Copy)]
struct Node {
    cx: f64,
    cy: f64,
    count: f64,
    /// Summarise when squared distance to the centre of mass exceeds this: `(side / θ)²`,
    /// negative for leaves (always summarised).
    r2: f64,
    /// Index of the next node after this subtree.
    skip: usize,
}

/// A quadtree over a map, and the Morton order of its points (spatially coherent, used to
/// schedule queries).
pub(super) struct QuadTree {
    nodes: Vec<Node>,
    order: Vec<usize>,
}

/// Repulsion on one point: `Σ_j w_ij² (y_i - y_j)` and `Σ_j w_ij` with `w = 1 / (1 + d²)`
/// (over all points including itself, which adds exactly 1 to the sum when it sits alone in
/// its leaf).
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
        let mut tree = QuadTree {
            nodes: Vec::with_capacity(2 * y.len()),
            order: Vec::new(),
        };
        let inv_theta2 = if theta > 0.0 {
            1.0 / (theta * theta)
        } else {
            f64::INFINITY
        };
        tree.build(y, &coded, 0, side, inv_theta2);
        tree.order = coded.into_iter().map(|c| c.1).collect();
        tree
    }

    /// Append the subtree over `pts` (sorted codes sharing their top `level` quadrant digits).
    fn build(
        &mut self,
        y: &[[f64; 2]],
        pts: &[(u64, usize)],
        level: u32,
        side: f64,
        inv_theta2: f64,
    ) {
        let idx = self.nodes.len();
        let (mut sx, mut sy) = (0.0, 0.0);
        for &(_, i) in pts {
            sx += y[i][0];
            sy += y[i][1];
        }
        let count = pts.len() as f64;
        let leaf = pts.len() == 1 || level == LEVELS;
        self.nodes.push(Node {
            cx: sx / count,
            cy: sy / count,
            count,
            r2: if leaf { -1.0 } else { side * side * inv_theta2 },
            skip: idx + 1,
        });
        if leaf {
            return;
        }
        let shift = 2 * (LEVELS - 1 - level);
        let mut rest = pts;
        for q in 0..4u64 {
            let cut = rest.partition_point(|c| (c.0 >> shift) & 3 <= q);
            let (child, tail) = rest.split_at(cut);
            if !child.is_empty() {
                self.build(y, child, level + 1, side / 2.0, inv_theta2);
            }
            rest = tail;
        }
        self.nodes[idx].skip = self.nodes.len();
    }

    /// Points in Morton order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Barnes–Hut estimate of the repulsion on a point at `p`.
    pub fn repulsion(&self, p: [f64; 2]) -> Repulsion {
        let mut r = Repulsion::default();
        let mut i = 0;
        while let Some(nd) = self.nodes.get(i) {
            let (dx, dy) = (p[0] - nd.cx, p[1] - nd.cy);
            let d2 = dx * dx + dy * dy;
            if d2 > nd.r2 {
                let w = 1.0 / (1.0 + d2);
                let cw = nd.count * w;
                r.sum_w += cw;
                r.fx += cw * w * dx;
                r.fy += cw * w * dy;
                i = nd.skip;
            } else {
                i += 1;
            }
        }
        r
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

    /// With θ = 0 the tree visits every point exactly: compare with the direct sums.
    #[test]
    fn exact_when_theta_is_zero() {
        let y: Vec<[f64; 2]> = (0..200)
            .map(|i| {
                let t = i as f64;
                [(t * 0.37).sin() * 3.0 + (t * 0.011), (t * 1.3).cos() * 2.0]
            })
            .collect();
        let tree = QuadTree::new(&y, 0.0);
        for &p in y.iter().step_by(17) {
            let r = tree.repulsion(p);
            let mut e = Repulsion::default();
            for q in &y {
                let (dx, dy) = (p[0] - q[0], p[1] - q[1]);
                let w = 1.0 / (1.0 + dx * dx + dy * dy);
                e.sum_w += w;
                e.fx += w * w * dx;
                e.fy += w * w * dy;
            }
            assert!(
                (r.sum_w - e.sum_w).abs() < 1e-9
                    && (r.fx - e.fx).abs() < 1e-9
                    && (r.fy - e.fy).abs() < 1e-9
            );
        }
        let mut sorted = tree.order().to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    }

    /// With θ = 0.5 the estimates stay within a few percent of the exact sums (forces relative
    /// to the sum of the magnitudes of the pairwise forces, which may cancel).
    #[test]
    fn barnes_hut_is_close() {
        let y: Vec<[f64; 2]> = (0..500)
            .map(|i| {
                let t = i as f64;
                [
                    (t * 0.37).sin() * 10.0,
                    (t * 0.73).cos() * 10.0 + (t * 0.05).sin(),
                ]
            })
            .collect();
        let exact = QuadTree::new(&y, 0.0);
        let bh = QuadTree::new(&y, 0.5);
        for &p in y.iter().step_by(7) {
            let (a, b) = (exact.repulsion(p), bh.repulsion(p));
            assert!((a.sum_w - b.sum_w).abs() < 0.03 * a.sum_w);
            let scale: f64 = y
                .iter()
                .map(|q| {
                    let d2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2);
                    d2.sqrt() / (1.0 + d2).powi(2)
                })
                .sum();
            assert!(((a.fx - b.fx).powi(2) + (a.fy - b.fy).powi(2)).sqrt() < 0.03 * scale);
        }
    }
}
