//! `ferry bench suite --compare OTHER`: the same scenarios run alternately
//! with this build's data plane and another's (`scripts/bench --compare
//! REV` builds it), each round in the opposite order (ABBA), and every
//! figure shown beside its ratio. A change is so seen against the noise of
//! the same run: a baseline row (the raw producer, the no-op server) is
//! measured by both sides, and its ratio is that noise.

use std::path::PathBuf;

use crate::suite::{self, Options};

/// One build's data plane.
pub struct Side {
    pub label: String,
    pub ferry: PathBuf,
}

/// Runs `rounds` rounds of the suite for each side and merges their tables.
pub async fn run(
    options: Options,
    this: Side,
    other: Side,
    rounds: usize,
) -> anyhow::Result<String> {
    let sides = [&this, &other];
    let mut outputs: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let Side { label, ferry } = sides[side];
            eprintln!("bench: round {} of {rounds}: {label}", round + 1);
            let options = Options {
                ferry: ferry.clone(),
                work_dir: options.work_dir.join(format!("round{}-{side}", round + 1)),
                ..options.clone()
            };
            outputs[side].push(suite::run(options).await?);
        }
    }
    Ok(merge(&outputs, [&this.label, &other.label]))
}

/// A table of the suite's output under its `### ` title.
#[derive(Debug, Default)]
struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

fn tables(output: &str) -> Vec<Table> {
    let mut tables: Vec<Table> = Vec::new();
    for line in output.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            tables.push(Table {
                title: title.to_owned(),
                ..Default::default()
            });
        } else if let (Some(table), true) = (tables.last_mut(), line.starts_with('|')) {
            if table.header.is_empty() {
                table.header = cells(line);
            } else if !line.starts_with("|---") {
                table.rows.push(cells(line));
            }
        }
    }
    tables
}

/// The median of a cell over the rounds, written as the first round wrote
/// it (its decimals); the first round's text when it is not a number.
fn median(values: &[&str]) -> (String, Option<f64>) {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse().ok()).collect();
    match numbers {
        Some(mut numbers) if !numbers.is_empty() => {
            numbers.sort_by(f64::total_cmp);
            let middle = numbers.len() / 2;
            let m = if numbers.len() % 2 == 0 {
                (numbers[middle - 1] + numbers[middle]) / 2.0
            } else {
                numbers[middle]
            };
            let decimals = values[0].split_once('.').map_or(0, |(_, d)| d.len());
            (format!("{m:.decimals$}"), Some(m))
        }
        _ => (values.first().copied().unwrap_or_default().to_owned(), None),
    }
}

/// Each table with three rows per row of the suite: this side's medians,
/// the other's, and their ratio.
fn merge(outputs: &[Vec<String>; 2], labels: [&str; 2]) -> String {
    let parsed: [Vec<Vec<Table>>; 2] =
        [0, 1].map(|side| outputs[side].iter().map(|o| tables(o)).collect());
    let Some(shape) = parsed[0].first() else {
        return String::new();
    };
    let mut out = format!(
        "Medians of {} round(s) each, run alternately; `{}/{}` is the ratio.\n",
        outputs[0].len(),
        labels[0],
        labels[1]
    );
    for (t, table) in shape.iter().enumerate() {
        out.push_str(&format!(
            "\n### {}\n\n| {} |\n|{}\n",
            table.title,
            table.header.join(" | "),
            "---|".repeat(table.header.len())
        ));
        for (r, row) in table.rows.iter().enumerate() {
            let medians: [Vec<(String, Option<f64>)>; 2] = [0, 1].map(|side| {
                (0..row.len())
                    .map(|c| {
                        let values: Vec<&str> = parsed[side]
                            .iter()
                            .filter_map(|round| round.get(t)?.rows.get(r)?.get(c))
                            .map(String::as_str)
                            .collect();
                        median(&values)
                    })
                    .collect()
            });
            for side in 0..2 {
                let mut line: Vec<String> =
                    medians[side].iter().map(|(text, _)| text.clone()).collect();
                line[0] = format!("{} · {}", row[0], labels[side]);
                out.push_str(&format!("| {} |\n", line.join(" | ")));
            }
            let mut ratio: Vec<String> = (medians[0].iter().zip(&medians[1]))
                .map(|(a, b)| match (a.1, b.1) {
                    (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                    _ => String::new(),
                })
                .collect();
            ratio[0] = format!("{} · {}/{}", row[0], labels[0], labels[1]);
            out.push_str(&format!("| {} |\n", ratio.join(" | ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(events: &str, p99: &str) -> String {
        format!(
            "\n### 1. Ingress\n\n| target | events/s | p99 ms |\n|---|---|---|\n| raw producer | 100 | 2.0 |\n| ferry | {events} | {p99} |\n"
        )
    }

    #[test]
    fn rows_are_medians_beside_their_ratio() {
        let this = vec![
            output("90", "3.0"),
            output("80", "5.0"),
            output("85", "4.0"),
        ];
        let other = vec![
            output("100", "2.00"),
            output("50", "2.00"),
            output("60", "2.00"),
        ];
        let merged = merge(&[this, other], ["HEAD", "abc123"]);
        assert!(merged.contains("| ferry · HEAD | 85 | 4.0 |"), "{merged}");
        assert!(
            merged.contains("| ferry · abc123 | 60 | 2.00 |"),
            "{merged}"
        );
        assert!(
            merged.contains("| ferry · HEAD/abc123 | 1.42 | 2.00 |"),
            "{merged}"
        );
        assert!(
            merged.contains("| raw producer · HEAD/abc123 | 1.00 | 1.00 |"),
            "{merged}"
        );
        assert!(merged.contains("### 1. Ingress"));
    }

    #[test]
    fn words_are_kept_and_not_divided() {
        assert_eq!(median(&["n/a", "x"]), ("n/a".to_owned(), None));
        assert_eq!(median(&["1.50", "2.50"]), ("2.00".to_owned(), Some(2.0)));
    }
}
