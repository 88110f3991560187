//! `log plot`: a run as an SVG picture, for tuning by eye.
//!
//! Time since the start (seconds) across, position in the file (MiB) up.
//! One filled mark per demand request (a device's waiting read), one small
//! hollow mark per first read served at once (device logs), the host's
//! planned pages as small crosses and the background stream's progress as
//! a line (host records), one colour per file, named in the legend. The
//! eight files with the most events get their own colour; the rest share
//! grey. Lines are thinned to at most [`MAX_LINE_POINTS`] points per file.

use std::path::Path;

use plotters::prelude::*;

use crate::logs::trace::{Run, SentKind};

/// Most points drawn of one file's stream line.
pub const MAX_LINE_POINTS: usize = 2000;
/// Files with a colour of their own.
const COLOURED: usize = 8;

const PALETTE: [RGBColor; COLOURED] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(150, 150, 150);

const MIB: f64 = (1u64 << 20) as f64;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {reason}")]
pub struct PlotError {
    path: String,
    reason: String,
}

/// Draw `run` as an SVG file at `out`.
pub fn plot(run: &Run, out: &Path) -> Result<(), PlotError> {
    draw(run, out).map_err(|reason| PlotError {
        path: out.display().to_string(),
        reason,
    })
}

fn secs(t_us: u64) -> f64 {
    t_us as f64 / 1e6
}

fn draw(run: &Run, out: &Path) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let nfiles = run.files.len();
    // Rank files by how much they show, to give the busiest their own colour.
    let mut weight = vec![0usize; nfiles];
    for d in &run.demands {
        weight[d.file] += 1;
    }
    for t in &run.touches {
        weight[t.file] += 1;
    }
    for s in &run.sent {
        if s.kind != SentKind::Stream {
            weight[s.file] += 1;
        }
    }
    let mut streamed = vec![false; nfiles];
    for s in run.sent.iter().filter(|s| s.kind == SentKind::Stream) {
        streamed[s.file] = true;
    }
    let shown: Vec<usize> = (0..nfiles)
        .filter(|&i| weight[i] > 0 || streamed[i])
        .collect();
    let mut ranked = shown.clone();
    ranked.sort_by_key(|&i| std::cmp::Reverse(weight[i]));
    let mut colour: Vec<Option<RGBColor>> = vec![None; nfiles];
    for (k, &i) in ranked.iter().take(COLOURED).enumerate() {
        colour[i] = Some(PALETTE[k]);
    }
    let x_max = (secs(run.end_us()) * 1.04).max(0.001);
    let y_max =
        (shown.iter().map(|&i| run.files[i].size).max().unwrap_or(1) as f64 / MIB * 1.04).max(0.01);

    let root = SVGBackend::new(out, (1280, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "feedfs {} log: {} demand requests over {:.2} s",
        match run.side {
            crate::logs::trace::Side::Host => "host",
            crate::logs::trace::Side::Device => "device",
        },
        run.demands.len(),
        secs(run.end_us())
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(&title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(match run.side {
            crate::logs::trace::Side::Host => "time since the push started (s)",
            crate::logs::trace::Side::Device => "time since the mount (s)",
        })
        .y_desc("position in file (MiB)")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(&x))?;

    let pos = |file: usize, page: u64| {
        (page << feedfs_protocol::PAGE_SHIFT).min(run.files[file].size) as f64 / MIB
    };
    let name = |i: usize| {
        let p = &run.files[i].path;
        if p.chars().count() > 40 {
            format!(
                "…{}",
                p.chars()
                    .rev()
                    .take(39)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            )
        } else {
            p.clone()
        }
    };
    let grey_files = shown.iter().filter(|&&i| colour[i].is_none()).count();
    let mut groups: Vec<(Vec<usize>, RGBColor, String)> = ranked
        .iter()
        .take(COLOURED)
        .map(|&i| (vec![i], colour[i].unwrap_or(GREY), name(i)))
        .collect();
    if grey_files > 0 {
        let rest: Vec<usize> = shown
            .iter()
            .copied()
            .filter(|&i| colour[i].is_none())
            .collect();
        groups.push((rest, GREY, format!("{grey_files} other files")));
    }

    for (files, c, label) in &groups {
        let c = *c;
        // The stream's progress: a line per file, thinned; one legend entry.
        let mut labelled = false;
        for &i in files {
            let pts: Vec<(f64, f64)> = run
                .sent
                .iter()
                .filter(|s| s.file == i && s.kind == SentKind::Stream)
                .map(|s| (secs(s.t_us), pos(i, s.end())))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let step = pts.len().div_ceil(MAX_LINE_POINTS).max(1);
            let thin: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .step_by(step)
                .chain(pts.last().copied())
                .collect();
            let series = chart
                .draw_series(LineSeries::new(thin, c.mix(0.55).stroke_width(2)))
                .map_err(|x| e(&x))?;
            if !labelled {
                labelled = true;
                series
                    .label(format!("{label}: stream"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.mix(0.55).stroke_width(2))
                    });
            }
        }
        let planned: Vec<(f64, f64)> = run
            .sent
            .iter()
            .filter(|s| files.contains(&s.file) && s.kind == SentKind::Plan)
            .map(|s| (secs(s.t_us), pos(s.file, s.first)))
            .collect();
        if !planned.is_empty() {
            chart
                .draw_series(
                    planned
                        .iter()
                        .map(|&p| Cross::new(p, 3, c.mix(0.7).stroke_width(1))),
                )
                .map_err(|x| e(&x))?
                .label(format!("{label}: planned pages sent"))
                .legend(move |(x, y)| Cross::new((x + 10, y), 4, c.stroke_width(1)));
        }
        let touched: Vec<(f64, f64)> = run
            .touches
            .iter()
            .filter(|t| files.contains(&t.file))
            .map(|t| (secs(t.t_us), pos(t.file, t.first)))
            .collect();
        if !touched.is_empty() {
            chart
                .draw_series(
                    touched
                        .iter()
                        .map(|&p| Circle::new(p, 3, c.stroke_width(1))),
                )
                .map_err(|x| e(&x))?
                .label(format!("{label}: first reads served at once"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.stroke_width(1)));
        }
        let demands: Vec<(f64, f64)> = run
            .demands
            .iter()
            .filter(|d| files.contains(&d.file))
            .map(|d| (secs(d.t_us), pos(d.file, d.first)))
            .collect();
        if !demands.is_empty() {
            chart
                .draw_series(demands.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(|x| e(&x))?
                .label(format!("{label}: demand requests"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, c.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(120, 120, 120))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
