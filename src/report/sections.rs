//! The report's sections, each built from the experiment's own measurements; a section whose
//! data is absent says so instead of showing anything.
use super::charts::{
    BarFigure, BarPanel, BarSeries, Heatmap, HeatmapFigure, LegendEntry, Line, LineFigure,
    LinePanel, LossFigure, LossPanel, Mark, ScatterFigure, ScatterPanel, color, source_color,
};
use super::doc::{Block, Figures, Section, Table};
use super::format::{self, ABILITIES, ability_keys, key_label, lower_is_better};
use super::input::{Cell, ProbeData, Results, read_train_log};
use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Everything the sections read.
pub struct Ctx<'a> {
    pub dir: &'a Path,
    pub results: &'a Results,
    pub probe: &'a std::result::Result<ProbeData, String>,
}

impl Ctx<'_> {
    /// Finished cells of `group`.
    fn group(&self, group: &str) -> Vec<&Cell> {
        self.results
            .cells
            .iter()
            .filter(|c| c.group.as_deref() == Some(group) && c.done())
            .collect()
    }

    /// A note on cells of `groups` that are not done (failed or pending), if any.
    fn not_done(&self, groups: &[&str]) -> Option<String> {
        let missing: Vec<String> = self
            .results
            .cells
            .iter()
            .filter(|c| c.group.as_deref().is_some_and(|g| groups.contains(&g)) && !c.done())
            .map(|c| {
                format!(
                    "{} ({})",
                    c.id,
                    if c.status.is_empty() {
                        "no status"
                    } else {
                        &c.status
                    }
                )
            })
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "{} cell(s) of this question are not done and are left out: {}.",
                missing.len(),
                missing.join(", ")
            )
        })
    }

    /// The models, in the order cells name them.
    fn models(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for c in &self.results.cells {
            if !seen.contains(&c.model) {
                seen.push(c.model.clone());
            }
        }
        seen
    }

    fn model_color(&self, model: &str) -> usize {
        self.models().iter().position(|m| m == model).unwrap_or(0)
    }
}

/// The key measuring `ability` to plot for `cells`: the first of [`ability_keys`] that varies
/// across them (a benchmark at 0 everywhere says nothing), else the first present.
fn primary_key(cells: &[&Cell], ability: &str) -> Option<&'static str> {
    let present: Vec<&'static str> = ability_keys(ability)
        .iter()
        .copied()
        .filter(|k| cells.iter().any(|c| c.scores.contains_key(*k)))
        .collect();
    let varies = |k: &str| {
        let v: Vec<f64> = cells
            .iter()
            .filter_map(|c| c.scores.get(k).copied())
            .collect();
        v.iter().any(|x| (x - v[0]).abs() > 1e-12)
    };
    present
        .iter()
        .copied()
        .find(|k| varies(k))
        .or(present.first().copied())
}

/// A note naming the preferred keys skipped because they are constant across `cells`.
fn constant_keys_note(cells: &[&Cell]) -> Option<String> {
    let skipped: Vec<String> = ABILITIES
        .iter()
        .filter_map(|a| {
            let chosen = primary_key(cells, a)?;
            let before: Vec<&str> = ability_keys(a)
                .iter()
                .copied()
                .take_while(|k| *k != chosen)
                .filter(|k| cells.iter().any(|c| c.scores.contains_key(*k)))
                .collect();
            (!before.is_empty())
                .then(|| format!("{} (plotting {chosen} instead)", before.join(", ")))
        })
        .collect();
    (!skipped.is_empty()).then(|| {
        format!(
            "Some scores are the same in every cell and are not plotted: {}. They are in the table.",
            skipped.join("; ")
        )
    })
}

/// Every score key any of `cells` has, abilities' keys first.
fn all_keys(cells: &[&Cell]) -> Vec<String> {
    let present: BTreeSet<&String> = cells.iter().flat_map(|c| c.scores.keys()).collect();
    let mut keys: Vec<String> = ABILITIES
        .iter()
        .flat_map(|a| ability_keys(a).iter())
        .filter(|k| present.iter().any(|p| p.as_str() == **k))
        .map(|k| k.to_string())
        .collect();
    for p in present {
        if !keys.contains(p) {
            keys.push(p.clone());
        }
    }
    keys
}

