//! CloudEvents SQL v1: an expression is parsed once ([`Expression::parse`])
//! and evaluated against events without re-parsing.
//!
//! Evaluation never fails: like the specification, it yields a value and,
//! when something went wrong, the first error met; an operator whose operand
//! failed yields its type's zero value. A filter passes only on `true`.
//!
//! `lexer` → `parser` (literals are [`Value`]s, LIKE patterns compiled
//! by `like`) → `eval`. Pure: it depends on `ferry-event` alone.

mod eval;
mod lexer;
mod like;
mod parser;
mod value;

use std::fmt;

pub use parser::Expression;
pub use value::Value;

/// Expressions longer than this are refused, so none can exhaust memory.
pub const MAX_LENGTH: usize = 8192;
/// Nesting deeper than this is refused, so none can exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Why an expression cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CESQL parse error at position {position}: {message}")]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

/// The kinds of evaluation error the specification names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Math,
    Cast,
    MissingAttribute,
    MissingFunction,
    FunctionEvaluation,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Math => "math",
            ErrorKind::Cast => "cast",
            ErrorKind::MissingAttribute => "missingAttribute",
            ErrorKind::MissingFunction => "missingFunction",
            ErrorKind::FunctionEvaluation => "functionEvaluation",
        })
    }
}
