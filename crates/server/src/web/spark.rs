//! The overview's sparklines: a day of quarter-hour counts drawn as inline SVG against the
//! band the monitor's baseline expects. A pure function of numbers, so a table of counts has
//! no JavaScript to wait for and every row is readable the moment the page arrives (the
//! tenant page draws the same series larger, with uPlot).

use std::fmt::Write;

use crate::api::flows::ExpectedQuarter;

/// Width and height of a sparkline, in CSS pixels.
pub(crate) const WIDTH: f64 = 192.0;
pub(crate) const HEIGHT: f64 = 30.0;

/// The SVG of `counts` (oldest first) against `expected` (one entry per count, `None` where
/// the hour has no baseline). Quarters below their band's lower edge are marked with a dot,
/// so a drop shows in shape as well as in position. `label` is the text a screen reader
/// reads.
pub(crate) fn sparkline(
    counts: &[i64],
    expected: &[Option<ExpectedQuarter>],
    label: &str,
) -> String {
    let n = counts.len().max(2);
    let top = counts
        .iter()
        .map(|c| *c as f64)
        .chain(expected.iter().flatten().map(|e| e.high))
        .fold(1.0_f64, f64::max);
    let x = |i: usize| i as f64 * WIDTH / (n - 1) as f64;
    let y = |v: f64| HEIGHT - 1.0 - (v / top) * (HEIGHT - 2.0);
    let mut svg = format!(
        "<svg class=\"spark\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    for run in runs(expected) {
        let upper: Vec<String> = run.iter().map(|(i, e)| pt(x(*i), y(e.high))).collect();
        let lower: Vec<String> = run.iter().rev().map(|(i, e)| pt(x(*i), y(e.low))).collect();
        let _ = write!(
            svg,
            "<polygon class=\"band\" points=\"{} {}\"/>",
            upper.join(" "),
            lower.join(" ")
        );
        let mid: Vec<String> = run.iter().map(|(i, e)| pt(x(*i), y(e.expected))).collect();
        let _ = write!(
            svg,
            "<polyline class=\"exp\" points=\"{}\"/>",
            mid.join(" ")
        );
    }
    let line: Vec<String> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| pt(x(i), y(*c as f64)))
        .collect();
    let _ = write!(
        svg,
        "<polyline class=\"count\" points=\"{}\"/>",
        line.join(" ")
    );
    for (i, c) in counts.iter().enumerate() {
        if let Some(Some(e)) = expected.get(i) {
            if (*c as f64) < e.low {
                let _ = write!(
                    svg,
                    "<circle class=\"low\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\"/>",
                    x(i),
                    y(*c as f64)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn pt(x: f64, y: f64) -> String {
    format!("{x:.1},{y:.1}")
}

/// The runs of consecutive quarters that have an expectation, with their indexes.
fn runs(expected: &[Option<ExpectedQuarter>]) -> Vec<Vec<(usize, ExpectedQuarter)>> {
    let mut out: Vec<Vec<(usize, ExpectedQuarter)>> = Vec::new();
    let mut current: Vec<(usize, ExpectedQuarter)> = Vec::new();
    for (i, e) in expected.iter().enumerate() {
        match e {
            Some(e) => current.push((i, *e)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(expected: f64) -> Option<ExpectedQuarter> {
        Some(ExpectedQuarter {
            expected,
            low: expected / 2.0,
            high: expected * 1.5,
        })
    }

    #[test]
    fn counts_are_drawn_against_their_band() {
        let counts = [10, 10, 0, 0];
        let expected = [None, e(10.0), e(10.0), e(10.0)];
        let svg = sparkline(&counts, &expected, "maelys email <24h>");
        // One band (one run of expectations), one expected line, one count line.
        assert_eq!(svg.matches("<polygon class=\"band\"").count(), 1);
        assert_eq!(svg.matches("<polyline class=\"exp\"").count(), 1);
        assert_eq!(svg.matches("<polyline class=\"count\"").count(), 1);
        // The two zeros fall below the band's lower edge (5): marked.
        assert_eq!(svg.matches("<circle class=\"low\"").count(), 2);
        // The scale's top is the band's highest edge (15): a count of 10 is at 2/3.
        assert!(svg.contains("0.0,10.3"), "{svg}");
        assert!(svg.contains("aria-label=\"maelys email &lt;24h&gt;\""));
    }

    #[test]
    fn a_flow_without_a_baseline_has_no_band() {
        let svg = sparkline(&[0, 3, 1], &[None, None, None], "x");
        assert!(!svg.contains("band"));
        assert!(!svg.contains("circle"));
        let gaps = runs(&[e(1.0), None, e(1.0), e(2.0)]);
        assert_eq!(gaps.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 2]);
    }
}
