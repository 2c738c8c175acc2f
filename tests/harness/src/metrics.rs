//! Reading a component's `/metrics`: series picked by name and a subset of
//! their labels, so tests do not depend on label order.

use crate::http;

/// One scrape of a Prometheus text exposition.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    series: Vec<Series>,
}

#[derive(Debug)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Scrape {
    pub async fn get(admin_url: &str) -> Scrape {
        let answer = http::request(
            &http::client(),
            ::http::Method::GET,
            &format!("{admin_url}/metrics"),
            &[],
            "",
        )
        .await;
        assert_eq!(answer.status, 200, "{admin_url}/metrics: {}", answer.body);
        Scrape::parse(answer.body)
    }

    pub fn parse(text: String) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(parse_line)
            .collect();
        Scrape { text, series }
    }

    /// The sum over every series of `name` that has all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// How many series of `name` have all of `labels`.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }

    /// Whether any series of `name` has a label called `label`.
    pub fn has_label(&self, name: &str, label: &str) -> bool {
        self.series
            .iter()
            .any(|s| s.name == name && s.labels.iter().any(|(k, _)| k == label))
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }
}

/// `name{k="v",...} value`, or `name value`.
fn parse_line(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, labels(rest.strip_suffix('}')?)?),
        None => (head, Vec::new()),
    };
    Some(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_series_by_name_and_label_subset() {
        let scrape = Scrape::parse(
            "# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"uote\"} 3\nx_total{a=\"2\"} 4\ny 1.5\n"
                .into(),
        );
        assert_eq!(scrape.sum("x_total", &[]), 7.0);
        assert_eq!(scrape.sum("x_total", &[("b", "q\"uote")]), 3.0);
        assert_eq!(scrape.count("x_total", &[("a", "3")]), 0);
        assert_eq!(scrape.sum("y", &[]), 1.5);
        assert!(scrape.has_label("x_total", "b"));
    }
}