fn fractions_label(c: &Cell) -> String {
    c.fractions
        .iter()
        .map(|(s, f)| match super::input::amount(f) {
            Some(f) => format!("{s} {}", format::fraction(f)),
            None => format!("{s} {f}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table of every score of `cells` (one row per cell), with a leading label column.
fn score_table(
    cells: &[&Cell],
    label: impl Fn(&Cell) -> String,
    extra: Vec<(String, Vec<String>)>,
) -> Table {
    let keys = all_keys(cells);
    let mut header = vec!["cell".to_string(), "setting".to_string()];
    header.extend(keys.iter().cloned());
    let mut rows: Vec<Vec<String>> = extra
        .into_iter()
        .map(|(name, vals)| {
            let mut r = vec![name, "base model".to_string()];
            r.extend(vals);
            r
        })
        .collect();
    for c in cells {
        let mut r = vec![c.id.clone(), label(c)];
        r.extend(keys.iter().map(|k| {
            c.scores
                .get(k)
                .map(|v| format::num(*v))
                .unwrap_or_else(|| "–".into())
        }));
        rows.push(r);
    }
    Table { header, rows }
}

fn y_label(key: &str) -> String {
    if lower_is_better(key) {
        format!("{key} (lower is better)")
    } else {
        key.to_string()
    }
}

/// Overview: what was run and how it went.
pub fn overview(ctx: &Ctx) -> Section {
    let r = ctx.results;
    let mut s = Section::new("overview", "Overview");
    if let Some(d) = &r.experiment.description {
        s.text(d.clone());
    }
    let count = |st: &str| r.cells.iter().filter(|c| c.status == st).count();
    s.text(format!(
        "{} cell(s): {} done, {} failed, {} pending. Models: {}.",
        r.cells.len(),
        count("done"),
        count("failed"),
        count("pending"),
        ctx.models().join(", ")
    ));
    let failed: Vec<String> = r
        .cells
        .iter()
        .filter(|c| c.status == "failed")
        .map(|c| {
            format!(
                "{}: {}",
                c.id,
                c.error.as_deref().unwrap_or("no error recorded")
            )
        })
        .collect();
    if !failed.is_empty() {
        s.note(format!(
            "Failed cells (left out of every figure): {}",
            failed.join("; ")
        ));
    }
    for b in &r.base {
        if let Some(e) = &b.error {
            s.note(format!(
                "The base model {} could not be scored: {e}",
                b.model
            ));
        }
    }
    s.text(
        "Every number below was measured by this experiment. Figures are drawn with the embedded \
         DejaVu Sans font; each is also saved as PNG and SVG in figures/.",
    );
    s
}

/// RQ1/RQ2: score vs data fraction, single source vs the mixture.
pub fn scaling(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "RQ1/RQ2: scaling with data amount (single source vs mixed)";
    let single = ctx.group("rq1");
    let mixed = ctx.group("rq2");
    if single.is_empty() && mixed.is_empty() {
        return Ok(Section::skipped(
            "scaling",
            title,
            "no finished cells in groups rq1 or rq2 (the experiment has no scaling grid)",
        ));
    }
    let mut s = Section::new("scaling", title);
    s.text(
        "Each panel plots one ability's score against the fraction of that ability's training \
         data (log scale): solid lines train on that source alone (RQ1), dashed lines on the \
         mixture of all sources at the same fraction (RQ2).",
    );
    let all: Vec<&Cell> = single.iter().chain(mixed.iter()).copied().collect();
    let models = ctx.models();
    let mut legend = Vec::new();
    let mut panels = Vec::new();
    let mut used: BTreeSet<(usize, bool)> = BTreeSet::new();
    for ability in ABILITIES {
        let Some(key) = primary_key(&all, ability) else {
            continue;
        };
        let mut lines = Vec::new();
        for (mi, model) in models.iter().enumerate() {
            for (is_mixed, cells) in [(false, &single), (true, &mixed)] {
                let mut pts: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| &c.model == model)
                    .filter(|c| is_mixed || c.sources() == vec![ability])
                    .filter_map(|c| Some((c.fraction(ability)?, *c.scores.get(key)?)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                used.insert((mi, is_mixed));
                lines.push(Line {
                    color: color(mi),
                    dashed: is_mixed,
                    points: pts,
                });
            }
        }
        if !lines.is_empty() {
            panels.push(LinePanel {
                title: format!("{ability}: {}", key_label(key)),
                x_label: if lines.iter().flat_map(|l| &l.points).any(|p| p.0 > 1.0) {
                    format!("amount of {ability} data (fraction, or examples when > 1)")
                } else {
                    format!("fraction of {ability} data")
                },
                y_label: y_label(key),
                lines,
            });
        }
    }
    for (mi, is_mixed) in used {
        let what = if is_mixed {
            "mixed (all sources)"
        } else {
            "single source"
        };
        let label = if models.len() > 1 {
            format!("{} {what}", models[mi])
        } else {
            what.to_string()
        };
        legend.push(LegendEntry {
            label,
            color: color(mi),
            mark: if is_mixed { Mark::Dashed } else { Mark::Line },
        });
    }
    if panels.is_empty() {
        s.note("The scaling cells have no scores for any ability, so there is nothing to plot.");
    } else {
        let fig = LineFigure {
            title: "Score vs data fraction".into(),
            legend,
            columns: panels.len().min(3),
            panels,
        };
        figs.add(
            &mut s,
            "scaling",
            "RQ1/RQ2: score vs data fraction (log x), single source vs mixed",
            &fig,
        )?;
    }
    if let Some(n) = ctx.not_done(&["rq1", "rq2"]) {
        s.note(n);
    }
    s.table(score_table(&all, fractions_label, vec![]));
    Ok(s)
}

/// The RQ3 setting a cell belongs to: its recipe name without the trailing `-f<N>`.
fn rq3_setting(c: &Cell) -> String {
    let r = c.recipe.as_str();
    match r.rfind("-f") {
        Some(i) if r[i + 2..].chars().all(|ch| ch.is_ascii_digit()) && i + 2 < r.len() => {
            r[..i].to_string()
        }
        _ => r.to_string(),
    }
}

/// The specialized : general ratio of an RQ3 cell: `ratio` when numeric, else the mean
/// math/code fraction divided by the general fraction.
fn rq3_ratio(c: &Cell) -> Option<f64> {
    match &c.ratio {
        Some(serde_json::Value::Number(n)) => return n.as_f64(),
        Some(serde_json::Value::Object(m)) => {
            let get = |k: &str| m.get(k).and_then(super::input::amount);
            if let (Some(sp), Some(g)) = (get("specialized"), get("general"))
                && g > 0.0
            {
                return Some(sp / g);
            }
        }
        _ => {}
    }
    let general = c.fraction("general")?;
    let spec: Vec<f64> = ["math", "code"]
        .iter()
        .filter_map(|s| c.fraction(s))
        .collect();
    (general > 0.0 && !spec.is_empty())
        .then(|| spec.iter().sum::<f64>() / spec.len() as f64 / general)
}

/// RQ3: scores against the specialized : general ratio, one line per setting.
pub fn ratio(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "RQ3: composition ratio (specialized : general)";
    let cells = ctx.group("rq3");
    if cells.is_empty() {
        return Ok(Section::skipped(
            "ratio",
            title,
            "no finished cells in group rq3",
        ));
    }
    let mut s = Section::new("ratio", title);
    s.text(
        "x is the ratio of specialized (math, code) to general data fractions (log scale); each \
         line is one setting of the ratio grid (which side is held fixed).",
    );
    let mut settings: Vec<(String, String)> = Vec::new();
    for c in &cells {
        let key = (c.model.clone(), rq3_setting(c));
        if !settings.contains(&key) {
            settings.push(key);
        }
    }
    let multi_model = ctx.models().len() > 1;
    let legend: Vec<LegendEntry> = settings
        .iter()
        .enumerate()
        .map(|(i, (m, st))| LegendEntry {
            label: if multi_model {
                format!("{m} {st}")
            } else {
                st.clone()
            },
            color: color(i),
            mark: Mark::Line,
        })
        .collect();
    let unplaced: Vec<&str> = cells
        .iter()
        .filter(|c| rq3_ratio(c).is_none())
        .map(|c| c.id.as_str())
        .collect();
    let mut panels = Vec::new();
    for ability in ABILITIES {
        let Some(key) = primary_key(&cells, ability) else {
            continue;
        };
        let lines: Vec<Line> = settings
            .iter()
            .enumerate()
            .filter_map(|(i, (m, st))| {
                let mut pts: Vec<(f64, f64)> = cells
                    .iter()
                    .filter(|c| &c.model == m && &rq3_setting(c) == st)
                    .filter_map(|c| Some((rq3_ratio(c)?, *c.scores.get(key)?)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (!pts.is_empty()).then(|| Line {
                    color: color(i),
                    dashed: false,
                    points: pts,
                })
            })
            .collect();
        if !lines.is_empty() {
            panels.push(LinePanel {
                title: format!("{ability}: {}", key_label(key)),
                x_label: "specialized : general fraction ratio".into(),
                y_label: y_label(key),
                lines,
            });
        }
    }
    if !unplaced.is_empty() {
        s.note(format!(
            "{} cell(s) have no general fraction or ratio and are not plotted: {}.",
            unplaced.len(),
            unplaced.join(", ")
        ));
    }
    if !panels.is_empty() {
        let fig = LineFigure {
            title: "Score vs composition ratio".into(),
            legend,
            columns: panels.len().min(3),
            panels,
        };
        figs.add(
            &mut s,
            "ratio",
            "RQ3: score vs specialized : general ratio, one line per setting",
            &fig,
        )?;
    }
    if let Some(n) = ctx.not_done(&["rq3"]) {
        s.note(n);
    }
    s.table(score_table(&cells, fractions_label, vec![]));
    Ok(s)
}

/// Grouped bars: one panel per ability, one category per cell (plus the base model), one
/// colour per model.
fn bars(
    ctx: &Ctx,
    title: &str,
    cells: &[&Cell],
    category: &dyn Fn(&Cell) -> String,
    with_base: bool,
) -> Option<BarFigure> {
    let mut cats: Vec<String> = Vec::new();
    if with_base && !ctx.results.base.is_empty() {
        cats.push("base".into());
    }
    for c in cells {
        let name = category(c);
        if !cats.contains(&name) {
            cats.push(name);
        }
    }
    let models: Vec<String> = ctx
        .models()
        .into_iter()
        .filter(|m| cells.iter().any(|c| &c.model == m))
        .collect();
    let mut panels = Vec::new();
    for ability in ABILITIES {
        let Some(key) = primary_key(cells, ability) else {
            continue;
        };
        let series: Vec<BarSeries> = models
            .iter()
            .map(|m| BarSeries {
                color: color(ctx.model_color(m)),
                values: cats
                    .iter()
                    .map(|cat| {
                        if with_base && cat == "base" {
                            return ctx
                                .results
                                .base
                                .iter()
                                .find(|b| &b.model == m)?
                                .scores
                                .get(key)
                                .copied();
                        }
                        cells
                            .iter()
                            .find(|c| &c.model == m && &category(c) == cat)
                            .and_then(|c| c.scores.get(key).copied())
                    })
                    .collect(),
            })
            .collect();
        panels.push(BarPanel {
            title: format!("{ability}: {}", key_label(key)),
            y_label: y_label(key),
            categories: cats.clone(),
            series,
        });
    }
    if panels.is_empty() {
        return None;
    }
    // One model and every ability scored in [0, 1], higher is better: one panel, the abilities
    // side by side in their source colours, is the easiest to compare.
    let unit = |p: &BarPanel| {
        p.series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .all(|v| (0.0..=1.0).contains(v))
    };
    let keys: Vec<&str> = ABILITIES
        .iter()
        .filter_map(|a| primary_key(cells, a))
        .collect();
    if models.len() == 1 && keys.iter().all(|k| !lower_is_better(k)) && panels.iter().all(unit) {
        let abilities: Vec<&str> = ABILITIES
            .iter()
            .copied()
            .filter(|a| primary_key(cells, a).is_some())
            .collect();
        let names: Vec<String> = abilities.iter().map(|a| a.to_string()).collect();
        let legend = abilities
            .iter()
            .zip(&keys)
            .map(|(a, k)| LegendEntry {
                label: format!("{a}: {}", key_label(k)),
                color: source_color(a, &names),
                mark: Mark::Square,
            })
            .collect();
        let series = abilities
            .iter()
            .zip(panels)
            .map(|(a, p)| BarSeries {
                color: source_color(a, &names),
                values: p
                    .series
                    .into_iter()
                    .next()
                    .map(|s| s.values)
                    .unwrap_or_default(),
            })
            .collect();
        return Some(BarFigure {
            title: title.into(),
            legend,
            columns: 1,
            panels: vec![BarPanel {
                title: format!("model {}", models[0]),
                y_label: "score (higher is better)".into(),
                categories: cats,
                series,
            }],
        });
    }
    let legend = models
        .iter()
        .map(|m| LegendEntry {
            label: format!("model: {m}"),
            color: color(ctx.model_color(m)),
            mark: Mark::Square,
        })
        .collect();
    Some(BarFigure {
        title: title.into(),
        legend,
        columns: panels.len().min(3),
        panels,
    })
}

fn base_rows(ctx: &Ctx, cells: &[&Cell]) -> Vec<(String, Vec<String>)> {
    let keys = all_keys(cells);
    ctx.results
        .base
        .iter()
        .map(|b| {
            (
                format!("base: {}", b.model),
                keys.iter()
                    .map(|k| {
                        b.scores
                            .get(k)
                            .map(|v| format::num(*v))
                            .unwrap_or_else(|| "–".into())
                    })
                    .collect(),
            )
        })
        .collect()
}

fn strategy_name(c: &Cell) -> String {
    match c.strategy.as_deref() {
        Some("mixed") => "multi-task".into(),
        Some(s) => s.to_string(),
        None => c.recipe.clone(),
    }
}

/// What the RQ4 cells say about forgetting, in sentences (per model).
fn rq4_findings(ctx: &Ctx, cells: &[&Cell]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(key) = primary_key(cells, "math") else {
        return out;
    };
    let lower = lower_is_better(key);
    for model in ctx.models() {
        let find = |st: &str| {
            cells
                .iter()
                .find(|c| c.model == model && c.strategy.as_deref() == Some(st))
                .and_then(|c| c.scores.get(key).copied())
        };
        let (mt, seq, dmt) = (find("mixed"), find("sequential"), find("dmt"));
        let prefix = if ctx.models().len() > 1 {
            format!("{model}: ")
        } else {
            String::new()
        };
        if let (Some(mt), Some(seq)) = (mt, seq) {
            let gap = if lower { seq - mt } else { mt - seq };
            let verdict = if gap > 0.0 {
                "forgot math relative to"
            } else {
                "did not forget math relative to"
            };
            out.push(format!(
                "{prefix}Sequential training {verdict} multi-task learning: {} {} (sequential) vs {} (multi-task).",
                key_label(key),
                format::num(seq),
                format::num(mt)
            ));
            if let Some(dmt) = dmt {
                if gap > 0.0 {
                    let recovered = if lower { seq - dmt } else { dmt - seq };
                    out.push(format!(
                        "{prefix}DMT scored {} and recovered {:.0}% of that gap ({}).",
                        format::num(dmt),
                        100.0 * recovered / gap,
                        if recovered > 0.0 {
                            "it helped"
                        } else {
                            "it did not help"
                        }
                    ));
                } else {
                    out.push(format!(
                        "{prefix}DMT scored {} (multi-task {}).",
                        format::num(dmt),
                        format::num(mt)
                    ));
                }
            }
        } else {
            out.push(format!(
                "{prefix}The forgetting comparison needs both a multi-task (mixed) and a sequential cell with {key}; this experiment lacks one."
            ));
        }
        // Within-run evidence: math held-out NLL over the sequential run's stages.
        if let Some(c) = cells
            .iter()
            .find(|c| c.model == model && c.strategy.as_deref() == Some("sequential"))
            && let Some(f) = &c.forgetting
            && let Some(col) = f.abilities.iter().position(|a| a == "math")
            && let Some((metric, m)) = f
                .metrics
                .iter()
                .find(|(k, _)| k.starts_with("nll"))
                .or_else(|| f.metrics.iter().next())
        {
            let vals: Vec<String> = f
                .stages
                .iter()
                .zip(m)
                .filter_map(|(st, row)| Some(format!("{st} {}", format::num((*row.get(col)?)?))))
                .collect();
            if !vals.is_empty() {
                out.push(format!(
                    "{prefix}Sequential run, math {metric} after each stage: {}.",
                    vals.join(" → ")
                ));
            }
        }
    }
    out
}

/// RQ4: the four strategies side by side.
pub fn strategies(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "RQ4: training strategies";
    let cells = ctx.group("rq4");
    if cells.is_empty() {
        return Ok(Section::skipped(
            "strategies",
            title,
            "no finished cells in group rq4",
        ));
    }
    let mut s = Section::new("strategies", title);
    s.text(
        "Multi-task learning trains on the mixture at once; sequential training trains on one \
         source after another; mixed sequential trains the specialized mixture then general data; \
         DMT trains the specialized mixture, then general data plus a fraction k of the specialized data.",
    );
    let findings = rq4_findings(ctx, &cells);
    if !findings.is_empty() {
        s.blocks.push(Block::List(findings));
    }
    if let Some(fig) = bars(
        ctx,
        "Scores by training strategy",
        &cells,
        &strategy_name,
        true,
    ) {
        figs.add(
            &mut s,
            "strategies",
            "RQ4: scores by strategy (base model first)",
            &fig,
        )?;
    }
    if let Some(n) = constant_keys_note(&cells) {
        s.note(n);
    }
    s.note(
        "The paper's own numbers are not shown beside ours: its per-strategy table could not be \
         sourced verbatim for this build, and the report shows no number it cannot cite exactly. \
         See Dong et al. (ACL 2024), section on RQ4, for the LLaMA results.",
    );
    if let Some(n) = ctx.not_done(&["rq4"]) {
        s.note(n);
    }
    s.table(score_table(&cells, strategy_name, base_rows(ctx, &cells)));
    Ok(s)
}

/// The DMT k sweep.
pub fn dmt_k(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "DMT: the specialized-data fraction k";
    let mut cells = ctx.group("dmt_k");
    if cells.is_empty() {
        return Ok(Section::skipped(
            "dmt-k",
            title,
            "no finished cells in group dmt_k",
        ));
    }
    cells.sort_by(|a, b| {
        a.k.unwrap_or(f64::INFINITY)
            .total_cmp(&b.k.unwrap_or(f64::INFINITY))
    });
    let mut s = Section::new("dmt-k", title);
    s.text(
        "Stage 2 of DMT replays a fraction k of the specialized data alongside the general data.",
    );
    let label = |c: &Cell| match c.k {
        Some(k) => format!("k={}", format::fraction(k)),
        None => c.recipe.clone(),
    };
    if let Some(fig) = bars(ctx, "Scores by DMT k", &cells, &label, false) {
        figs.add(&mut s, "dmt-k", "DMT: scores by k", &fig)?;
    }
    if let Some(n) = constant_keys_note(&cells) {
        s.note(n);
    }
    if let Some(n) = ctx.not_done(&["dmt_k"]) {
        s.note(n);
    }
    s.table(score_table(&cells, label, vec![]));
    Ok(s)
}

/// The ShareGPT ablation (code/math-flavoured conversations removed).
pub fn ablation(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "Ablation: general data without code/math conversations";
    let cells = ctx.group("ablation");
    if cells.is_empty() {
        return Ok(Section::skipped(
            "ablation",
            title,
            "no finished cells in group ablation",
        ));
    }
    let mut s = Section::new("ablation", title);
    let label = |c: &Cell| c.recipe.clone();
    if let Some(fig) = bars(ctx, "Scores by ablation variant", &cells, &label, false) {
        figs.add(&mut s, "ablation", "Ablation: scores by variant", &fig)?;
    }
    if let Some(n) = constant_keys_note(&cells) {
        s.note(n);
    }
    if let Some(n) = ctx.not_done(&["ablation"]) {
        s.note(n);
    }
    let describe = |c: &Cell| match &c.ablation {
        Some(serde_json::Value::String(a)) => a.clone(),
        Some(serde_json::Value::Object(m)) if !m.is_empty() => m
            .iter()
            .map(|(src, cats)| match cats.as_array() {
                Some(list) => format!(
                    "{src} without {}",
                    list.iter()
                        .map(|c| c
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| c.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("{src}: {cats}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        Some(v) if !v.is_null() => v.to_string(),
        _ => "no ablation".into(),
    };
    s.table(score_table(&cells, describe, vec![]));
    Ok(s)
}

/// Forgetting matrices: stage × ability heatmaps, one panel per cell, one figure per metric.
pub fn forgetting(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "Forgetting: scores after every stage";
    let cells: Vec<&Cell> = ctx
        .results
        .cells
        .iter()
        .filter(|c| c.done() && c.forgetting.as_ref().is_some_and(|f| !f.stages.is_empty()))
        .collect();
    if cells.is_empty() {
        return Ok(Section::skipped(
            "forgetting",
            title,
            "no finished cell has a forgetting matrix",
        ));
    }
    let mut s = Section::new("forgetting", title);
    s.text(
        "Rows are the checkpoints after each training stage (top to bottom), columns the abilities. \
         Colour is scaled per panel; the number in each cell is the measurement.",
    );
    let metrics: BTreeSet<&String> = cells
        .iter()
        .filter_map(|c| c.forgetting.as_ref())
        .flat_map(|f| f.metrics.keys())
        .collect();
    for (mi, metric) in metrics.into_iter().enumerate() {
        let panels: Vec<Heatmap> = cells
            .iter()
            .filter_map(|c| {
                let f = c.forgetting.as_ref()?;
                let m = f.metrics.get(metric)?;
                Some(Heatmap {
                    title: c.id.clone(),
                    rows: f.stages.clone(),
                    columns: f.abilities.clone(),
                    values: m.clone(),
                    note: if lower_is_better(metric) {
                        format!("{metric}: lower is better")
                    } else {
                        format!("{metric}: higher is better")
                    },
                })
            })
            .collect();
        let fig = HeatmapFigure {
            title: format!("Forgetting matrix: {metric}"),
            columns: panels.len().min(3),
            panels,
        };
        figs.add(
            &mut s,
            &format!("forgetting-{mi}"),
            &format!("Stage × ability matrix of {metric}, one panel per cell"),
            &fig,
        )?;
    }
    Ok(s)
}

/// The probe's row label for a model: the cell it came from, else its own name.
fn probe_label(ctx: &Ctx, name: &str) -> String {
    ctx.results
        .probe
        .as_ref()
        .and_then(|p| {
            p.models
                .iter()
                .find(|(_, m)| m.as_str() == name)
                .map(|(cell, _)| cell.clone())
        })
        .unwrap_or_else(|| name.to_string())
}

/// t-SNE grids, interference metrics and CKA drift.
pub fn probe(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "Representations: t-SNE maps, interference metrics, CKA drift";
    let probe = match ctx.probe {
        Ok(p) => p,
        Err(why) => return Ok(Section::skipped("probe", title, why.clone())),
    };
    let mut s = Section::new("probe", title);
    s.text(
        "Each map projects one model's pooled hidden states of the probe examples at one layer to \
         2-D. t-SNE preserves neighbourhoods, not distances or cluster sizes: read the maps \
         together with the metrics under them (silhouette by source, kNN overlap between sources, \
         CKA to the first model), which are computed in the full hidden space.",
    );
    let mut sources: Vec<String> = probe
        .index
        .examples
        .iter()
        .map(|e| e.source.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for p in probe.projections.values() {
        for pt in &p.points {
            if !sources.contains(&pt.source) {
                sources.push(pt.source.clone());
            }
        }
    }
    sources.sort_by_key(|s| {
        (
            ABILITIES.iter().position(|a| a == s).unwrap_or(9),
            s.clone(),
        )
    });
    let legend: Vec<LegendEntry> = sources
        .iter()
        .map(|src| LegendEntry {
            label: src.clone(),
            color: source_color(src, &sources),
            mark: Mark::Square,
        })
        .collect();
    let metrics = probe.metrics.as_ref();
    let layer_metrics = |model: &str, layer: usize| {
        metrics.and_then(|m| m.models.get(model)?.get(&layer.to_string()))
    };
    let layers: Vec<usize> = probe
        .index
        .models
        .iter()
        .flat_map(|m| m.layers.iter().copied())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut panels = Vec::new();
    let mut method = BTreeSet::new();
    for m in &probe.index.models {
        for &layer in &layers {
            let proj = probe.projections.get(&(m.name.clone(), layer));
            if let Some(p) = proj {
                method.insert(p.method.clone());
            }
            let points = proj
                .map(|p| {
                    p.points
                        .iter()
                        .map(|pt| {
                            (
                                pt.x,
                                pt.y,
                                sources.iter().position(|s| s == &pt.source).unwrap_or(0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut caption = Vec::new();
            match layer_metrics(&m.name, layer) {
                Some(lm) => {
                    let opt = |v: Option<f64>| v.map(format::num).unwrap_or_else(|| "n/a".into());
                    caption.push(format!(
                        "silhouette {}  ·  CKA {}",
                        opt(lm.silhouette),
                        opt(lm.cka_to_first_model)
                    ));
                    let pairs: Vec<String> = lm
                        .knn_overlap
                        .iter()
                        .map(|(k, v)| format!("{k} {}", opt(*v)))
                        .collect();
                    for chunk in pairs.chunks(2) {
                        caption.push(format!("kNN {}", chunk.join(" · ")));
                    }
                }
                None => caption.push("no metrics for this layer".into()),
            }
            panels.push(ScatterPanel {
                title: format!("{} · layer {layer}", probe_label(ctx, &m.name)),
                points,
                caption,
            });
        }
    }
    if probe.projections.is_empty() {
        s.note(format!(
            "The probe dir {} has no projections (run `mixprobe project`).",
            probe.dir.display()
        ));
    } else if !panels.is_empty() {
        let method = method
            .into_iter()
            .map(|m| {
                if m == "tsne" {
                    "t-SNE".to_string()
                } else {
                    m.to_uppercase()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let fig = ScatterFigure {
            title: format!("{method} maps: models (rows) × layers (columns), coloured by source"),
            legend,
            columns: layers.len().max(1),
            panels,
        };
        figs.add(
            &mut s,
            "tsne-grid",
            &format!("{method} of pooled hidden states, models × layers"),
            &fig,
        )?;
    }
    let Some(metrics) = metrics else {
        s.note("The probe has no metrics.json (run `mixprobe metrics`): no interference metrics or CKA drift.");
        return Ok(s);
    };
    let names: Vec<&String> = probe.index.models.iter().map(|m| &m.name).collect();
    let cka: Vec<Vec<Option<f64>>> = names
        .iter()
        .map(|n| {
            layers
                .iter()
                .map(|l| layer_metrics(n, *l).and_then(|lm| lm.cka_to_first_model))
                .collect()
        })
        .collect();
    if cka.iter().flatten().any(|v| v.is_some()) {
        let fig = HeatmapFigure {
            title: "CKA drift from the first model".into(),
            columns: 1,
            panels: vec![Heatmap {
                title: "linear CKA to the first model (1 = same representation)".into(),
                rows: names.iter().map(|n| probe_label(ctx, n)).collect(),
                columns: layers.iter().map(|l| format!("layer {l}")).collect(),
                values: cka,
                note: "rows: models; columns: layers".into(),
            }],
        };
        figs.add(
            &mut s,
            "cka-drift",
            "Linear CKA of each model's layer to the first model's",
            &fig,
        )?;
    } else {
        s.note("metrics.json has no cka_to_first_model values: no CKA drift heatmap.");
    }
    let mut header: Vec<String> = [
        "model",
        "layer",
        "silhouette",
        "Davies–Bouldin",
        "ARI",
        "trustworthiness",
        "CKA",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pairs: Vec<String> = metrics
        .models
        .values()
        .flat_map(|l| l.values().flat_map(|m| m.knn_overlap.keys().cloned()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    header.extend(pairs.iter().map(|p| format!("kNN {p}")));
    let opt = |v: Option<f64>| v.map(format::num).unwrap_or_else(|| "–".into());
    let mut rows = Vec::new();
    for n in &names {
        for l in &layers {
            if let Some(m) = layer_metrics(n, *l) {
                let mut r = vec![
                    probe_label(ctx, n),
                    l.to_string(),
                    opt(m.silhouette),
                    opt(m.davies_bouldin),
                    opt(m.ari),
                    opt(m.trustworthiness),
                    opt(m.cka_to_first_model),
                ];
                r.extend(
                    pairs
                        .iter()
                        .map(|p| opt(m.knn_overlap.get(p).copied().flatten())),
                );
                rows.push(r);
            }
        }
    }
    s.table(Table { header, rows });
    if let Some(k) = metrics.k {
        s.text(format!("kNN overlap uses k = {k} neighbours."));
    }
    Ok(s)
}

/// Training-loss curves per cell from each run's metrics.jsonl, one figure per group.
pub fn training(ctx: &Ctx, figs: &mut Figures) -> Result<Section> {
    let title = "Training loss per source";
    let mut s = Section::new("training", title);
    s.text("Mean loss per target token of each source in each logged optimizer step; vertical lines mark stage starts.");
    // group → (cell id, source → (step, loss) points, stage starts)
    type Curves = (
        String,
        BTreeMap<String, Vec<(f64, f64)>>,
        Vec<(f64, String)>,
    );
    let mut by_group: BTreeMap<String, Vec<Curves>> = BTreeMap::new();
    let mut sources: Vec<String> = Vec::new();
    let mut absent = Vec::new();
    let mut malformed = Vec::new();
    for c in ctx.results.cells.iter().filter(|c| c.done()) {
        let Some(run) = &c.run_dir else {
            absent.push(format!("{} (no run_dir)", c.id));
            continue;
        };
        let path = ctx.dir.join(run).join("metrics.jsonl");
        if !path.is_file() {
            absent.push(format!("{} (no {})", c.id, path.display()));
            continue;
        }
        let log = read_train_log(&path)?;
        if log.malformed > 0 {
            malformed.push(format!(
                "{}: {} malformed line(s), first at line {}",
                path.display(),
                log.malformed,
                log.first_malformed.unwrap_or(0)
            ));
        }
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut stages = Vec::new();
        let mut last_stage = None;
        for st in &log.steps {
            if last_stage.is_some() && last_stage != Some(st.stage) {
                stages.push((st.step as f64, st.stage_name.clone()));
            }
            last_stage = Some(st.stage);
            for (src, v) in &st.loss_by_source {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    series
                        .entry(src.clone())
                        .or_default()
                        .push((st.step as f64, v));
                }
            }
        }
        if series.is_empty() {
            absent.push(format!("{} (log has no per-source loss)", c.id));
            continue;
        }
        for src in series.keys() {
            if !sources.contains(src) {
                sources.push(src.clone());
            }
        }
        let group = c.group.clone().unwrap_or_else(|| "other".into());
        by_group
            .entry(group)
            .or_default()
            .push((c.id.clone(), series, stages));
    }
    sources.sort_by_key(|s| {
        (
            ABILITIES.iter().position(|a| a == s).unwrap_or(9),
            s.clone(),
        )
    });
    let legend: Vec<LegendEntry> = sources
        .iter()
        .map(|src| LegendEntry {
            label: src.clone(),
            color: source_color(src, &sources),
            mark: Mark::Line,
        })
        .collect();
    if by_group.is_empty() {
        s.skipped = Some(if absent.is_empty() {
            "no finished cells".into()
        } else {
            format!("no finished cell has a training log: {}", absent.join(", "))
        });
        return Ok(s);
    }
    for (group, curves) in by_group {
        let panels: Vec<LossPanel> = curves
            .into_iter()
            .map(|(title, series, stages)| LossPanel {
                title,
                series: series
                    .into_iter()
                    .map(|(src, pts)| (sources.iter().position(|s| *s == src).unwrap_or(0), pts))
                    .collect(),
                stages,
            })
            .collect();
        let fig = LossFigure {
            title: format!("Training loss: {group}"),
            legend: legend.clone(),
            columns: panels.len().min(3),
            panels,
        };
        figs.add(
            &mut s,
            &format!("loss-{}", slug(&group)),
            &format!("Training loss per source, cells of {group}"),
            &fig,
        )?;
    }
    if !absent.is_empty() {
        s.note(format!("No training log for: {}.", absent.join(", ")));
    }
    if !malformed.is_empty() {
        s.note(format!(
            "Skipped unreadable log lines (e.g. a run killed mid-write): {}.",
            malformed.join("; ")
        ));
    }
    Ok(s)
}

/// A file-name-safe version of `s`.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Run metadata: versions, device, seeds, data hashes, per-cell status and cost.
pub fn metadata(ctx: &Ctx) -> Section {
    let r = ctx.results;
    let mut s = Section::new("metadata", "Run metadata (for reproduction)");
    let mut rows: Vec<Vec<String>> = vec![vec!["experiment".into(), r.experiment.name.clone()]];
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            rows.push(vec![k.into(), v]);
        }
    };
    add("experiment file", r.experiment.file.clone());
    add("experiment sha256", r.experiment.sha256.clone());
    match &r.meta {
        Some(m) => {
            add("mixprobe version", m.mixprobe_version.clone());
            add("git revision", m.git_rev.clone());
            add("started", m.started.clone());
            add("wall time", m.wall_s.map(format::duration));
            add("device", m.device.clone());
            add("threads", m.threads.map(|t| t.to_string()));
            add(
                "seeds",
                (!m.seeds.is_empty()).then(|| {
                    m.seeds
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
            );
            add("data dir", m.data.as_ref().and_then(|d| d.dir.clone()));
        }
        None => {
            s.note("results.json has no `meta` block: versions, seeds and data hashes are unknown.")
        }
    }
    s.table(Table {
        header: vec!["field".into(), "value".into()],
        rows,
    });
    if let Some(files) = r
        .meta
        .as_ref()
        .and_then(|m| m.data.as_ref())
        .map(|d| &d.files)
        && !files.is_empty()
    {
        s.table(Table {
            header: vec!["data file".into(), "sha256".into()],
            rows: files
                .iter()
                .map(|(f, h)| vec![f.clone(), h.clone()])
                .collect(),
        });
    }
    let rows = r
        .cells
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.group.clone().unwrap_or_default(),
                c.strategy.clone().unwrap_or_default(),
                c.status.clone(),
                c.wall_s.map(format::duration).unwrap_or_default(),
                c.train_tokens.map(|t| t.to_string()).unwrap_or_default(),
                c.final_loss.map(format::num).unwrap_or_default(),
                c.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    s.table(Table {
        header: [
            "cell",
            "group",
            "strategy",
            "status",
            "wall time",
            "train tokens",
            "final loss",
            "error",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect(),
        rows,
    });
    s
}
