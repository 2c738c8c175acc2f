//! Tokens of CESQL. Keywords and identifiers are case-insensitive.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Integer(i64),
    String(String),
    /// A name: keyword, identifier or function name, as written.
    Word(String),
    LParen,
    RParen,
    Comma,
    Star,
    Slash,
    Percent,
    Plus,
    Minus,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// Each token with its byte position.
pub fn tokens(text: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let error = |position: usize, message: String| ParseError { position, message };
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let token = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => Token::LParen,
            b')' => Token::RParen,
            b',' => Token::Comma,
            b'*' => Token::Star,
            b'/' => Token::Slash,
            b'%' => Token::Percent,
            b'+' => Token::Plus,
            b'-' => Token::Minus,
            b'=' => Token::Eq,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::NotEq
            }
            b'<' if bytes.get(i + 1) == Some(&b'>') => {
                i += 1;
                Token::NotEq
            }
            b'<' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::LtEq
            }
            b'<' => Token::Lt,
            b'>' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                Token::GtEq
            }
            b'>' => Token::Gt,
            b'\'' | b'"' => {
                let (value, end) = string(text, i)
                    .ok_or_else(|| error(start, "unterminated string literal".into()))?;
                i = end;
                out.push((start, Token::String(value)));
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                let token = if word.bytes().all(|b| b.is_ascii_digit()) {
                    Token::Integer(
                        word.parse()
                            .map_err(|_| error(start, format!("integer {word} is too large")))?,
                    )
                } else {
                    Token::Word(word.to_owned())
                };
                out.push((start, token));
                continue;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(error(start, format!("unexpected character '{ch}'")));
            }
        };
        out.push((start, token));
        i += 1;
    }
    Ok(out)
}

/// A quoted string starting at `start`; returns its value and the index
/// after the closing quote. `\'`, `\"` and a doubled quote stand for the
/// quote; any other backslash is kept, so LIKE patterns keep `\%` and `\_`.
fn string(text: &str, start: usize) -> Option<(String, usize)> {
    let quote = text.as_bytes()[start] as char;
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, q)) if q == '\'' || q == '"' => value.push(q),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            },
            c if c == quote => {
                if chars.peek().map(|(_, n)| *n) == Some(quote) {
                    chars.next();
                    value.push(quote);
                } else {
                    return Some((value, start + 1 + offset + 1));
                }
            }
            c => value.push(c),
        }
    }
    None
}
