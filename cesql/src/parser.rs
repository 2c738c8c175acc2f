//! CESQL's grammar, by precedence (highest first): function calls, NOT and
//! unary minus, LIKE, EXISTS, IN, `* / %`, `+ -`, comparisons, then AND, OR
//! and XOR together, right-associative (as the specification's grammar
//! puts them).

use crate::{
    lexer::{tokens, Token},
    like::Pattern,
    value::Value,
    ParseError, MAX_DEPTH, MAX_LENGTH,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Mul,
    Div,
    Mod,
    Add,
    Sub,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Xor,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Literal(Value),
    /// Lower-cased: attribute names are case-insensitive.
    Attribute(String),
    Exists(String),
    Not(Box<Node>),
    Negate(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    Like {
        value: Box<Node>,
        pattern: Pattern,
        negated: bool,
    },
    In {
        value: Box<Node>,
        set: Vec<Node>,
        negated: bool,
    },
    /// Upper-cased name.
    Call {
        name: String,
        args: Vec<Node>,
    },
}

/// A parsed, checked expression, ready to evaluate any number of times.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    pub(crate) root: Node,
}

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        if text.len() > MAX_LENGTH {
            return Err(ParseError {
                position: MAX_LENGTH,
                message: format!("expressions are limited to {MAX_LENGTH} bytes"),
            });
        }
        let tokens = tokens(text)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            end: text.len(),
        };
        let root = parser.expression(0, 0)?;
        if let Some((position, token)) = parser.tokens.get(parser.at) {
            return Err(ParseError {
                position: *position,
                message: format!("unexpected {token:?} after the expression"),
            });
        }
        Ok(Expression { root })
    }
}

const KEYWORDS: [&str; 9] = [
    "AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE",
];

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

/// Binding powers: (left, right). Right-associative operators bind their
/// right side at their own level.
fn infix(token: &Token, next: Option<&Token>) -> Option<(u8, u8)> {
    Some(match token {
        Token::Word(w) if is(w, "AND") || is(w, "OR") || is(w, "XOR") => (1, 1),
        Token::Eq | Token::NotEq | Token::Lt | Token::LtEq | Token::Gt | Token::GtEq => (2, 3),
        Token::Plus | Token::Minus => (3, 4),
        Token::Star | Token::Slash | Token::Percent => (4, 5),
        Token::Word(w) if is(w, "IN") => (5, 6),
        Token::Word(w) if is(w, "LIKE") => (6, 7),
        Token::Word(w) if is(w, "NOT") => match next {
            Some(Token::Word(n)) if is(n, "IN") => (5, 6),
            Some(Token::Word(n)) if is(n, "LIKE") => (6, 7),
            _ => return None,
        },
        _ => return None,
    })
}

/// Prefix NOT and minus bind tighter than every infix operator.
const PREFIX: u8 = 8;

