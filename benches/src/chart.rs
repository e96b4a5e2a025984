//! The swarm lab's picture: for each run, how many hosts had the whole file at each moment
//! (a step line per scenario), as a PNG. Text is drawn with a TrueType font found on the
//! system (DejaVu Sans, Debian's `fonts-dejavu-core`).

use std::io;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::swarm::RunResult;

const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn load_font() -> io::Result<()> {
    let bytes = FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| {
            io::Error::other("no DejaVu Sans font found (apt-get install fonts-dejavu-core)")
        })?;
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| io::Error::other("the font could not be loaded"))
}

/// Draws completion over time for `runs` into `path` (PNG), titled `title`.
pub fn completion_chart(path: &Path, title: &str, runs: &[RunResult]) -> io::Result<()> {
    load_font()?;
    let err = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let hosts = runs.iter().map(|r| r.hosts.len()).max().unwrap_or(1);
    let end = runs
        .iter()
        .map(|r| r.makespan())
        .filter(|t| t.is_finite())
        .fold(1.0f64, f64::max)
        * 1.05;
    let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..hosts as f64 + 0.5)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc("hosts with the whole file")
        .y_labels(hosts + 1)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, r) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts = vec![(0.0, 0.0)];
        for (k, t) in r.times().iter().enumerate() {
            pts.push((*t, k as f64));
            pts.push((*t, k as f64 + 1.0));
        }
        pts.push((end, pts.last().map_or(0.0, |p| p.1)));
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(3)))
            .map_err(|e| err(&e))?
            .label(r.scenario.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
