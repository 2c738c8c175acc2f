//! LIKE patterns, compiled once when the expression is parsed.

/// A LIKE pattern: `%` any run, `_` any one character, `\%` and `\_`
/// themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Vec<Part>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Char(char),
    One,
    Any,
}

impl Pattern {
    pub fn new(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '\\' if matches!(chars.peek(), Some('%' | '_')) => {
                    Part::Char(chars.next().expect("peeked"))
                }
                '%' => Part::Any,
                '_' => Part::One,
                c => Part::Char(c),
            });
        }
        Pattern(parts)
    }

    /// Wildcard matching with backtracking to the last `%`: linear in the
    /// common cases, never exponential.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.0.get(p) {
                Some(Part::Char(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
                }
                Some(Part::One) => {
                    t += 1;
                    p += 1;
                }
                Some(Part::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        self.0[p..].iter().all(|part| *part == Part::Any)
    }
}