fn is(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

impl Parser {
    fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        let position = self.tokens.get(self.at).map_or(self.end, |(p, _)| *p);
        Err(ParseError {
            position,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        token
    }

    fn expect(&mut self, wanted: Token, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&wanted) {
            self.at += 1;
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn expression(&mut self, min: u8, depth: usize) -> Result<Node, ParseError> {
        if depth > MAX_DEPTH {
            return self.error(format!(
                "expressions are limited to {MAX_DEPTH} levels of nesting"
            ));
        }
        let mut left = self.prefix(depth)?;
        while let Some(token) = self.peek().cloned() {
            let next = self.tokens.get(self.at + 1).map(|(_, t)| t);
            let Some((lbp, rbp)) = infix(&token, next) else {
                break;
            };
            if lbp < min {
                break;
            }
            self.at += 1;
            left = match token {
                Token::Word(w) if is(&w, "NOT") || is(&w, "LIKE") || is(&w, "IN") => {
                    let negated = is(&w, "NOT");
                    let keyword = if negated {
                        self.next()
                    } else {
                        Some(Token::Word(w))
                    };
                    match keyword {
                        Some(Token::Word(k)) if is(&k, "LIKE") => match self.next() {
                            Some(Token::String(p)) => Node::Like {
                                value: Box::new(left),
                                pattern: Pattern::new(&p),
                                negated,
                            },
                            _ => {
                                self.at -= 1;
                                return self.error("LIKE takes a string literal pattern");
                            }
                        },
                        _ => {
                            let set = self.list(depth, false)?;
                            Node::In {
                                value: Box::new(left),
                                set,
                                negated,
                            }
                        }
                    }
                }
                token => {
                    let op = match token {
                        Token::Star => BinaryOp::Mul,
                        Token::Slash => BinaryOp::Div,
                        Token::Percent => BinaryOp::Mod,
                        Token::Plus => BinaryOp::Add,
                        Token::Minus => BinaryOp::Sub,
                        Token::Eq => BinaryOp::Eq,
                        Token::NotEq => BinaryOp::NotEq,
                        Token::Lt => BinaryOp::Lt,
                        Token::LtEq => BinaryOp::LtEq,
                        Token::Gt => BinaryOp::Gt,
                        Token::GtEq => BinaryOp::GtEq,
                        Token::Word(w) if is(&w, "AND") => BinaryOp::And,
                        Token::Word(w) if is(&w, "OR") => BinaryOp::Or,
                        _ => BinaryOp::Xor,
                    };
                    let right = self.expression(rbp, depth + 1)?;
                    Node::Binary(op, Box::new(left), Box::new(right))
                }
            };
        }
        Ok(left)
    }

    fn prefix(&mut self, depth: usize) -> Result<Node, ParseError> {
        match self.next() {
            Some(Token::Integer(n)) => integer(n).ok_or(()).or_else(|_| {
                self.at -= 1;
                self.error(format!("{n} is not a 32-bit integer"))
            }),
            // A negative literal, so -2147483648 is in range.
            Some(Token::Minus) if matches!(self.peek(), Some(Token::Integer(_))) => {
                let Some(Token::Integer(n)) = self.next() else {
                    unreachable!("peeked")
                };
                integer(-n)
                    .ok_or(())
                    .or_else(|_| self.error(format!("-{n} is not a 32-bit integer")))
            }
            Some(Token::Minus) => Ok(Node::Negate(Box::new(self.expression(PREFIX, depth + 1)?))),
            Some(Token::String(s)) => Ok(Node::Literal(Value::String(s))),
            Some(Token::LParen) => {
                let inner = self.expression(0, depth + 1)?;
                self.expect(Token::RParen, "')'")?;
                Ok(inner)
            }
            Some(Token::Word(w)) if is(&w, "NOT") => {
                Ok(Node::Not(Box::new(self.expression(PREFIX, depth + 1)?)))
            }
            Some(Token::Word(w)) if is(&w, "TRUE") => Ok(Node::Literal(Value::Boolean(true))),
            Some(Token::Word(w)) if is(&w, "FALSE") => Ok(Node::Literal(Value::Boolean(false))),
            Some(Token::Word(w)) if is(&w, "EXISTS") => match self.next() {
                Some(Token::Word(name)) if is_identifier(&name) => {
                    Ok(Node::Exists(name.to_ascii_lowercase()))
                }
                _ => {
                    self.at -= 1;
                    self.error("EXISTS takes an attribute name")
                }
            },
            Some(Token::Word(w)) if self.peek() == Some(&Token::LParen) => {
                if !w.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
                    self.at -= 1;
                    return self.error(format!("'{w}' is not a function name"));
                }
                let args = self.list(depth, true)?;
                Ok(Node::Call {
                    name: w.to_ascii_uppercase(),
                    args,
                })
            }
            Some(Token::Word(w)) if is_identifier(&w) => {
                Ok(Node::Attribute(w.to_ascii_lowercase()))
            }
            Some(token) => {
                self.at -= 1;
                self.error(format!("unexpected {token:?}"))
            }
            None => self.error("unexpected end of the expression"),
        }
    }

    /// `( expr, ... )`; empty only where allowed (function arguments).
    fn list(&mut self, depth: usize, may_be_empty: bool) -> Result<Vec<Node>, ParseError> {
        self.expect(Token::LParen, "'('")?;
        let mut items = Vec::new();
        if self.peek() == Some(&Token::RParen) {
            if !may_be_empty {
                return self.error("a set must not be empty");
            }
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.expression(0, depth + 1)?);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => return Ok(items),
                _ => {
                    self.at -= 1;
                    return self.error("expected ',' or ')'");
                }
            }
        }
    }
}

fn integer(n: i64) -> Option<Node> {
    i32::try_from(n)
        .ok()
        .map(|i| Node::Literal(Value::Integer(i)))
}

/// Letters and digits, not a keyword.
fn is_identifier(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_alphanumeric()) && !KEYWORDS.iter().any(|k| is(word, k))
}
